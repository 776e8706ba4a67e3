/*
 * The tokenizer: text-token bytes, special-token ids by role, the pre-tokenizer regex and the
 * special-token UUIDs, all read in place from the model file's mapping (validated by model-file.c).
 * BPE encoding lives in Python (tiktoken built from this vocabulary), which gives exact o200k ids.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <gpt-oss.h>

#include "internal/error.h"
#include "internal/model-file.h"
#include "internal/bpe.h"
#include "internal/model.h"
#include "internal/uuid.h"

static const uint8_t zero_uuid[GPTOSS_UUID_SIZE];

enum gptoss_status gptoss_tokenizer_create(
    struct gptoss_file_mapping* mapping, const struct gptoss_model_file* file, const char* path,
    struct gptoss_tokenizer** tokenizer_out)
{
    struct gptoss_tokenizer* tokenizer = calloc(1, sizeof(*tokenizer));
    uint32_t* offsets = malloc(((size_t) file->num_text_tokens + 1) * sizeof(uint32_t));
    if (tokenizer == NULL || offsets == NULL) {
        free(tokenizer);
        free(offsets);
        return gptoss_set_error(gptoss_status_insufficient_memory,
            "%s: out of memory for the index of %" PRIu32 " tokens", path, file->num_text_tokens);
    }
    const uint8_t* base = (const uint8_t*) mapping->ptr;
    gptoss_model_file_index_tokens(file, base, offsets);
    atomic_init(&tokenizer->ref_count, 1);
    tokenizer->mapping = gptoss_file_mapping_retain(mapping);
    tokenizer->num_text_tokens = file->num_text_tokens;
    tokenizer->num_special_tokens = file->num_special_tokens;
    tokenizer->regex = (const char*) (base + file->layout.regex_offset);
    tokenizer->special_uuids = base + file->layout.special_uuids_offset;
    tokenizer->token_table = base + file->layout.tokens_offset;
    tokenizer->token_entry_offsets = offsets;
    memcpy(tokenizer->special_token_ids, file->special_token_ids, sizeof(tokenizer->special_token_ids));
    *tokenizer_out = tokenizer;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_special_token_id(
    gptoss_tokenizer_t tokenizer, enum gptoss_special_token token_type, uint32_t* token_id_out)
{
    gptoss_clear_error();
    if (tokenizer == NULL || token_id_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_tokenizer_get_special_token_id: %s is NULL", tokenizer == NULL ? "tokenizer" : "token_id_out");
    }
    const char* role_name = gptoss_special_token_role_name(token_type);
    if (role_name == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_tokenizer_get_special_token_id: unknown special token type %d (valid: 1..%d)",
            (int) token_type, (int) gptoss_special_token_max - 1);
    }
    const uint32_t id = tokenizer->special_token_ids[token_type];
    if (id == UINT32_MAX) {
        return gptoss_set_error(gptoss_status_unsupported_argument,
            "gptoss_tokenizer_get_special_token_id: the model file names no special token <|%s|> "
            "(none of its %" PRIu32 " special-token slots carries that UUID)",
            role_name, tokenizer->num_special_tokens);
    }
    *token_id_out = id;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_num_text_tokens(gptoss_tokenizer_t tokenizer, uint32_t* num_text_tokens_out) {
    gptoss_clear_error();
    if (tokenizer == NULL || num_text_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_get_num_text_tokens: NULL argument");
    }
    *num_text_tokens_out = tokenizer->num_text_tokens;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_num_special_tokens(gptoss_tokenizer_t tokenizer, uint32_t* num_special_tokens_out) {
    gptoss_clear_error();
    if (tokenizer == NULL || num_special_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_get_num_special_tokens: NULL argument");
    }
    *num_special_tokens_out = tokenizer->num_special_tokens;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_num_tokens(gptoss_tokenizer_t tokenizer, uint32_t* num_tokens_out) {
    gptoss_clear_error();
    if (tokenizer == NULL || num_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_get_num_tokens: NULL argument");
    }
    /* Both counts are bounded (model-file.h) so the sum cannot wrap. */
    *num_tokens_out = tokenizer->num_text_tokens + tokenizer->num_special_tokens;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_decode(
    gptoss_tokenizer_t tokenizer, uint32_t token_id, const void** token_ptr_out, size_t* token_size_out)
{
    gptoss_clear_error();
    if (tokenizer == NULL || token_ptr_out == NULL || token_size_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_decode: NULL argument");
    }
    if (token_id >= tokenizer->num_text_tokens) {
        const uint64_t num_tokens = (uint64_t) tokenizer->num_text_tokens + tokenizer->num_special_tokens;
        if (token_id < num_tokens) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_tokenizer_decode: token id %" PRIu32 " is a special token (text tokens are 0..%" PRIu32
                "); special tokens have no bytes", token_id, tokenizer->num_text_tokens - 1);
        }
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_tokenizer_decode: token id %" PRIu32 " is outside the vocabulary of %" PRIu64 " tokens",
            token_id, num_tokens);
    }
    /* The length is the u16 of the entry (up to 65535 bytes), implied by the next entry's offset. */
    const uint32_t entry = tokenizer->token_entry_offsets[token_id];
    *token_ptr_out = tokenizer->token_table + entry + 2;
    *token_size_out = tokenizer->token_entry_offsets[token_id + 1] - entry - 2;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_regex(gptoss_tokenizer_t tokenizer, const char** regex_out) {
    gptoss_clear_error();
    if (tokenizer == NULL || regex_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_get_regex: NULL argument");
    }
    *regex_out = tokenizer->regex;
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_get_token_uuid(
    gptoss_tokenizer_t tokenizer, uint32_t token_id, const uint8_t** uuid_out)
{
    gptoss_clear_error();
    if (tokenizer == NULL || uuid_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_get_token_uuid: NULL argument");
    }
    const uint64_t num_tokens = (uint64_t) tokenizer->num_text_tokens + tokenizer->num_special_tokens;
    if (token_id >= num_tokens) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_tokenizer_get_token_uuid: token id %" PRIu32 " is outside the vocabulary of %" PRIu64 " tokens",
            token_id, num_tokens);
    }
    if (token_id < tokenizer->num_text_tokens) {
        *uuid_out = zero_uuid;
    } else {
        *uuid_out = tokenizer->special_uuids + (size_t) (token_id - tokenizer->num_text_tokens) * GPTOSS_UUID_SIZE;
    }
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_retain(gptoss_tokenizer_t tokenizer) {
    if (tokenizer == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_tokenizer_retain: tokenizer is NULL");
    }
    atomic_fetch_add_explicit(&tokenizer->ref_count, 1, memory_order_relaxed);
    return gptoss_status_success;
}

enum gptoss_status gptoss_tokenizer_release(gptoss_tokenizer_t tokenizer) {
    if (tokenizer == NULL) {
        return gptoss_status_success;  /* like free(NULL) */
    }
    if (atomic_fetch_sub_explicit(&tokenizer->ref_count, 1, memory_order_acq_rel) == 1) {
        gptoss_bpe_index_release(atomic_load_explicit(&tokenizer->bpe_index, memory_order_acquire));
        free(tokenizer->token_entry_offsets);
        gptoss_file_mapping_release(tokenizer->mapping);
        free(tokenizer);
    }
    return gptoss_status_success;
}
