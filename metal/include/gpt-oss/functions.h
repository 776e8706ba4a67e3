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
 * file describing a model this runtime cannot run), insufficient_resources (the weights cannot run
 * on this device: weights plus a 2 GiB margin exceed the machine's physical memory, or the dense
 * weights region or one block's MoE section exceeds the device's maximum buffer length; the message
 * names the region and both sizes).
 *
 * Weights above the device's recommended working set are not an error (Metal pages them, slower):
 * the load succeeds and gptoss_model_get_load_warning says so. Nothing is printed.
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

/*
 * Stores in *warning_out the warning of the load, or "" if there was none. Today the only warning
 * is weights exceeding the device's recommended working set (message with both sizes in GiB and
 * the device name). The string lives as long as the model. The Python package raises it as a
 * gpt_oss_metal.DeviceMemoryWarning (warnings.warn) when the Model is created.
 */
GPTOSS_ABI enum gptoss_status gptoss_model_get_load_warning(
    gptoss_model_t model,
    const char** warning_out);

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

/*
 * Context.
 */
/*
 * A context holds a sequence of tokens, the KV cache of the positions processed so far and the
 * logits of the last processed position. Tokens are appended (ids or text), then `process` runs
 * the model over every token not processed yet; `sample` picks next tokens from the logits.
 *
 * Threads (docs/thread-safety.md): a context runs one call at a time. Every gptoss_context_* call
 * except cancel, retain, release and get_max_tokens claims the context atomically at entry; a call
 * made while another thread's call runs on the same context does nothing and returns invalid_state
 * ("<function>: context is in use by another thread (<running function> is running on it; ...)").
 * Calls are refused, not queued: serialise them yourself, or use one context per thread (contexts
 * on one model run in parallel; the model and its tokenizer are immutable and shared).
 * gptoss_context_cancel is safe from any thread at any time. A running call holds a reference of
 * its own, so gptoss_context_release from another thread never frees the context under it (the
 * context is freed when that call returns); as with any handle, a thread must own a reference for
 * as long as it uses the context.
 */

/*
 * Creates a context on `model`.
 *   context_length:   tokens it can hold (0: the model's maximum). Larger than the model's
 *                     maximum: invalid_argument.
 *   max_batch_tokens: tokens processed per command buffer (0: a default of 128, capped at
 *                     context_length). Buffers are sized for it; `process` splits longer runs.
 * The KV cache is fp16 (see gptoss_context_set_fp32_kv). Returns unsupported_system if a kernel
 * the forward pass needs is missing from this build (the message names it), insufficient_memory /
 * insufficient_resources if the buffers cannot be allocated.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_create(
    gptoss_model_t model,
    size_t context_length,
    size_t max_batch_tokens,
    gptoss_context_t* context_out);

/*
 * Stores the KV cache in fp32 instead of fp16 when enabled != 0 (exact-parity mode: the same
 * precision as a float32 reference; twice the memory). Only while the context holds no tokens
 * (after creation or reset; the cache is discarded): invalid_state otherwise.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_set_fp32_kv(gptoss_context_t context, int enabled);

/*
 * When enabled != 0, `process` keeps the logits of every position of each chunk it runs (up to
 * max_batch_tokens rows; see gptoss_context_get_logits) instead of only the last position's.
 * It costs one unembedding row per token instead of per chunk.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_set_output_all_logits(gptoss_context_t context, int enabled);

/* Number of tokens in the context (processed or not). */
GPTOSS_ABI enum gptoss_status gptoss_context_get_num_tokens(gptoss_context_t context, size_t* num_tokens_out);

/* Number of leading tokens whose KV-cache entries are computed. */
GPTOSS_ABI enum gptoss_status gptoss_context_get_num_processed_tokens(
    gptoss_context_t context, size_t* num_processed_tokens_out);

/* The context length: the most tokens the context can hold. */
GPTOSS_ABI enum gptoss_status gptoss_context_get_max_tokens(gptoss_context_t context, size_t* max_tokens_out);

/*
 * Copies the context's tokens to tokens_out (room for max_tokens ids) and stores their count in
 * *num_tokens_out. If max_tokens is too small, nothing is copied, *num_tokens_out is set to the
 * count needed and insufficient_memory is returned.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_get_tokens(
    gptoss_context_t context,
    uint32_t* tokens_out,
    size_t max_tokens,
    size_t* num_tokens_out);

/*
 * Appends num_tokens token ids (not processed yet). An id outside the vocabulary gives
 * invalid_argument naming the id and its index; more tokens than the context has room for give
 * context_overflow. On failure nothing is appended.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_append_tokens(
    gptoss_context_t context,
    size_t num_tokens,
    const uint32_t* tokens);

/*
 * Tokenizes `text_length` bytes of UTF-8 text exactly like tiktoken's o200k encoding (special-token
 * text such as "<|start|>" is plain text) and appends the ids; stores their count in
 * *num_tokens_out (may be NULL). context_overflow if they do not fit: nothing is appended.
 * unsupported_argument if this build has no BPE encoder.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_append_chars(
    gptoss_context_t context,
    const char* text,
    size_t text_length,
    size_t* num_tokens_out);

/*
 * Runs the model over every token not processed yet, in chunks of at most max_batch_tokens (one
 * command buffer per chunk), filling their KV-cache entries and the logits. Does nothing if every
 * token is processed and the logits are the last token's (after a reset that reused the whole
 * cache, the last token is recomputed to produce its logits). Returns cancelled if gptoss_context_cancel was called (from any thread)
 * while it ran: the tokens stay, the unfinished chunk is marked unprocessed, and the next call
 * continues from there. device_error if a kernel faulted.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_process(gptoss_context_t context);

/*
 * Samples up to max_tokens next tokens (written to tokens_out; count in *num_tokens_out), each
 * appended to the context. Pending tokens are processed first; every sampled token except the last
 * is processed before the next is sampled, and the last one is processed by the next process or
 * sample call, so every appended token's KV entry is computed before it is needed. temperature 0
 * is greedy (argmax; ties go to the lowest id); otherwise softmax(logits / temperature) with noise
 * drawn from (seed, position). Stops early (returning success) when the context is full after at
 * least one token; with no room at all: context_overflow.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_sample(
    gptoss_context_t context,
    float temperature,
    uint64_t seed,
    size_t max_tokens,
    uint32_t* tokens_out,
    size_t* num_tokens_out);

/*
 * Like gptoss_context_sample with the sampler's settings (temperature, top-k/p, min-p, penalties
 * over the context's tokens, seed). Stops after a stop token of the sampler (the stop token is
 * appended and returned as the last token). The settings are copied when the call starts (the
 * sampler may be changed by another thread meanwhile). A stop token outside the model's vocabulary
 * gives invalid_argument (nothing is sampled). If the model's logits leave nothing to sample (every
 * one NaN or -inf: the weights are corrupt), invalid_file naming the position. tokens_out needs
 * room for max_tokens ids only up to what can be produced: at most the context's free space
 * (gptoss_context_get_max_tokens minus gptoss_context_get_num_tokens) tokens are ever written.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_sample_with_sampler(
    gptoss_context_t context,
    gptoss_sampler_t sampler,
    size_t max_tokens,
    uint32_t* tokens_out,
    size_t* num_tokens_out);

/*
 * Empties the context's token sequence but keeps its KV cache: tokens appended afterwards that
 * repeat the previous sequence from its start reuse the cached entries, and the next process
 * continues after the longest common prefix. (If the sliding-window part of the cache no longer
 * holds the window before the divergence point, process recomputes from the start: results are
 * always those of a fresh context.)
 */
GPTOSS_ABI enum gptoss_status gptoss_context_reset(gptoss_context_t context);

/*
 * The logits of the last process: a pointer to *num_rows_out rows of *vocabulary_size_out floats,
 * row-major; the last row is the last processed position. One row normally; with
 * gptoss_context_set_output_all_logits, one per position of the last chunk. The memory belongs to
 * the context and stays valid until the next call that processes or samples. Appending tokens
 * does not change them. After sample, they are those the last sampled token was drawn from.
 * invalid_state if no logits are available (nothing processed since creation or the last reset).
 */
GPTOSS_ABI enum gptoss_status gptoss_context_get_logits(
    gptoss_context_t context,
    const float** logits_out,
    size_t* vocabulary_size_out,
    size_t* num_rows_out);

/*
 * Diagnostics (tests compare routing with a reference at router near-ties): the experts chosen in
 * the last chunk, as ids[(block * rows_per_block + row) * num_active + slot] for rows
 * 0..num_rows-1 (the chunk's tokens) in descending router-logit order. rows_per_block is at least
 * max_batch_tokens (rounded up so each block's slice is 16-byte aligned). The memory belongs to the
 * context (valid like get_logits). invalid_state if nothing was processed.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_get_expert_choices(
    gptoss_context_t context,
    const uint32_t** expert_ids_out,
    size_t* num_blocks_out,
    size_t* num_rows_out,
    size_t* rows_per_block_out,
    size_t* num_active_out);

/*
 * Diagnostics (benchmarks): host time in nanoseconds accumulated since creation, spent encoding
 * command buffers (the forward pass and sampling kernels), in commit + wait (the device's work and
 * its latency), and in the host part of sampling after the wait.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_get_host_timings(
    gptoss_context_t context,
    uint64_t* encode_ns_out,
    uint64_t* device_ns_out,
    uint64_t* finish_ns_out);

/*
 * Asks a running (or the next) process / sample call on this context to stop: it returns
 * cancelled, leaving the context consistent. Safe from any thread. The request is consumed by the
 * call that returns cancelled.
 */
GPTOSS_ABI enum gptoss_status gptoss_context_cancel(gptoss_context_t context);

GPTOSS_ABI enum gptoss_status gptoss_context_retain(gptoss_context_t context);
GPTOSS_ABI enum gptoss_status gptoss_context_release(gptoss_context_t context);

/*
 * Sampler.
 */
/* (sampler functions: section owned by the sampling implementation) */
/*
 * A sampler holds the settings that turn next-token logits into a token. Semantics, for logits
 * l[0..V) and the context's tokens so far (the first P of which were there when the sampling call
 * started — the "prompt" — and the rest were generated by it):
 *
 *  1. Penalties (the vLLM / OpenAI convention):
 *     - repetition (HF/CTRL): for every token id that occurs anywhere in the context (prompt and
 *       generated), l > 0 ? l / r : l * r (r = repetition penalty, 1 = off; applied first);
 *     - frequency and presence (OpenAI): l -= frequency · c + presence · [c > 0], where c counts
 *       the occurrences of the token among the tokens GENERATED so far in this sampling call
 *       (not the prompt).
 *  2. Temperature DIVIDES: z = l' / T (computed as l' · (1/T) with 1/T rounded to float once).
 *     T = 0 means greedy: the token with the largest l' (ties: the lowest id); steps 3-5 are skipped.
 *  3. top-k (0 = off): keep the k tokens with the largest z (ties: lower ids first).
 *  4. top-p (1 = off): of those, in order of decreasing z (ties: lower ids first), keep the shortest
 *     prefix whose probability under softmax(z) renormalised over the top-k set reaches top_p
 *     (at least one token).
 *  5. min-p (0 = off): of those, keep tokens with probability >= min_p · (largest probability),
 *     i.e. z >= max z + ln(min_p).
 *  6. Draw from softmax(z) restricted to the kept tokens: the token maximising z + G(seed, position,
 *     id), where G is Gumbel noise from a counter-based RNG (Philox-4x32-10) keyed by the seed and
 *     indexed by the token's position in the context and its id. The draw therefore depends only on
 *     (seed, position, logits, history): re-running a generation with the same seed gives the same
 *     tokens, whatever was sampled before with other contexts or samplers.
 * Logits that are NaN or -inf are never sampled. Generation stops after a stop token (which is
 * included in the output) or after max_tokens tokens (an argument of the context's sampling call).
 * A sampler may be shared by contexts and threads: the setters take the sampler's lock, and a
 * sampling call copies the settings when it starts and uses only its copy (docs/thread-safety.md).
 * The pointer from gptoss_sampler_get_stop_tokens is valid until the next set_stop_tokens.
 *
 * Defaults: temperature 1, top_p 1, top_k 0, min_p 0, penalties off (0, 0, 1), seed 0, no stop tokens.
 * Setters return invalid_argument (with a message naming the argument and its range) for a value
 * out of range, leaving the setting unchanged.
 */
GPTOSS_ABI enum gptoss_status gptoss_sampler_create(gptoss_sampler_t* sampler_out);

/* temperature: 0 (greedy) or in [1e-4, 1e4]. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_temperature(gptoss_sampler_t sampler, float temperature);

/* top_p in (0, 1]; 1 disables. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_top_p(gptoss_sampler_t sampler, float top_p);

/* top_k: any value; 0 (or >= the vocabulary size) disables. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_top_k(gptoss_sampler_t sampler, uint32_t top_k);

/* min_p in [0, 1]; 0 disables. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_min_p(gptoss_sampler_t sampler, float min_p);

/* presence_penalty and frequency_penalty in [-2, 2] (OpenAI's range); 0 disables. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_presence_penalty(gptoss_sampler_t sampler, float presence_penalty);
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_frequency_penalty(gptoss_sampler_t sampler, float frequency_penalty);

/* repetition_penalty in [0.01, 100]; 1 disables; > 1 discourages repeats. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_repetition_penalty(gptoss_sampler_t sampler, float repetition_penalty);

/* Any 64-bit seed. */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_seed(gptoss_sampler_t sampler, uint64_t seed);

/*
 * Replaces the stop tokens with a copy of tokens[0..count) (count <= 1024; count 0 clears them). Any
 * uint32 is accepted here; a context's sampling call refuses ids outside its model's vocabulary.
 */
GPTOSS_ABI enum gptoss_status gptoss_sampler_set_stop_tokens(gptoss_sampler_t sampler, const uint32_t* tokens, size_t count);

/* The current stop tokens (valid until the next set_stop_tokens or the last release). */
GPTOSS_ABI enum gptoss_status gptoss_sampler_get_stop_tokens(gptoss_sampler_t sampler, const uint32_t** tokens_out, size_t* count_out);

GPTOSS_ABI enum gptoss_status gptoss_sampler_retain(gptoss_sampler_t sampler);
GPTOSS_ABI enum gptoss_status gptoss_sampler_release(gptoss_sampler_t sampler);

#ifdef __cplusplus
}  // extern "C"
#endif
