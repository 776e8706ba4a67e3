/*
 * The inference context: token bookkeeping, KV cache, and the forward pass that sequences the
 * kernel families (docs/inference-design.md). One command buffer per chunk of at most
 * max_batch_tokens tokens (all blocks, the unembedding and, when sampling, the sampling kernels),
 * waited once.
 */
/* POSIX.1-2008 for clock_gettime under strict -std=c11 (macOS exposes everything by default). */
#if !defined(_POSIX_C_SOURCE) && !defined(__APPLE__)
  #define _POSIX_C_SOURCE 200809L
#endif

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gpt-oss.h>

#include "internal/bpe.h"
#include "internal/context.h"
#include "internal/error.h"
#include "internal/kernels-attention.h"
#include "internal/kernels-matmul.h"
#include "internal/kernels-moe.h"
#include "internal/model.h"
#include "internal/sampling.h"

/* ---- helpers ---- */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

/* a * b, or SIZE_MAX on overflow (every buffer size goes through it; SIZE_MAX then fails to allocate). */
static size_t mul_size(size_t a, size_t b) {
    size_t result;
    if (__builtin_mul_overflow(a, b, &result)) {
        return SIZE_MAX;
    }
    return result;
}

static size_t mul3(size_t a, size_t b, size_t c) {
    return mul_size(mul_size(a, b), c);
}

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

static size_t max_size(size_t a, size_t b) {
    return a > b ? a : b;
}

static const struct gptoss_model_header* header_of(const struct gptoss_context* context) {
    return &context->model->file.header;
}

static uint32_t vocabulary_of(const struct gptoss_context* context) {
    return context->model->file.layout.vocab_size;
}

/* Byte offset of a dense model.bin tensor inside the dense weights buffer (model->dense_weights). */
static size_t weights_offset(const struct gptoss_context* context, uint64_t file_offset) {
    return (size_t) (file_offset - context->model->file.layout.weights_offset);
}

static size_t block_tensor(const struct gptoss_context* context, uint32_t block, enum gptoss_block_tensor tensor) {
    return weights_offset(context, gptoss_model_layout_block_tensor_offset(&context->model->file.layout, block, tensor));
}

static bool is_sliding_block(const struct gptoss_context* context, uint32_t block) {
    /* gpt-oss alternates: even blocks use the sliding window, odd blocks attend to everything. */
    return block % 2 == 0 && header_of(context)->attention_window != 0;
}

#define CHECK_CONTEXT(context, function)                                                               \
    do {                                                                                               \
        gptoss_clear_error();                                                                          \
        if ((context) == NULL) {                                                                       \
            return gptoss_set_error(gptoss_status_invalid_argument, "%s: context is NULL", function); \
        }                                                                                              \
    } while (0)

/*
 * The thread-safety guard (docs/thread-safety.md). A context runs one call at a time: a call claims
 * `running` with a compare-and-swap at entry, so a call that overlaps another (from a second thread)
 * fails at once with invalid_state instead of corrupting the token bookkeeping or the KV cache.
 * While it runs, the call also holds a reference of its own: a release from another thread (the
 * Python binding's close) then only drops that thread's reference, and the context is freed when
 * the running call leaves. gptoss_context_cancel, retain, release and get_max_tokens take no guard.
 */
static void context_destroy(struct gptoss_context* context);

static enum gptoss_status context_enter(struct gptoss_context* context, const char* function) {
    uintptr_t expected = 0;
    if (!atomic_compare_exchange_strong_explicit(&context->running, &expected, (uintptr_t) function,
                                                 memory_order_acquire, memory_order_relaxed)) {
        return gptoss_set_error(gptoss_status_invalid_state,
            "%s: context is in use by another thread (%s is running on it; a context runs one call at a time: "
            "serialise the calls or use one context per thread)", function, (const char*) expected);
    }
    atomic_fetch_add_explicit(&context->ref_count, 1, memory_order_relaxed);
    return gptoss_status_success;
}

static void context_leave(struct gptoss_context* context) {
    atomic_store_explicit(&context->running, 0, memory_order_release);
    if (atomic_fetch_sub_explicit(&context->ref_count, 1, memory_order_acq_rel) == 1) {
        /* The caller's own reference was released during the call: free now, keeping the call's error. */
        const enum gptoss_status status = gptoss_get_last_error_status();
        char message[1024];
        snprintf(message, sizeof(message), "%s", gptoss_get_last_error_message());
        context_destroy(context);
        if (status != gptoss_status_success) {
            gptoss_set_error(status, "%s", message);
        }
    }
}

/* The body of a public call: NULL check, guard, `call`, release of the guard. */
#define GUARDED(context, function, call)                                            \
    do {                                                                             \
        CHECK_CONTEXT(context, function);                                            \
        enum gptoss_status guard_status_ = context_enter(context, function);         \
        if (guard_status_ == gptoss_status_success) {                                \
            guard_status_ = (call);                                                  \
            context_leave(context);                                                  \
        }                                                                            \
        return guard_status_;                                                        \
    } while (0)

/* ---- creation ---- */

static void context_destroy(struct gptoss_context* context) {
    struct gptoss_buffer* buffers[] = {
        &context->tokens, &context->residual, &context->x_norm, &context->qkv, &context->q, &context->attn,
        &context->attn_partials, &context->expert_ids, &context->expert_weights, &context->act,
        &context->moe_plan, &context->moe_row_pairs, &context->expert_out, &context->logits, &context->kv_cache,
    };
    for (size_t i = 0; i < sizeof(buffers) / sizeof(buffers[0]); i++) {
        gptoss_buffer_release(buffers[i]);
    }
    if (context->sampling_scratch_created) {
        gptoss_sampling_scratch_release(&context->sampling_scratch);
    }
    free(context->kv_block_offset);
    free(context->kv_block_slots);
    gptoss_model_release(context->model);
    free(context);
}

static double gib(uint64_t bytes) {
    return (double) bytes / (double) (UINT64_C(1) << 30);
}

static enum gptoss_status create_buffer(struct gptoss_context* context, size_t size, const char* name,
                                        struct gptoss_buffer* buffer_out) {
    if (size == SIZE_MAX) {
        return gptoss_set_error(gptoss_status_insufficient_memory,
            "gptoss_context_create: the %s buffer size overflows", name);
    }
    /* Each context buffer is one device buffer: say which one and why it is that large. */
    struct gptoss_device_info info;
    gptoss_device_get_info(context->model->device, &info);
    if ((uint64_t) size > info.max_buffer_length) {
        return gptoss_set_error(gptoss_status_insufficient_resources,
            "gptoss_context_create: the %s buffer of a context of %zu tokens (max_batch_tokens %zu%s) needs %.2f GiB "
            "(%zu bytes), more than the maximum buffer length of %.2f GiB (%" PRIu64 " bytes) of %s: use a shorter "
            "context_length%s", name, context->max_tokens, context->max_batch_tokens,
            context->fp32_kv ? ", fp32 KV cache" : "", gib(size), size, gib(info.max_buffer_length),
            info.max_buffer_length, info.name, context->fp32_kv ? " or the fp16 KV cache" : " or max_batch_tokens");
    }
    /* Zero-sized buffers are legal in the model (e.g. no MoE scratch needed) but not on every device. */
    return gptoss_buffer_create(context->model->device, max_size(size, 16), NULL, buffer_out);
}

/* (Re)creates the KV cache for the current precision. */
static enum gptoss_status create_kv_cache(struct gptoss_context* context) {
    const struct gptoss_model_header* h = header_of(context);
    const size_t element = context->fp32_kv ? 4 : 2;
    const size_t row_bytes = mul3(h->num_kv_heads, h->head_dim, element);
    size_t total = 0;
    for (uint32_t n = 0; n < h->num_blocks; n++) {
        const size_t slots = is_sliding_block(context, n) ? context->ring_slots : context->max_tokens;
        context->kv_block_slots[n] = slots;
        context->kv_block_offset[n] = total;
        const size_t block_bytes = mul3(2, slots, row_bytes);  /* K then V */
        if (block_bytes == SIZE_MAX || total > SIZE_MAX - block_bytes) {
            return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_context_create: KV cache size overflows");
        }
        total += block_bytes;
    }
    gptoss_buffer_release(&context->kv_cache);
    return create_buffer(context, total, "KV cache", &context->kv_cache);
}

enum gptoss_status gptoss_context_create(gptoss_model_t model, size_t context_length, size_t max_batch_tokens,
                                         gptoss_context_t* context_out) {
    gptoss_clear_error();
    if (context_out == NULL || model == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_context_create: %s is NULL", model == NULL ? "model" : "context_out");
    }
    *context_out = NULL;
    enum gptoss_status status = gptoss_model_check_kernels(model);
    if (status != gptoss_status_success) {
        return status;
    }
    const struct gptoss_model_header* h = &model->file.header;
    if (context_length > h->context_length) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_context_create: context_length %zu exceeds the model's maximum of %" PRIu32,
            context_length, h->context_length);
    }
    if (context_length == 0) {
        context_length = h->context_length;
    }
    if (max_batch_tokens == 0) {
        max_batch_tokens = GPTOSS_DEFAULT_MAX_BATCH_TOKENS;
    }
    max_batch_tokens = min_size(max_batch_tokens, context_length);

    struct gptoss_context* context = calloc(1, sizeof(*context));
    if (context == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_context_create: out of memory");
    }
    atomic_init(&context->ref_count, 1);
    atomic_init(&context->running, 0);
    gptoss_model_retain(model);
    context->model = model;
    context->max_tokens = context_length;
    context->max_batch_tokens = max_batch_tokens;
    {
        /* Each block's routing slice must start 16-byte aligned: rows * k * 4 bytes a multiple of 16. */
        const size_t k = h->num_active_experts;
        const size_t row_multiple = k % 4 == 0 ? 1 : k % 2 == 0 ? 2 : 4;
        context->routing_rows_per_block = (max_batch_tokens + row_multiple - 1) / row_multiple * row_multiple;
    }
    /* Window plus one batch: a batch never overwrites keys an earlier query of the same batch needs. */
    context->ring_slots = min_size((size_t) h->attention_window + max_batch_tokens, context_length);
    context->kv_block_offset = calloc(h->num_blocks, sizeof(size_t));
    context->kv_block_slots = calloc(h->num_blocks, sizeof(size_t));
    if (context->kv_block_offset == NULL || context->kv_block_slots == NULL) {
        context_destroy(context);
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_context_create: out of memory");
    }

    const size_t T = max_batch_tokens;
    const size_t D = h->embedding_dim;
    const size_t k = h->num_active_experts;
    const size_t q_dim = (size_t) h->num_heads * h->head_dim;
    const size_t qkv_dim = (size_t) (h->num_heads + 2 * h->num_kv_heads) * h->head_dim;
    const size_t V = model->file.layout.vocab_size;
    /* Decode attention splits long key ranges; size its scratch for the worst decode call. */
    size_t partials = 0;
    for (size_t t = 1; t <= min_size(T, GPTOSS_ATTENTION_PREFILL_MIN_TOKENS); t++) {
        partials = max_size(partials, gptoss_attention_scratch_size((uint32_t) t, h->num_heads, (uint32_t) context_length));
    }
    struct {
        size_t size;
        const char* name;
        struct gptoss_buffer* buffer;
    } plan[] = {
        {mul_size(context_length, 4), "tokens", &context->tokens},
        {mul3(T, D, 4), "residual", &context->residual},
        {mul3(T, D, 4), "x_norm", &context->x_norm},
        {mul3(T, qkv_dim, 4), "qkv", &context->qkv},
        {mul3(T, q_dim, 4), "q", &context->q},
        {mul3(T, q_dim, 4), "attn", &context->attn},
        {partials, "attention partials", &context->attn_partials},
        {mul3(h->num_blocks, mul_size(context->routing_rows_per_block, k), 4), "expert_ids", &context->expert_ids},
        {mul3(h->num_blocks, mul_size(context->routing_rows_per_block, k), 4), "expert_weights",
         &context->expert_weights},
        {mul3(T, k, mul_size(h->mlp_dim, 4)), "act", &context->act},
        {mul3(2, (size_t) h->num_experts + 1, 4), "moe plan", &context->moe_plan},
        {mul3(T, k, 4), "moe row pairs", &context->moe_row_pairs},
        {mul3(T, k, mul_size(D, 4)), "expert_out", &context->expert_out},
        {mul3(T, V, 4), "logits", &context->logits},
    };
    for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
        status = create_buffer(context, plan[i].size, plan[i].name, plan[i].buffer);
        if (status != gptoss_status_success) {
            context_destroy(context);
            return status;
        }
    }
    status = create_kv_cache(context);
    if (status == gptoss_status_success) {
        status = gptoss_sampling_scratch_create(model->device, (uint32_t) V, &context->sampling_scratch);
        context->sampling_scratch_created = status == gptoss_status_success;
    }
    if (status != gptoss_status_success) {
        context_destroy(context);
        return status;
    }
    *context_out = context;
    return gptoss_status_success;
}

static enum gptoss_status context_set_fp32_kv(gptoss_context_t context, int enabled) {
    CHECK_CONTEXT(context, "gptoss_context_set_fp32_kv");
    if ((enabled != 0) == context->fp32_kv) {
        return gptoss_status_success;
    }
    if (context->num_tokens != 0) {
        return gptoss_set_error(gptoss_status_invalid_state,
            "gptoss_context_set_fp32_kv: the context holds %zu tokens: change the KV precision only while it is empty",
            context->num_tokens);
    }
    context->fp32_kv = enabled != 0;
    context->num_kv_tokens = 0;  /* the new cache holds nothing */
    context->ring_lo = 0;
    enum gptoss_status status = create_kv_cache(context);
    if (status != gptoss_status_success) {
        /* E.g. the fp32 cache exceeds the device's max buffer length: keep a usable context in the
         * old precision and report the failure (its message is kept over any from the retry). */
        char message[1024];
        snprintf(message, sizeof(message), "%s", gptoss_get_last_error_message());
        context->fp32_kv = !context->fp32_kv;
        if (create_kv_cache(context) != gptoss_status_success) {
            return status;
        }
        return gptoss_set_error(status, "%s (the context keeps its %s KV cache)", message,
                                context->fp32_kv ? "fp32" : "fp16");
    }
    return gptoss_status_success;
}

static enum gptoss_status context_set_output_all_logits(gptoss_context_t context, int enabled) {
    CHECK_CONTEXT(context, "gptoss_context_set_output_all_logits");
    context->output_all_logits = enabled != 0;
    return gptoss_status_success;
}

/* ---- tokens ---- */

static enum gptoss_status context_get_num_tokens(gptoss_context_t context, size_t* num_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_num_tokens");
    if (num_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_num_tokens: num_tokens_out is NULL");
    }
    *num_tokens_out = context->num_tokens;
    return gptoss_status_success;
}

static enum gptoss_status context_get_num_processed_tokens(gptoss_context_t context, size_t* num_processed_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_num_processed_tokens");
    if (num_processed_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_context_get_num_processed_tokens: num_processed_tokens_out is NULL");
    }
    *num_processed_tokens_out = min_size(context->num_kv_tokens, context->num_tokens);
    return gptoss_status_success;
}

enum gptoss_status gptoss_context_get_max_tokens(gptoss_context_t context, size_t* max_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_max_tokens");
    if (max_tokens_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_max_tokens: max_tokens_out is NULL");
    }
    *max_tokens_out = context->max_tokens;
    return gptoss_status_success;
}

static enum gptoss_status context_get_tokens(gptoss_context_t context, uint32_t* tokens_out, size_t max_tokens,
                                             size_t* num_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_tokens");
    if (num_tokens_out == NULL || (tokens_out == NULL && max_tokens != 0)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_tokens: %s is NULL",
            num_tokens_out == NULL ? "num_tokens_out" : "tokens_out");
    }
    *num_tokens_out = context->num_tokens;
    if (max_tokens < context->num_tokens) {
        return gptoss_set_error(gptoss_status_insufficient_memory,
            "gptoss_context_get_tokens: room for %zu tokens, the context holds %zu", max_tokens, context->num_tokens);
    }
    if (context->num_tokens != 0) {
        memcpy(tokens_out, context->tokens.ptr, context->num_tokens * sizeof(uint32_t));
    }
    return gptoss_status_success;
}

/*
 * The KV entries are valid for positions [0, num_kv_tokens); the sliding-window rings additionally
 * only hold positions [ring_lo, num_kv_tokens). Lowering num_kv_tokens to a divergence point keeps
 * what the rings hold below it.
 */
static void invalidate_kv_from(struct gptoss_context* context, size_t position) {
    if (position < context->num_kv_tokens) {
        context->num_kv_tokens = position;
        if (context->ring_lo > position) {
            context->ring_lo = position;
        }
    }
}

/* Appends ids already validated; keeps cached KV entries where the id equals the old one (after reset). */
static void append_validated(struct gptoss_context* context, size_t num_tokens, const uint32_t* tokens) {
    uint32_t* stored = context->tokens.ptr;
    for (size_t i = 0; i < num_tokens; i++) {
        const size_t position = context->num_tokens + i;
        if (position < context->num_kv_tokens && stored[position] != tokens[i]) {
            invalidate_kv_from(context, position);
        }
        stored[position] = tokens[i];
    }
    context->num_tokens += num_tokens;
}

static enum gptoss_status context_append_tokens(gptoss_context_t context, size_t num_tokens, const uint32_t* tokens) {
    CHECK_CONTEXT(context, "gptoss_context_append_tokens");
    if (tokens == NULL && num_tokens != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_append_tokens: tokens is NULL");
    }
    const uint32_t vocabulary = vocabulary_of(context);
    for (size_t i = 0; i < num_tokens; i++) {
        if (tokens[i] >= vocabulary) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_context_append_tokens: token id %" PRIu32 " at index %zu is outside the vocabulary (%" PRIu32 " tokens)",
                tokens[i], i, vocabulary);
        }
    }
    if (num_tokens > context->max_tokens - context->num_tokens) {
        return gptoss_set_error(gptoss_status_context_overflow,
            "gptoss_context_append_tokens: %zu tokens do not fit: the context holds %zu of %zu",
            num_tokens, context->num_tokens, context->max_tokens);
    }
    append_validated(context, num_tokens, tokens);
    return gptoss_status_success;
}

static enum gptoss_status context_append_chars(gptoss_context_t context, const char* text, size_t text_length,
                                               size_t* num_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_append_chars");
    if (text == NULL && text_length != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_append_chars: text is NULL");
    }
    uint32_t* ids = NULL;
    size_t count = 0;
    enum gptoss_status status = gptoss_tokenizer_encode(context->model->tokenizer, text, text_length, &ids, &count);
    if (status != gptoss_status_success) {
        return status;
    }
    if (count > context->max_tokens - context->num_tokens) {
        free(ids);
        return gptoss_set_error(gptoss_status_context_overflow,
            "gptoss_context_append_chars: the text's %zu tokens do not fit: the context holds %zu of %zu",
            count, context->num_tokens, context->max_tokens);
    }
    append_validated(context, count, ids);
    free(ids);
    if (num_tokens_out != NULL) {
        *num_tokens_out = count;
    }
    return gptoss_status_success;
}

static enum gptoss_status context_reset(gptoss_context_t context) {
    CHECK_CONTEXT(context, "gptoss_context_reset");
    /* The token array keeps the old ids beyond num_tokens: append_validated compares against them. */
    context->num_tokens = 0;
    context->num_logits_rows = 0;
    context->num_expert_rows = 0;
    return gptoss_status_success;
}

/* ---- the forward pass ---- */

static enum gptoss_status encode_block(struct gptoss_context* context, struct gptoss_command_buffer* cb,
                                       uint32_t block, uint32_t first_position, uint32_t num_tokens) {
    struct gptoss_model* model = context->model;
    const struct gptoss_model_header* h = header_of(context);
    const struct gptoss_model_kernels* kernels = &model->kernels;
    const struct gptoss_buffer* w = &model->dense_weights;
    /* The block's experts: their own buffer, the section starting at offset 0 (model.c). */
    const struct gptoss_buffer* moe = &model->moe_weights[block];
    const size_t moe_section = 0;
    const int kv32 = context->fp32_kv ? 1 : 0;
    const uint32_t T = num_tokens;
    const uint32_t D = h->embedding_dim;
    const uint32_t k = h->num_active_experts;
    const size_t kv_row_bytes = (size_t) h->num_kv_heads * h->head_dim * (kv32 ? 4 : 2);
    const size_t k_offset = context->kv_block_offset[block];
    const size_t v_offset = k_offset + context->kv_block_slots[block] * kv_row_bytes;
    const uint32_t slots = (uint32_t) context->kv_block_slots[block];
    const size_t routing_offset = (size_t) block * context->routing_rows_per_block * k * 4;  /* 16-byte aligned */

    const struct gptoss_dense_functions dense = {
        .matvec = kernels->matvec, .gemm = kernels->gemm, .rmsnorm = kernels->rmsnorm,
        .qkv_decode = kernels->qkv_rope_kv[kv32], .rope_kv = kernels->rope_kv[kv32],
    };
    const struct gptoss_rope_params rope = {
        .theta = h->rope_theta, .interpolation_scale = h->interpolation_scale, .yarn_offset = h->yarn_offset,
        .yarn_scale = h->yarn_scale, .yarn_multiplier = h->yarn_multiplier,
    };
    enum gptoss_status status = gptoss_encode_qkv(cb, &dense,
        &context->residual, 0,
        w, block_tensor(context, block, gptoss_block_tensor_attn_norm),
        w, block_tensor(context, block, gptoss_block_tensor_qkv_weight),
        w, block_tensor(context, block, gptoss_block_tensor_qkv_bias),
        &context->q, 0, &context->kv_cache, k_offset, &context->kv_cache, v_offset,
        &context->x_norm, 0, &context->qkv, 0,
        T, D, h->num_heads, h->num_kv_heads, first_position, slots, h->rmsnorm_epsilon, &rope);
    if (status != gptoss_status_success) {
        return status;
    }
    const struct gptoss_attention_functions attention = {
        .decode = kernels->attention_decode[kv32], .prefill = kernels->attention_prefill[kv32],
        .combine = kernels->attention_combine,
    };
    status = gptoss_encode_attention(cb, &attention, &context->q, 0,
        &context->kv_cache, k_offset, &context->kv_cache, v_offset,
        w, block_tensor(context, block, gptoss_block_tensor_sinks),
        &context->attn, 0, &context->attn_partials, 0,
        T, first_position, h->num_heads, h->num_kv_heads,
        is_sliding_block(context, block) ? h->attention_window : 0, slots);
    if (status != gptoss_status_success) {
        return status;
    }
    status = gptoss_encode_dense_projection(cb, &dense, &context->attn, 0,
        w, block_tensor(context, block, gptoss_block_tensor_out_weight),
        w, block_tensor(context, block, gptoss_block_tensor_out_bias),
        &context->residual, 0, T, h->num_heads * h->head_dim, D, /*add_residual=*/1);
    if (status != gptoss_status_success) {
        return status;
    }
    status = gptoss_encode_router(cb, kernels->router, &context->residual, 0,
        w, block_tensor(context, block, gptoss_block_tensor_mlp_norm),
        w, block_tensor(context, block, gptoss_block_tensor_gate_weight),
        w, block_tensor(context, block, gptoss_block_tensor_gate_bias),
        &context->x_norm, 0, &context->expert_ids, routing_offset, &context->expert_weights, routing_offset,
        T, D, h->num_experts, k, h->rmsnorm_epsilon);
    if (status != gptoss_status_success) {
        return status;
    }
    if (T < GPTOSS_DENSE_GEMM_MIN_TOKENS) {
        status = gptoss_encode_moe_mlp1_swiglu_decode(cb, kernels->moe_mlp1_decode, &context->x_norm, 0,
            &context->expert_ids, routing_offset, moe, moe_section, &context->act, 0,
            T, D, h->mlp_dim, h->num_experts, k, h->swiglu_limit);
        if (status == gptoss_status_success) {
            status = gptoss_encode_moe_mlp2_accumulate_decode(cb, kernels->moe_mlp2_decode, &context->act, 0,
                &context->expert_ids, routing_offset, &context->expert_weights, routing_offset,
                moe, moe_section, &context->residual, 0, T, D, h->mlp_dim, h->num_experts, k);
        }
        return status;
    }
    status = gptoss_encode_moe_scatter(cb, kernels->moe_scatter, &context->expert_ids, routing_offset,
        &context->moe_plan, 0, &context->moe_row_pairs, 0, T, h->num_experts, k);
    if (status == gptoss_status_success) {
        status = gptoss_encode_moe_mlp1_swiglu_prefill(cb, kernels->moe_mlp1_prefill, &context->x_norm, 0,
            &context->moe_plan, 0, &context->moe_row_pairs, 0, moe, moe_section, &context->act, 0,
            T, D, h->mlp_dim, h->num_experts, k, h->swiglu_limit);
    }
    if (status == gptoss_status_success) {
        status = gptoss_encode_moe_mlp2_prefill(cb, kernels->moe_mlp2_prefill, &context->act, 0,
            &context->moe_plan, 0, &context->moe_row_pairs, 0, &context->expert_weights, routing_offset,
            moe, moe_section, &context->expert_out, 0, T, D, h->mlp_dim, h->num_experts, k);
    }
    if (status == gptoss_status_success) {
        status = gptoss_encode_moe_gather(cb, kernels->moe_gather, &context->expert_out, 0,
            &context->expert_ids, routing_offset, &context->residual, 0, T, D, h->num_experts, k);
    }
    return status;
}

/* Encodes the whole model for tokens [first_position, first_position + num_tokens) and their logits. */
static enum gptoss_status encode_chunk(struct gptoss_context* context, struct gptoss_command_buffer* cb,
                                       size_t first_position, size_t num_tokens, size_t* num_logits_rows_out) {
    struct gptoss_model* model = context->model;
    const struct gptoss_model_header* h = header_of(context);
    const struct gptoss_model_layout* layout = &model->file.layout;
    const uint32_t D = h->embedding_dim;
    enum gptoss_status status = gptoss_encode_embeddings(cb, model->kernels.embeddings,
        &context->tokens, first_position * sizeof(uint32_t),
        &model->dense_weights, weights_offset(context, layout->embedding.offset),
        &context->residual, 0, (uint32_t) num_tokens, D, layout->vocab_size);
    for (uint32_t n = 0; n < h->num_blocks && status == gptoss_status_success; n++) {
        status = encode_block(context, cb, n, (uint32_t) first_position, (uint32_t) num_tokens);
    }
    if (status != gptoss_status_success) {
        return status;
    }
    const struct gptoss_dense_functions dense = {
        .matvec = model->kernels.matvec, .gemm = model->kernels.gemm, .rmsnorm = model->kernels.rmsnorm,
    };
    /* Only the last position's logits unless every row was asked for. */
    const size_t rows = context->output_all_logits ? num_tokens : 1;
    const size_t first_row = num_tokens - rows;
    *num_logits_rows_out = rows;
    return gptoss_encode_unembedding(cb, &dense,
        &context->residual, first_row * D * sizeof(float),
        &model->dense_weights, weights_offset(context, layout->final_norm.offset),
        &model->dense_weights, weights_offset(context, layout->unembedding.offset),
        &context->x_norm, 0, &context->logits, 0,
        (uint32_t) rows, D, layout->vocab_size, h->rmsnorm_epsilon);
}

/*
 * The error for logits that leave nothing to sample (every one NaN or -inf): finite weights and
 * activations cannot produce that, so the model file's weights are the likely cause.
 */
static enum gptoss_status report_unusable_logits(struct gptoss_context* context, size_t row) {
    const uint32_t V = vocabulary_of(context);
    const float* logits = (const float*) context->logits.ptr + row * (size_t) V;
    size_t nan = 0, negative_infinity = 0, positive_infinity = 0;
    for (uint32_t i = 0; i < V; i++) {
        const float x = logits[i];
        if (x != x) {
            nan++;
        } else if (x == -INFINITY) {
            negative_infinity++;
        } else if (x == INFINITY) {
            positive_infinity++;
        }
    }
    const size_t position = context->logits_end - 1;
    return gptoss_set_error(gptoss_status_invalid_file,
        "gptoss_context_sample_with_sampler: the model's logits after position %zu are not finite "
        "(%zu NaN, %zu -inf, %zu +inf of %" PRIu32 "): nothing can be sampled; the model file's weights are likely "
        "corrupt (NaN or infinite values)", position, nan, negative_infinity, positive_infinity, V);
}

/* A launch wrapper refused the forward pass's own arguments: say it is an internal error. */
static enum gptoss_status report_internal_error(struct gptoss_context* context) {
    char message[1024];
    snprintf(message, sizeof(message), "%s", gptoss_get_last_error_message());
    const struct gptoss_model_header* h = header_of(context);
    return gptoss_set_error(gptoss_status_device_error,
        "gptoss_context: internal error encoding the forward pass (a bug in gpt-oss-metal, not in the arguments: "
        "please report it with context_length %zu, max_batch_tokens %zu, embedding_dim %" PRIu32
        ", num_active_experts %" PRIu32 "): %s", context->max_tokens, context->max_batch_tokens, h->embedding_dim,
        h->num_active_experts, message);
}

/* Consumes a pending cancellation request: true if there was one. */
static bool take_cancel_request(struct gptoss_context* context) {
    return __atomic_exchange_n(&context->abort_flag, 0, __ATOMIC_ACQ_REL) != 0;
}

/* Where processing must restart so that every cached entry it relies on is valid (see context.h). */
static void choose_restart(struct gptoss_context* context) {
    const size_t P = context->num_kv_tokens;
    const size_t W = header_of(context)->attention_window;
    const size_t needed_lo = P >= W ? P - W + 1 : 0;
    if (P != 0 && context->ring_lo > needed_lo) {
        /*
         * The rings lost keys the window before P needs. Recomputing only those positions is not
         * exact: their outputs in later sliding blocks depend on earlier windows in turn, and the
         * rerun would rewrite full-attention entries. Recompute from the start instead.
         */
        context->num_kv_tokens = 0;
        context->ring_lo = 0;
    }
}

/*
 * Runs every unprocessed token; when `sampler` is given, the last command buffer also samples the
 * next token (written to *token_out), history as for gptoss_sampler_encode.
 */
static enum gptoss_status run(struct gptoss_context* context, const struct gptoss_sampler* sampler,
                              size_t num_prompt_tokens, uint32_t* token_out) {
    struct gptoss_model* model = context->model;
    if (take_cancel_request(context)) {
        return gptoss_set_error(gptoss_status_cancelled, "gptoss_context: cancelled before processing");
    }
    /* A model file truncated or rewritten since load would feed the kernels garbage (or SIGBUS):
     * refuse with invalid_file naming the change (one fstat + stat, ~2 us). */
    enum gptoss_status file_status = gptoss_model_check_file(model);
    if (file_status != gptoss_status_success) {
        return file_status;
    }
    if (context->num_tokens != 0 && context->num_kv_tokens >= context->num_tokens &&
        (context->num_logits_rows == 0 || context->logits_end != context->num_tokens)) {
        /* Everything is cached (e.g. after reset) but no logits are this position's: redo the last token. */
        invalidate_kv_from(context, context->num_tokens - 1);
    }
    choose_restart(context);
    const uint32_t V = vocabulary_of(context);
    bool sampled = false;
    do {
        const size_t first = context->num_kv_tokens;
        const size_t count = min_size(context->max_batch_tokens, context->num_tokens - first);
        const bool last = first + count >= context->num_tokens;
        const uint64_t encode_start = now_ns();
        struct gptoss_command_buffer* cb = NULL;
        enum gptoss_status status = gptoss_command_buffer_create(model->device, &cb);
        if (status != gptoss_status_success) {
            return status;
        }
        gptoss_command_buffer_set_abort_flag(cb, &context->abort_flag);
        size_t rows = context->num_logits_rows;
        if (count != 0) {
            status = encode_chunk(context, cb, first, count, &rows);
        }
        if (status == gptoss_status_success && last && sampler != NULL) {
            status = gptoss_sampler_encode(sampler, cb, &model->sampling, &context->logits,
                (rows - 1) * (size_t) V * sizeof(float), V, &context->tokens, 0,
                (uint32_t) context->num_tokens, (uint32_t) num_prompt_tokens, context->num_tokens,
                &context->sampling_scratch);
            sampled = status == gptoss_status_success;
        }
        if (status == gptoss_status_invalid_argument) {
            /* Every launch argument here derives from the context's own sizes, which creation validated:
             * a wrapper refusing one is a bug of this library, never the caller's argument. */
            status = report_internal_error(context);
        }
        const uint64_t device_start = now_ns();
        context->encode_ns += device_start - encode_start;
        if (status == gptoss_status_success) {
            status = gptoss_command_buffer_commit(cb);
        }
        if (status == gptoss_status_success) {
            status = gptoss_command_buffer_wait(cb);
        }
        if (status == gptoss_status_success) {
            /* Changed while the kernels ran (the SIGBUS guard gave them zero pages): discard the chunk. */
            status = gptoss_model_check_file(model);
        }
        context->device_ns += now_ns() - device_start;
        gptoss_command_buffer_release(cb);
        if (count != 0) {
            /* Whatever happened, the chunk may have overwritten ring slots of positions first + count - slots... */
            if (first + count > context->ring_slots) {
                context->ring_lo = max_size(context->ring_lo, first + count - context->ring_slots);
            }
        }
        if (status != gptoss_status_success) {
            context->num_logits_rows = 0;
            context->num_expert_rows = 0;
            if (status == gptoss_status_cancelled) {
                take_cancel_request(context);
            }
            return status;
        }
        if (count != 0) {
            context->num_kv_tokens = first + count;
            context->num_logits_rows = rows;
            context->num_expert_rows = count;
            context->logits_end = first + count;
        }
    } while (context->num_kv_tokens < context->num_tokens);
    if (sampled) {
        const uint64_t finish_start = now_ns();
        enum gptoss_status status = gptoss_sampler_finish(sampler, &context->sampling_scratch, token_out);
        context->finish_ns += now_ns() - finish_start;
        if (status == gptoss_status_invalid_argument) {
            /* Nothing could be drawn: the model produced no usable logit. Not the caller's argument. */
            status = report_unusable_logits(context, context->num_logits_rows - 1);
        }
        return status;
    }
    return gptoss_status_success;
}

static enum gptoss_status context_process(gptoss_context_t context) {
    CHECK_CONTEXT(context, "gptoss_context_process");
    if (context->num_tokens == 0 ||
        (context->num_kv_tokens >= context->num_tokens && context->num_logits_rows != 0 &&
         context->logits_end == context->num_tokens)) {
        return gptoss_status_success;  /* nothing to do: every token processed, logits current */
    }
    return run(context, NULL, 0, NULL);
}

static enum gptoss_status context_sample_with_sampler(gptoss_context_t context, gptoss_sampler_t sampler,
                                                      size_t max_tokens, uint32_t* tokens_out, size_t* num_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_sample_with_sampler");
    if (sampler == NULL || num_tokens_out == NULL || (tokens_out == NULL && max_tokens != 0)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_sample_with_sampler: %s is NULL",
            sampler == NULL ? "sampler" : num_tokens_out == NULL ? "num_tokens_out" : "tokens_out");
    }
    *num_tokens_out = 0;
    if (context->num_tokens == 0) {
        return gptoss_set_error(gptoss_status_invalid_state,
            "gptoss_context_sample_with_sampler: the context is empty: there is nothing to predict from");
    }
    /* A private snapshot of the settings: another thread may change the sampler meanwhile. */
    gptoss_sampler_t settings = NULL;
    enum gptoss_status status = gptoss_sampler_clone(sampler, &settings);
    if (status != gptoss_status_success) {
        return status;
    }
    const uint32_t vocabulary = vocabulary_of(context);
    const uint32_t* stops = NULL;
    size_t num_stops = 0;
    gptoss_sampler_get_stop_tokens(settings, &stops, &num_stops);
    for (size_t i = 0; i < num_stops; i++) {
        if (stops[i] >= vocabulary) {
            gptoss_sampler_release(settings);
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_context_sample_with_sampler: stop token %" PRIu32 " (index %zu of the sampler's stop tokens) "
                "is outside the vocabulary (ids 0 to %" PRIu32 ")", stops[i], i, vocabulary - 1);
        }
    }
    const size_t num_prompt_tokens = context->num_tokens;
    for (size_t i = 0; i < max_tokens; i++) {
        if (context->num_tokens >= context->max_tokens) {
            if (i == 0) {
                status = gptoss_set_error(gptoss_status_context_overflow,
                    "gptoss_context_sample_with_sampler: the context is full (%zu tokens)", context->max_tokens);
            }
            break;
        }
        uint32_t token = 0;
        status = run(context, settings, num_prompt_tokens, &token);
        if (status != gptoss_status_success) {
            break;
        }
        /* Appended unprocessed: the next run computes its KV entry (and the logits after it). */
        append_validated(context, 1, &token);
        tokens_out[i] = token;
        *num_tokens_out = i + 1;
        if (gptoss_sampler_is_stop_token(settings, token)) {
            break;
        }
    }
    gptoss_sampler_release(settings);
    return status;
}

static enum gptoss_status context_sample(gptoss_context_t context, float temperature, uint64_t seed, size_t max_tokens,
                                         uint32_t* tokens_out, size_t* num_tokens_out) {
    CHECK_CONTEXT(context, "gptoss_context_sample");
    gptoss_sampler_t sampler = NULL;
    enum gptoss_status status = gptoss_sampler_create(&sampler);
    if (status == gptoss_status_success) {
        status = gptoss_sampler_set_temperature(sampler, temperature);
    }
    if (status == gptoss_status_success) {
        status = gptoss_sampler_set_seed(sampler, seed);
    }
    if (status == gptoss_status_success) {
        status = context_sample_with_sampler(context, sampler, max_tokens, tokens_out, num_tokens_out);
    }
    gptoss_sampler_release(sampler);
    return status;
}

/* ---- outputs ---- */

static enum gptoss_status context_get_logits(gptoss_context_t context, const float** logits_out,
                                             size_t* vocabulary_size_out, size_t* num_rows_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_logits");
    if (logits_out == NULL || vocabulary_size_out == NULL || num_rows_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_logits: an output pointer is NULL");
    }
    if (context->num_logits_rows == 0) {
        return gptoss_set_error(gptoss_status_invalid_state,
            "gptoss_context_get_logits: no logits: nothing was processed since the context was created or reset");
    }
    *logits_out = context->logits.ptr;
    *vocabulary_size_out = vocabulary_of(context);
    *num_rows_out = context->num_logits_rows;
    return gptoss_status_success;
}

static enum gptoss_status context_get_expert_choices(gptoss_context_t context, const uint32_t** expert_ids_out,
                                                     size_t* num_blocks_out, size_t* num_rows_out,
                                                     size_t* rows_per_block_out, size_t* num_active_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_expert_choices");
    if (expert_ids_out == NULL || num_blocks_out == NULL || num_rows_out == NULL || rows_per_block_out == NULL ||
        num_active_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_expert_choices: an output pointer is NULL");
    }
    if (context->num_expert_rows == 0) {
        return gptoss_set_error(gptoss_status_invalid_state, "gptoss_context_get_expert_choices: nothing processed");
    }
    *expert_ids_out = context->expert_ids.ptr;
    *num_blocks_out = header_of(context)->num_blocks;
    *num_rows_out = context->num_expert_rows;
    *rows_per_block_out = context->routing_rows_per_block;
    *num_active_out = header_of(context)->num_active_experts;
    return gptoss_status_success;
}

static enum gptoss_status context_get_host_timings(gptoss_context_t context, uint64_t* encode_ns_out,
                                                   uint64_t* device_ns_out, uint64_t* finish_ns_out) {
    CHECK_CONTEXT(context, "gptoss_context_get_host_timings");
    if (encode_ns_out == NULL || device_ns_out == NULL || finish_ns_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_context_get_host_timings: an output pointer is NULL");
    }
    *encode_ns_out = context->encode_ns;
    *device_ns_out = context->device_ns;
    *finish_ns_out = context->finish_ns;
    return gptoss_status_success;
}


/* ---- the public calls, under the thread-safety guard (context_enter / context_leave) ---- */

enum gptoss_status gptoss_context_set_fp32_kv(gptoss_context_t context, int enabled) {
    GUARDED(context, "gptoss_context_set_fp32_kv", context_set_fp32_kv(context, enabled));
}

enum gptoss_status gptoss_context_set_output_all_logits(gptoss_context_t context, int enabled) {
    GUARDED(context, "gptoss_context_set_output_all_logits", context_set_output_all_logits(context, enabled));
}

enum gptoss_status gptoss_context_get_num_tokens(gptoss_context_t context, size_t* num_tokens_out) {
    GUARDED(context, "gptoss_context_get_num_tokens", context_get_num_tokens(context, num_tokens_out));
}

enum gptoss_status gptoss_context_get_num_processed_tokens(gptoss_context_t context, size_t* num_processed_tokens_out) {
    GUARDED(context, "gptoss_context_get_num_processed_tokens", context_get_num_processed_tokens(context, num_processed_tokens_out));
}

enum gptoss_status gptoss_context_get_tokens(gptoss_context_t context, uint32_t* tokens_out, size_t max_tokens,
                                             size_t* num_tokens_out) {
    GUARDED(context, "gptoss_context_get_tokens", context_get_tokens(context, tokens_out, max_tokens, num_tokens_out));
}

enum gptoss_status gptoss_context_append_tokens(gptoss_context_t context, size_t num_tokens, const uint32_t* tokens) {
    GUARDED(context, "gptoss_context_append_tokens", context_append_tokens(context, num_tokens, tokens));
}

enum gptoss_status gptoss_context_append_chars(gptoss_context_t context, const char* text, size_t text_length,
                                               size_t* num_tokens_out) {
    GUARDED(context, "gptoss_context_append_chars", context_append_chars(context, text, text_length, num_tokens_out));
}

enum gptoss_status gptoss_context_reset(gptoss_context_t context) {
    GUARDED(context, "gptoss_context_reset", context_reset(context));
}

enum gptoss_status gptoss_context_process(gptoss_context_t context) {
    GUARDED(context, "gptoss_context_process", context_process(context));
}

enum gptoss_status gptoss_context_sample_with_sampler(gptoss_context_t context, gptoss_sampler_t sampler,
                                                      size_t max_tokens, uint32_t* tokens_out, size_t* num_tokens_out) {
    GUARDED(context, "gptoss_context_sample_with_sampler", context_sample_with_sampler(context, sampler, max_tokens, tokens_out, num_tokens_out));
}

enum gptoss_status gptoss_context_sample(gptoss_context_t context, float temperature, uint64_t seed, size_t max_tokens,
                                         uint32_t* tokens_out, size_t* num_tokens_out) {
    GUARDED(context, "gptoss_context_sample", context_sample(context, temperature, seed, max_tokens, tokens_out, num_tokens_out));
}

enum gptoss_status gptoss_context_get_logits(gptoss_context_t context, const float** logits_out,
                                             size_t* vocabulary_size_out, size_t* num_rows_out) {
    GUARDED(context, "gptoss_context_get_logits", context_get_logits(context, logits_out, vocabulary_size_out, num_rows_out));
}

enum gptoss_status gptoss_context_get_expert_choices(gptoss_context_t context, const uint32_t** expert_ids_out,
                                                     size_t* num_blocks_out, size_t* num_rows_out,
                                                     size_t* rows_per_block_out, size_t* num_active_out) {
    GUARDED(context, "gptoss_context_get_expert_choices", context_get_expert_choices(context, expert_ids_out, num_blocks_out, num_rows_out, rows_per_block_out, num_active_out));
}

enum gptoss_status gptoss_context_get_host_timings(gptoss_context_t context, uint64_t* encode_ns_out,
                                                   uint64_t* device_ns_out, uint64_t* finish_ns_out) {
    GUARDED(context, "gptoss_context_get_host_timings", context_get_host_timings(context, encode_ns_out, device_ns_out, finish_ns_out));
}

enum gptoss_status gptoss_context_cancel(gptoss_context_t context) {
    CHECK_CONTEXT(context, "gptoss_context_cancel");
    __atomic_store_n(&context->abort_flag, 1, __ATOMIC_RELEASE);
    return gptoss_status_success;
}

enum gptoss_status gptoss_context_retain(gptoss_context_t context) {
    CHECK_CONTEXT(context, "gptoss_context_retain");
    atomic_fetch_add_explicit(&context->ref_count, 1, memory_order_relaxed);
    return gptoss_status_success;
}

enum gptoss_status gptoss_context_release(gptoss_context_t context) {
    if (context == NULL) {
        return gptoss_status_success;
    }
    if (atomic_fetch_sub_explicit(&context->ref_count, 1, memory_order_acq_rel) == 1) {
        context_destroy(context);
    }
    return gptoss_status_success;
}
