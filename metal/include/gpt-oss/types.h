#pragma once

/*
 * Status codes returned by every gpt-oss API function.
 * Values 0-8 are those of the original gpt-oss Metal runtime; later values are additions.
 * After a failure, gptoss_get_last_error_message() describes what went wrong on the calling thread.
 */
enum gptoss_status {
    gptoss_status_success = 0,
    /* An argument is invalid: NULL pointer, out-of-range value, unknown token id. */
    gptoss_status_invalid_argument = 1,
    /* The argument is valid but this implementation does not support it (e.g. head_dim != 64). */
    gptoss_status_unsupported_argument = 2,
    /* The object is not in a state that allows the call. */
    gptoss_status_invalid_state = 3,
    /* The operating system reported an I/O failure (open, stat, mmap, read). */
    gptoss_status_io_error = 4,
    gptoss_status_insufficient_memory = 5,
    /* Device resources (GPU working set, buffers, pipelines) are insufficient. */
    gptoss_status_insufficient_resources = 6,
    /* No usable device on this system. */
    gptoss_status_unsupported_system = 7,
    /* The operation would exceed the context length. */
    gptoss_status_context_overflow = 8,
    /* The model file is malformed: bad magic or UUID, insane header field, truncated section. */
    gptoss_status_invalid_file = 9,
    /* The operation was cancelled through an abort flag before it completed. */
    gptoss_status_cancelled = 10,
    /* The device reported an error while executing kernels (command buffer error, kernel fault). */
    gptoss_status_device_error = 11,
};

/* Special tokens that can be looked up by role (values as in the original runtime). */
enum gptoss_special_token {
    gptoss_special_token_invalid = 0,
    gptoss_special_token_return = 1,
    gptoss_special_token_start = 2,
    gptoss_special_token_message = 3,
    gptoss_special_token_end = 4,
    gptoss_special_token_refusal = 5,
    gptoss_special_token_constrain = 6,
    gptoss_special_token_channel = 7,
    gptoss_special_token_call = 8,
    gptoss_special_token_untrusted = 9,
    gptoss_special_token_end_untrusted = 10,
    gptoss_special_token_max,
};

/* A loaded model: memory-mapped weights, the tokenizer, the device it runs on. Reference counted. */
typedef struct gptoss_model* gptoss_model_t;

/* The model's tokenizer. Shares the model file's mapping; reference counted. */
typedef struct gptoss_tokenizer* gptoss_tokenizer_t;

/*
 * A context: a sequence of tokens, its KV cache and the next-token logits, on one model.
 * Reference counted. A context runs one call at a time: a call overlapping another thread's call on
 * the same context returns gptoss_status_invalid_state and changes nothing (gptoss_context_cancel
 * works from any thread); different contexts may share one model from different threads. See
 * docs/thread-safety.md.
 */
typedef struct gptoss_context* gptoss_context_t;

/* Sampling settings (temperature, top-p, penalties, seed, stop tokens, ...). Reference counted. */
typedef struct gptoss_sampler* gptoss_sampler_t;

