/*
 * Exact o200k BPE encoding: pre-tokenizer, rank index and byte-pair merging (see internal/bpe.h).
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gpt-oss.h>

#include "internal/bpe.h"
#include "internal/error.h"
#include "internal/model.h"
#include "internal/unicode-tables.h"

/* ======================================================================================== */
/* Pre-tokenizer: the o200k pattern, one alternative at a time, in the regex's order:       */
/*   1  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+SUFFIX?  */
/*   2  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*SUFFIX?  */
/*   3  \p{N}{1,3}                                                                          */
/*   4   ?[^\s\p{L}\p{N}]+[\r\n/]*                                                          */
/*   5  \s*[\r\n]+                                                                          */
/*   6  \s+(?!\S)                                                                           */
/*   7  \s+                                                                                 */
/* with SUFFIX = (?i:'s|'t|'re|'ve|'m|'ll|'d). The first alternative that matches at a      */
/* position wins, with the length its greedy quantifiers reach after backtracking; every    */
/* character is matched by one of 1..7, so pieces tile the text.                            */
/* ======================================================================================== */

/* The unicode classes plus two of our own; bit flags so that the pattern's sets are masks. */
enum {
    CHAR_OTHER = 1u << gptoss_unicode_class_other,
    CHAR_SPACE = 1u << gptoss_unicode_class_whitespace,
    CHAR_UPPER = 1u << gptoss_unicode_class_letter_upper,
    CHAR_LOWER = 1u << gptoss_unicode_class_letter_lower,
    CHAR_LETTER_OTHER = 1u << gptoss_unicode_class_letter_other,
    CHAR_MARK = 1u << gptoss_unicode_class_mark,
    CHAR_NUMBER = 1u << gptoss_unicode_class_number,
    CHAR_INVALID = 1u << 7,   /* a byte that starts no well-formed UTF-8 sequence */
    CHAR_CRLF = 1u << 8,      /* \r or \n (also whitespace: both bits are set) */
    CHAR_END = 1u << 9,       /* past the end of the text (no character) */
};

/* [^\r\n\p{L}\p{N}] when the character is not CHAR_CRLF: other whitespace is in it, and so are marks. */
#define SET_PREFIX (CHAR_OTHER | CHAR_SPACE | CHAR_MARK | CHAR_INVALID)
/* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}] */
#define SET_UPPER (CHAR_UPPER | CHAR_LETTER_OTHER | CHAR_MARK)
#define SET_LOWER (CHAR_LOWER | CHAR_LETTER_OTHER | CHAR_MARK)
/* [^\s\p{L}\p{N}] */
#define SET_SYMBOL (CHAR_OTHER | CHAR_MARK | CHAR_INVALID)

struct character {
    uint32_t flags;   /* CHAR_* (exactly one class bit, plus CHAR_CRLF for \r \n) */
    uint32_t length;  /* bytes (0 at the end) */
    uint32_t code_point;
};

/* Decodes the character at pos (Unicode Table 3-7 well-formedness; anything else: one invalid byte). */
static inline struct character char_at(const uint8_t* text, size_t size, size_t pos) {
    struct character c = { CHAR_END, 0, 0 };
    if (pos >= size) {
        return c;
    }
    const uint32_t b0 = text[pos];
    if (b0 < 0x80) {
        c.code_point = b0;
        c.length = 1;
        c.flags = 1u << gptoss_unicode_ascii_classes[b0];
        if (b0 == '\r' || b0 == '\n') {
            c.flags |= CHAR_CRLF;
        }
        return c;
    }
    const size_t left = size - pos;
    uint32_t length = 0, code_point = 0;
    uint8_t lo = 0x80, hi = 0xBF;  /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        length = 2; code_point = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        length = 3; code_point = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;       /* no overlongs */
        if (b0 == 0xED) hi = 0x9F;       /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        length = 4; code_point = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;       /* no overlongs */
        if (b0 == 0xF4) hi = 0x8F;       /* nothing past U+10FFFF */
    }
    bool valid = length != 0 && left >= length;
    for (uint32_t k = 1; valid && k < length; k++) {
        const uint8_t b = text[pos + k];
        valid = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        code_point = (code_point << 6) | (b & 0x3F);
    }
    if (!valid) {
        c.flags = CHAR_INVALID;
        c.length = 1;
        c.code_point = b0;
        return c;
    }
    c.code_point = code_point;
    c.length = length;
    c.flags = 1u << gptoss_unicode_class_of(code_point);
    return c;
}

/* End of the longest run of characters in `set` from pos (pos itself if none). */
static inline size_t run_end(const uint8_t* text, size_t size, size_t pos, uint32_t set) {
    for (;;) {
        const struct character c = char_at(text, size, pos);
        if (!(c.flags & set)) {
            return pos;
        }
        pos += c.length;
    }
}

static inline bool ascii_letter_is(uint8_t byte, char lower) {
    return (byte | 0x20) == (uint8_t) lower;
}

/*
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)? at pos: the end of the suffix, or pos if none. Case-insensitive
 * matching uses Unicode simple case folding, under which 's' also matches U+017F LATIN SMALL
 * LETTER LONG S (UTF-8 C5 BF); no other letter of the suffixes has a non-ASCII case variant.
 */
static size_t suffix_end(const uint8_t* text, size_t size, size_t pos) {
    if (pos + 1 >= size || text[pos] != '\'') {
        return pos;
    }
    const uint8_t a = text[pos + 1];
    if (ascii_letter_is(a, 's') || ascii_letter_is(a, 't') || ascii_letter_is(a, 'm') || ascii_letter_is(a, 'd')) {
        return pos + 2;
    }
    if (a == 0xC5 && pos + 2 < size && text[pos + 2] == 0xBF) {
        return pos + 3;  /* 'ſ */
    }
    if (pos + 2 < size) {
        const uint8_t b = text[pos + 2];
        if ((ascii_letter_is(a, 'r') || ascii_letter_is(a, 'v')) && ascii_letter_is(b, 'e')) {
            return pos + 3;
        }
        if (ascii_letter_is(a, 'l') && ascii_letter_is(b, 'l')) {
            return pos + 3;
        }
    }
    return pos;
}

/* [U]*[L]+SUFFIX? from pos; returns the end, or pos on failure. */
static size_t match_upper_star_lower_plus(const uint8_t* text, size_t size, size_t pos) {
    /*
     * U* runs greedily to u_end; L+ then needs an L character. Backtracking U* one character at
     * a time tries the U-run's characters from the last: the first one also in L (Lm Lo M)
     * starts a one-character L+ (the character after it is U but not L, or is the one at u_end,
     * which is not L).
     */
    size_t last_lower = SIZE_MAX, last_lower_length = 0;
    size_t p = pos;
    for (;;) {
        const struct character c = char_at(text, size, p);
        if (!(c.flags & SET_UPPER)) {
            if (c.flags & SET_LOWER) {
                return suffix_end(text, size, run_end(text, size, p, SET_LOWER));
            }
            break;
        }
        if (c.flags & SET_LOWER) {
            last_lower = p;
            last_lower_length = c.length;
        }
        p += c.length;
    }
    if (last_lower == SIZE_MAX) {
        return pos;
    }
    return suffix_end(text, size, last_lower + last_lower_length);
}

/* [U]+[L]*SUFFIX? from pos; returns the end, or pos on failure. */
static size_t match_upper_plus_lower_star(const uint8_t* text, size_t size, size_t pos) {
    const size_t u_end = run_end(text, size, pos, SET_UPPER);
    if (u_end == pos) {
        return pos;
    }
    return suffix_end(text, size, run_end(text, size, u_end, SET_LOWER));
}

size_t gptoss_bpe_next_piece(const uint8_t* text, size_t size, size_t pos) {
    const struct character first = char_at(text, size, pos);
    if (first.length == 0) {
        return pos;
    }
    const size_t after_first = pos + first.length;

    /* 1 and 2: the optional prefix is tried taken first, then not taken. */
    for (int alternative = 1; alternative <= 2; alternative++) {
        size_t (*match)(const uint8_t*, size_t, size_t) =
            alternative == 1 ? match_upper_star_lower_plus : match_upper_plus_lower_star;
        if ((first.flags & SET_PREFIX) && !(first.flags & CHAR_CRLF)) {
            const size_t end = match(text, size, after_first);
            if (end != after_first) {
                return end;
            }
        }
        const size_t end = match(text, size, pos);
        if (end != pos) {
            return end;
        }
    }

    /* 3: \p{N}{1,3} */
    if (first.flags & CHAR_NUMBER) {
        size_t end = after_first;
        for (int k = 1; k < 3; k++) {
            const struct character c = char_at(text, size, end);
            if (!(c.flags & CHAR_NUMBER)) {
                break;
            }
            end += c.length;
        }
        return end;
    }

    /* 4: " ?[^\s\p{L}\p{N}]+[\r\n/]*" (the space is U+0020 only) */
    {
        const size_t symbols_start = first.code_point == ' ' && !(first.flags & CHAR_INVALID) ? after_first : pos;
        size_t end = run_end(text, size, symbols_start, SET_SYMBOL);
        if (end != symbols_start) {
            while (end < size && (text[end] == '\r' || text[end] == '\n' || text[end] == '/')) {
                end++;
            }
            return end;
        }
    }

    /* 5, 6, 7 all start with whitespace; anything else was matched above. */
    size_t space_end = pos;       /* end of the whitespace run */
    size_t last_space = pos;      /* start of its last character */
    size_t last_crlf_end = 0;     /* end of its last \r or \n, 0 if none */
    for (;;) {
        const struct character c = char_at(text, size, space_end);
        if (!(c.flags & CHAR_SPACE)) {
            break;
        }
        last_space = space_end;
        space_end += c.length;
        if (c.flags & CHAR_CRLF) {
            last_crlf_end = space_end;
        }
    }
    /* 5: \s*[\r\n]+ — \s* backtracks to the last \r/\n of the run; [\r\n]+ then ends right after it. */
    if (last_crlf_end != 0) {
        return last_crlf_end;
    }
    /* 6: \s+(?!\S) — the whole run at the end of the text, else all but its last character. */
    if (space_end == size) {
        return space_end;
    }
    if (last_space > pos) {
        return last_space;
    }
    /* 7: \s+ (a single whitespace character before a non-whitespace one; the run is non-empty:
     * a character that is not whitespace matched one of 1..4). */
    return space_end > pos ? space_end : after_first;
}

/* ======================================================================================== */
/* Rank index: open-addressing hash map from token bytes to rank.                           */
/* ======================================================================================== */

struct rank_slot {
    uint32_t tag;            /* high half of the hash: skips most byte comparisons */
    uint32_t rank_plus_one;  /* 0: empty */
};

struct gptoss_bpe_index {
    struct gptoss_file_mapping* mapping;  /* retained: token_table points into it */
    const uint8_t* token_table;
    uint32_t num_tokens;
    uint32_t max_token_length;
    uint32_t* entry_offsets;      /* num_tokens + 1 entries, as in struct gptoss_tokenizer */
    struct rank_slot* slots;
    size_t slot_mask;             /* slot count - 1 (a power of two, >= 2 * num_tokens) */
    uint32_t byte_rank[256];      /* rank of each single byte, UINT32_MAX if not a token */
};

#define NO_RANK UINT32_MAX

static inline uint64_t hash_bytes(const uint8_t* bytes, size_t length) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t) length * 0xFF51AFD7ED558CCDull);
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        h = (h ^ word) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        bytes += 8;
        length -= 8;
    }
    uint64_t word = 0;
    memcpy(&word, bytes, length);
    h = (h ^ word) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static inline const uint8_t* token_bytes(const struct gptoss_bpe_index* index, uint32_t rank, size_t* length) {
    const uint32_t entry = index->entry_offsets[rank];
    *length = index->entry_offsets[rank + 1] - entry - 2;
    return index->token_table + entry + 2;
}

/* Rank of a byte string, NO_RANK if it is not a token. */
static inline uint32_t lookup_rank(const struct gptoss_bpe_index* index, const uint8_t* bytes, size_t length) {
    if (length == 1) {
        return index->byte_rank[bytes[0]];
    }
    if (length > index->max_token_length) {
        return NO_RANK;
    }
    const uint64_t h = hash_bytes(bytes, length);
    const uint32_t tag = (uint32_t) (h >> 32);
    for (size_t i = (size_t) h & index->slot_mask;; i = (i + 1) & index->slot_mask) {
        const struct rank_slot slot = index->slots[i];
        if (slot.rank_plus_one == 0) {
            return NO_RANK;
        }
        if (slot.tag == tag) {
            size_t token_length;
            const uint8_t* token = token_bytes(index, slot.rank_plus_one - 1, &token_length);
            if (token_length == length && memcmp(token, bytes, length) == 0) {
                return slot.rank_plus_one - 1;
            }
        }
    }
}

void gptoss_bpe_index_release(struct gptoss_bpe_index* index) {
    if (index != NULL) {
        free(index->slots);
        free(index->entry_offsets);
        gptoss_file_mapping_release(index->mapping);
        free(index);
    }
}

static enum gptoss_status bpe_index_create(const struct gptoss_tokenizer* tokenizer, struct gptoss_bpe_index** index_out) {
    const uint32_t n = tokenizer->num_text_tokens;
    size_t slot_count = 16;
    while (slot_count < 2 * (size_t) n) {
        slot_count *= 2;
    }
    struct gptoss_bpe_index* index = calloc(1, sizeof(*index));
    uint32_t* offsets = malloc(((size_t) n + 1) * sizeof(uint32_t));
    struct rank_slot* slots = calloc(slot_count, sizeof(struct rank_slot));
    if (index == NULL || offsets == NULL || slots == NULL) {
        free(index);
        free(offsets);
        free(slots);
        return gptoss_set_error(gptoss_status_insufficient_memory,
            "gptoss_tokenizer_encode: out of memory for the rank index of %" PRIu32 " tokens", n);
    }
    memcpy(offsets, tokenizer->token_entry_offsets, ((size_t) n + 1) * sizeof(uint32_t));
    index->mapping = gptoss_file_mapping_retain(tokenizer->mapping);
    index->token_table = tokenizer->token_table;
    index->num_tokens = n;
    index->entry_offsets = offsets;
    index->slots = slots;
    index->slot_mask = slot_count - 1;
    for (int b = 0; b < 256; b++) {
        index->byte_rank[b] = NO_RANK;
    }
    for (uint32_t rank = 0; rank < n; rank++) {
        size_t length;
        const uint8_t* bytes = token_bytes(index, rank, &length);
        if (length > index->max_token_length) {
            index->max_token_length = (uint32_t) length;
        }
        const uint64_t h = hash_bytes(bytes, length);
        const uint32_t tag = (uint32_t) (h >> 32);
        size_t i = (size_t) h & index->slot_mask;
        for (;; i = (i + 1) & index->slot_mask) {
            const struct rank_slot slot = slots[i];
            if (slot.rank_plus_one == 0) {
                break;
            }
            size_t other_length;
            const uint8_t* other = token_bytes(index, slot.rank_plus_one - 1, &other_length);
            if (slot.tag == tag && other_length == length && memcmp(other, bytes, length) == 0) {
                const uint32_t first = slot.rank_plus_one - 1;
                gptoss_bpe_index_release(index);
                return gptoss_set_error(gptoss_status_invalid_file,
                    "gptoss_tokenizer_encode: token table: text tokens %" PRIu32 " and %" PRIu32
                    " have the same %zu bytes; a BPE vocabulary needs distinct tokens", first, rank, length);
            }
        }
        slots[i].tag = tag;
        slots[i].rank_plus_one = rank + 1;
        if (length == 1) {
            index->byte_rank[bytes[0]] = rank;
        }
    }
    *index_out = index;
    return gptoss_status_success;
}

/* ======================================================================================== */
/* One index per tokenizer, built on first use.                                             */
/* ======================================================================================== */


/* The tokenizer owns the index (struct gptoss_tokenizer.bpe_index, freed by its release). */
static enum gptoss_status acquire_index(struct gptoss_tokenizer* tokenizer, struct gptoss_bpe_index** index_out) {
    struct gptoss_bpe_index* index = atomic_load_explicit(&tokenizer->bpe_index, memory_order_acquire);
    if (index == NULL) {
        struct gptoss_bpe_index* built = NULL;
        const enum gptoss_status status = bpe_index_create(tokenizer, &built);
        if (status != gptoss_status_success) {
            return status;
        }
        /* Two first callers may both build; one index wins, the other is dropped. */
        if (atomic_compare_exchange_strong_explicit(&tokenizer->bpe_index, &index, built,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            index = built;
        } else {
            gptoss_bpe_index_release(built);
        }
    }
    *index_out = index;
    return gptoss_status_success;
}


/* ======================================================================================== */
/* Byte-pair merging and the encoder.                                                       */
/* ======================================================================================== */

struct token_vector {
    uint32_t* data;
    size_t count;
    size_t capacity;
};

static bool push_token(struct token_vector* tokens, uint32_t token) {
    if (tokens->count == tokens->capacity) {
        const size_t capacity = tokens->capacity < 16 ? 16 : tokens->capacity * 2;
        uint32_t* data = realloc(tokens->data, capacity * sizeof(uint32_t));
        if (data == NULL) {
            return false;
        }
        tokens->data = data;
        tokens->capacity = capacity;
    }
    tokens->data[tokens->count++] = token;
    return true;
}

/* Pieces up to this many bytes merge like tiktoken (a linear scan per merge: O(n^2) but tiny n). */
#define SMALL_PIECE 128

struct encode_state {
    const struct gptoss_bpe_index* index;
    struct token_vector tokens;
    const uint8_t* text;  /* for messages: offsets into the whole input */
};

static enum gptoss_status push_part(struct encode_state* state, const uint8_t* part, size_t length) {
    const uint32_t rank = lookup_rank(state->index, part, length);
    if (rank == NO_RANK) {
        /* Merges only make tokens, so this is a single byte missing from the vocabulary. */
        return gptoss_set_error(gptoss_status_invalid_file,
            "gptoss_tokenizer_encode: byte 0x%02X (text offset %zu) is not a token of the vocabulary",
            part[0], (size_t) (part - state->text));
    }
    if (!push_token(&state->tokens, rank)) {
        return gptoss_set_error(gptoss_status_insufficient_memory,
            "gptoss_tokenizer_encode: out of memory for %zu token ids", state->tokens.count + 1);
    }
    return gptoss_status_success;
}

/* tiktoken's merge loop, verbatim in effect: parts as (start, rank of it merged with the next). */
static enum gptoss_status merge_small(struct encode_state* state, const uint8_t* piece, size_t n) {
    size_t start[SMALL_PIECE + 1];
    uint32_t rank[SMALL_PIECE + 1];
    for (size_t i = 0; i + 1 < n; i++) {
        start[i] = i;
        rank[i] = lookup_rank(state->index, piece + i, 2);
    }
    start[n - 1] = n - 1;
    rank[n - 1] = NO_RANK;
    start[n] = n;
    rank[n] = NO_RANK;
    size_t m = n + 1;  /* parts plus the end marker */
    for (;;) {
        uint32_t min_rank = NO_RANK;
        size_t i = 0;
        for (size_t j = 0; j + 1 < m; j++) {
            if (rank[j] < min_rank) {  /* strict: the leftmost of equal ranks */
                min_rank = rank[j];
                i = j;
            }
        }
        if (min_rank == NO_RANK) {
            break;
        }
        /* Parts i and i+1 become one; the ranks of i-1 and i now span to parts i+2 and i+3. */
        if (i > 0) {
            rank[i - 1] = i + 2 < m ? lookup_rank(state->index, piece + start[i - 1], start[i + 2] - start[i - 1]) : NO_RANK;
        }
        rank[i] = i + 3 < m ? lookup_rank(state->index, piece + start[i], start[i + 3] - start[i]) : NO_RANK;
        memmove(&start[i + 1], &start[i + 2], (m - i - 2) * sizeof(start[0]));
        memmove(&rank[i + 1], &rank[i + 2], (m - i - 2) * sizeof(rank[0]));
        m--;
    }
    for (size_t i = 0; i + 1 < m; i++) {
        const enum gptoss_status status = push_part(state, piece + start[i], start[i + 1] - start[i]);
        if (status != gptoss_status_success) {
            return status;
        }
    }
    return gptoss_status_success;
}

/* Min-heap of (rank << 32 | part start): the lowest rank, then the leftmost part, as tiktoken picks. */
struct merge_heap {
    uint64_t* keys;
    size_t count;
    size_t capacity;
};

static bool heap_push(struct merge_heap* heap, uint64_t key) {
    if (heap->count == heap->capacity) {
        const size_t capacity = heap->capacity * 2;
        uint64_t* keys = realloc(heap->keys, capacity * sizeof(uint64_t));
        if (keys == NULL) {
            return false;
        }
        heap->keys = keys;
        heap->capacity = capacity;
    }
    size_t i = heap->count++;
    while (i > 0 && heap->keys[(i - 1) / 2] > key) {
        heap->keys[i] = heap->keys[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap->keys[i] = key;
    return true;
}

static uint64_t heap_pop(struct merge_heap* heap) {
    const uint64_t top = heap->keys[0];
    const uint64_t last = heap->keys[--heap->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap->count) {
            break;
        }
        if (child + 1 < heap->count && heap->keys[child + 1] < heap->keys[child]) {
            child++;
        }
        if (heap->keys[child] >= last) {
            break;
        }
        heap->keys[i] = heap->keys[child];
        i = child;
    }
    if (heap->count > 0) {
        heap->keys[i] = last;
    }
    return top;
}

/*
 * Long pieces (e.g. a run of one character): the same merges in the same order, in
 * O(n log n). Parts form a linked list by start offset; pair_rank[p] is the rank of part p
 * merged with its successor; heap entries whose rank no longer matches are stale and skipped
 * (a part's start and rank determine its pair's bytes, so a matching entry is current).
 */
static enum gptoss_status merge_large(struct encode_state* state, const uint8_t* piece, size_t n) {
    if (n > UINT32_MAX - 1) {
        return gptoss_set_error(gptoss_status_unsupported_argument,
            "gptoss_tokenizer_encode: a pre-tokenizer piece of %zu bytes (text offset %zu) exceeds 4 GiB",
            n, (size_t) (piece - state->text));
    }
    uint32_t* next = malloc(n * sizeof(uint32_t));
    uint32_t* prev = malloc(n * sizeof(uint32_t));
    uint32_t* pair_rank = malloc(n * sizeof(uint32_t));
    struct merge_heap heap = { malloc(n * sizeof(uint64_t)), 0, n };
    enum gptoss_status status = gptoss_status_success;
    if (next == NULL || prev == NULL || pair_rank == NULL || heap.keys == NULL) {
        goto out_of_memory;
    }
    for (size_t i = 0; i < n; i++) {
        next[i] = (uint32_t) (i + 1);
        prev[i] = (uint32_t) i - 1;  /* UINT32_MAX for the first */
        pair_rank[i] = i + 1 < n ? lookup_rank(state->index, piece + i, 2) : NO_RANK;
        if (pair_rank[i] != NO_RANK && !heap_push(&heap, (uint64_t) pair_rank[i] << 32 | i)) {
            goto out_of_memory;
        }
    }
    while (heap.count > 0) {
        const uint64_t key = heap_pop(&heap);
        const uint32_t i = (uint32_t) key;
        const uint32_t rank = (uint32_t) (key >> 32);
        if (pair_rank[i] != rank) {
            continue;  /* stale (merged parts get NO_RANK, so they land here too) */
        }
        const uint32_t j = next[i];
        const uint32_t k = next[j];
        pair_rank[j] = NO_RANK;
        next[i] = k;
        if (k < n) {
            prev[k] = i;
        }
        pair_rank[i] = k < n ? lookup_rank(state->index, piece + i, next[k] - i) : NO_RANK;
        if (pair_rank[i] != NO_RANK && !heap_push(&heap, (uint64_t) pair_rank[i] << 32 | i)) {
            goto out_of_memory;
        }
        const uint32_t p = prev[i];
        if (p != UINT32_MAX) {
            pair_rank[p] = lookup_rank(state->index, piece + p, k - p);
            if (pair_rank[p] != NO_RANK && !heap_push(&heap, (uint64_t) pair_rank[p] << 32 | p)) {
                goto out_of_memory;
            }
        }
    }
    for (uint32_t i = 0; i < n && status == gptoss_status_success; i = next[i]) {
        status = push_part(state, piece + i, next[i] - i);
    }
    goto done;
out_of_memory:
    status = gptoss_set_error(gptoss_status_insufficient_memory,
        "gptoss_tokenizer_encode: out of memory merging a piece of %zu bytes (text offset %zu)",
        n, (size_t) (piece - state->text));
done:
    free(next);
    free(prev);
    free(pair_rank);
    free(heap.keys);
    return status;
}

static enum gptoss_status encode_piece(struct encode_state* state, const uint8_t* piece, size_t n) {
    if (n == 1) {
        return push_part(state, piece, 1);
    }
    const uint32_t rank = lookup_rank(state->index, piece, n);
    if (rank != NO_RANK) {  /* the whole piece is a token: most words */
        if (!push_token(&state->tokens, rank)) {
            return gptoss_set_error(gptoss_status_insufficient_memory,
                "gptoss_tokenizer_encode: out of memory for %zu token ids", state->tokens.count + 1);
        }
        return gptoss_status_success;
    }
    return n <= SMALL_PIECE ? merge_small(state, piece, n) : merge_large(state, piece, n);
}

enum gptoss_status gptoss_tokenizer_encode(
    struct gptoss_tokenizer* tokenizer, const char* text, size_t size,
    uint32_t** tokens_out, size_t* count_out)
{
    if (tokenizer == NULL || tokens_out == NULL || count_out == NULL || (text == NULL && size != 0)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_encode: %s is NULL",
            tokenizer == NULL ? "tokenizer" : tokens_out == NULL ? "tokens_out" : count_out == NULL ? "count_out" : "text");
    }
    struct encode_state state = { NULL, { NULL, 0, 0 }, (const uint8_t*) text };
    enum gptoss_status status = acquire_index(tokenizer, (struct gptoss_bpe_index**) &state.index);
    if (status != gptoss_status_success) {
        return status;
    }
    const uint8_t* bytes = (const uint8_t*) text;
    for (size_t pos = 0; pos < size;) {
        const size_t end = gptoss_bpe_next_piece(bytes, size, pos);
        status = encode_piece(&state, bytes + pos, end - pos);
        if (status != gptoss_status_success) {
            break;
        }
        pos = end;
    }
    if (status != gptoss_status_success) {
        free(state.tokens.data);
        return status;
    }
    *tokens_out = state.tokens.data;
    *count_out = state.tokens.count;
    return gptoss_status_success;
}
