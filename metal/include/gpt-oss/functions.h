#pragma once

#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/macros.h>
#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Errors.
 *
 * Every function returns an enum gptoss_status. When the status is not gptoss_status_success, a
 * human-readable message describing the failure (naming the file, field, offset or argument at
 * fault) is stored for the calling thread and stays valid until the next failing call on it.
 */

/* Message for the last failure on this thread, or "" if none. Never NULL. */
GPTOSS_ABI const char* gptoss_get_last_error_message(void);

/* Status of the last failure on this thread (gptoss_status_success if none). */
GPTOSS_ABI enum gptoss_status gptoss_get_last_error_status(void);

/* Static name of a status code, e.g. "invalid_file". Never NULL. */
GPTOSS_ABI const char* gptoss_status_to_string(enum gptoss_status status);

/*
 * Model.
 */

/*
 * Loads a model from a model.bin file (layout v1, as published for gpt-oss-20b and gpt-oss-120b).
 * The file is validated before use and its weights are memory-mapped, never copied.
 *
 * On success stores a new reference in *model_out (release with gptoss_model_release).
 * On failure stores NULL and returns: invalid_argument (NULL arguments), io_error (the file cannot
 * be opened or mapped), invalid_file (malformed or truncated file), unsupported_argument (a valid
 * file describing a model this runtime cannot run).
 */
GPTOSS_ABI enum gptoss_status gptoss_model_create_from_file(
    const char* path,
    gptoss_model_t* model_out);

/* Stores a new reference to the model's tokenizer in *tokenizer_out (release it). */
GPTOSS_ABI enum gptoss_status gptoss_model_get_tokenizer(
    gptoss_model_t model,
    gptoss_tokenizer_t* tokenizer_out);

/* Stores the model's maximum context length (tokens) in *max_context_length_out. */
GPTOSS_ABI enum gptoss_status gptoss_model_get_max_context_length(
    gptoss_model_t model,
    size_t* max_context_length_out);

GPTOSS_ABI enum gptoss_status gptoss_model_retain(gptoss_model_t model);
GPTOSS_ABI enum gptoss_status gptoss_model_release(gptoss_model_t model);

/*
 * Tokenizer.
 */

/*
 * Stores the id of a special token in *token_id_out. Returns invalid_argument for an unknown
 * token_type and unsupported_argument if the model file does not name that token.
 */
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_special_token_id(
    gptoss_tokenizer_t tokenizer,
    enum gptoss_special_token token_type,
    uint32_t* token_id_out);

GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_num_text_tokens(
    gptoss_tokenizer_t tokenizer,
    uint32_t* num_text_tokens_out);

GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_num_special_tokens(
    gptoss_tokenizer_t tokenizer,
    uint32_t* num_special_tokens_out);

/* Total vocabulary: text tokens followed by special tokens. */
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_num_tokens(
    gptoss_tokenizer_t tokenizer,
    uint32_t* num_tokens_out);

/*
 * Stores a pointer to the bytes of a text token and their count (0..65535). The bytes live as
 * long as the tokenizer. Special tokens and ids past the vocabulary give invalid_argument.
 */
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_decode(
    gptoss_tokenizer_t tokenizer,
    uint32_t token_id,
    const void** token_ptr_out,
    size_t* token_size_out);

/* The pre-tokenizer regular expression stored in the model file (NUL-terminated). */
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_regex(
    gptoss_tokenizer_t tokenizer,
    const char** regex_out);

/*
 * The 16-byte UUID naming special token token_id (text tokens and unnamed slots give 16 zero
 * bytes). Returns invalid_argument for an id outside the vocabulary.
 */
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_get_token_uuid(
    gptoss_tokenizer_t tokenizer,
    uint32_t token_id,
    const uint8_t** uuid_out);

GPTOSS_ABI enum gptoss_status gptoss_tokenizer_retain(gptoss_tokenizer_t tokenizer);
GPTOSS_ABI enum gptoss_status gptoss_tokenizer_release(gptoss_tokenizer_t tokenizer);

#ifdef __cplusplus
}  // extern "C"
#endif
