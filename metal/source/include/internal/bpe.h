/*
 * Exact o200k BPE encoding in C (bpe.c): the same token ids as tiktoken's o200k_base /
 * o200k_harmony for any valid UTF-8 text (special-token text such as "<|start|>" is plain text).
 *
 * Two stages, as in tiktoken:
 *  1. Pre-tokenization: a hand-written matcher for exactly the o200k pattern (python/gpt_oss_metal/
 *     vocab.py O200K_PATTERN), with the regex engine's leftmost-first, backtracking semantics,
 *     splits the text into pieces. Character classes come from unicode-tables.c.
 *  2. Each piece is one token if its bytes are a token, else byte-pair merged by rank (the lowest
 *     rank first, the leftmost on ties), exactly as tiktoken merges.
 *
 * Invalid UTF-8 (tiktoken never sees it: it encodes Python str): each byte that does not start a
 * well-formed UTF-8 sequence (Unicode Table 3-7: no overlongs, surrogates or code points past
 * U+10FFFF; a truncated sequence counts byte by byte) is treated as one character of class
 * "other", like an unassigned code point: it is not a letter, number, mark or whitespace, so it
 * joins punctuation pieces (" ?[^\s\p{L}\p{N}]+") and may prefix a word ("[^\r\n\p{L}\p{N}]?").
 * Its raw byte stays in the piece, so decoding the ids gives back the input bytes exactly.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct gptoss_tokenizer;

/* Hash map from token bytes to rank, built once per tokenizer on first use (bpe.c). */
struct gptoss_bpe_index;

/*
 * Encodes `size` bytes of UTF-8 `text` (need not be NUL-terminated; NUL is an ordinary character)
 * into text-token ids. On success *tokens_out is a malloc'ed array of *count_out ids that the
 * caller frees with free() (NULL when *count_out is 0). On failure nothing is allocated, the
 * outputs are untouched and the error is recorded with gptoss_set_error:
 *   invalid_argument     NULL tokenizer/outputs, or NULL text with size > 0
 *   insufficient_memory  the rank index or the output could not be allocated
 *   invalid_file         the token table holds the same bytes twice, or lacks a single byte that
 *                        the text needs (o200k has all 256)
 * Thread-safe: the rank index is built once per tokenizer, by whichever call comes first.
 */
enum gptoss_status gptoss_tokenizer_encode(
    struct gptoss_tokenizer* tokenizer, const char* text, size_t size,
    uint32_t** tokens_out, size_t* count_out);

/*
 * The pre-tokenizer alone: the end offset of the piece that starts at byte `pos` (< size) of
 * `text`. Pieces tile the text: start at 0 and continue from each end until `size`.
 */
size_t gptoss_bpe_next_piece(const uint8_t* text, size_t size, size_t pos);

/* Frees an index (NULL is fine). For the tokenizer's release once it owns its index. */
void gptoss_bpe_index_release(struct gptoss_bpe_index* index);

#ifdef __cplusplus
}  // extern "C"
#endif
