/* Launch wrapper of the attention kernels (kernels/attention.metal); see internal/kernels-attention.h. */
#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-attention.h"
#include "internal/launch-common.h"

#define ATTENTION_DECODE_THREADS 128u
#define ATTENTION_PREFILL_THREADS 128u
#define ATTENTION_PREFILL_TOKENS 4u
#define ATTENTION_SPLIT_GRANULE 128u   /* 4 SIMD groups x 32 keys: one round of the decode key loop */
#define ATTENTION_PARTIAL_FLOATS 66u   /* 64 accumulators + max + sum per (token, head, split) */

/* Decode splits for a query seeing `keys` keys: enough to spread long contexts over many threadgroups. */
static uint32_t decode_splits(uint32_t keys) {
    uint32_t splits = gptoss_launch_ceil_div(keys, GPTOSS_ATTENTION_KEYS_PER_SPLIT);
    if (splits < 1) {
        splits = 1;
    }
    return splits > GPTOSS_ATTENTION_MAX_SPLITS ? GPTOSS_ATTENTION_MAX_SPLITS : splits;
}

size_t gptoss_attention_scratch_size(uint32_t num_tokens, uint32_t num_q_heads, uint32_t max_keys) {
    if (num_tokens >= GPTOSS_ATTENTION_PREFILL_MIN_TOKENS) {
        return 0;
    }
    const uint32_t splits = decode_splits(max_keys);
    if (splits == 1) {
        return 0;
    }
    return (size_t) num_tokens * num_q_heads * splits * ATTENTION_PARTIAL_FLOATS * sizeof(float);
}

static const char wrapper[] = "gptoss_encode_attention";

static enum gptoss_status check_tensor(
    const char* what, const struct gptoss_buffer* buffer, size_t offset, size_t alignment, uint64_t bytes)
{
    return gptoss_launch_check_tensor(wrapper, what, buffer, offset, alignment, bytes);
}

enum gptoss_status gptoss_encode_attention(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_attention_functions* functions,
    const struct gptoss_buffer* q, size_t q_offset,
    const struct gptoss_buffer* k_cache, size_t k_cache_offset,
    const struct gptoss_buffer* v_cache, size_t v_cache_offset,
    const struct gptoss_buffer* sinks, size_t sinks_offset,
    const struct gptoss_buffer* attn, size_t attn_offset,
    const struct gptoss_buffer* scratch, size_t scratch_offset,
    uint32_t num_tokens, uint32_t first_position, uint32_t num_q_heads, uint32_t num_kv_heads,
    uint32_t window, uint32_t num_slots)
{
    if (command_buffer == NULL || functions == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_encode_attention: %s is NULL",
                                command_buffer == NULL ? "command_buffer" : "functions");
    }
    const bool prefill = num_tokens >= GPTOSS_ATTENTION_PREFILL_MIN_TOKENS;
    const struct gptoss_function* main_function = prefill ? functions->prefill : functions->decode;
    const size_t kv_size =
        gptoss_launch_kv_element_size(main_function,
                                      prefill ? "gptoss_attention_prefill_f" : "gptoss_attention_decode_f");
    if (kv_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_attention: functions->%s is %s, not a gptoss_attention_%s_{f16,f32} kernel",
            prefill ? "prefill" : "decode", gptoss_launch_function_name(main_function),
            prefill ? "prefill" : "decode");
    }
    if (num_tokens == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_encode_attention: num_tokens is 0");
    }
    if ((uint64_t) first_position + num_tokens > (UINT64_C(1) << 31)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_attention: positions %u + %u tokens exceed 2^31", first_position, num_tokens);
    }
    if (num_kv_heads == 0 || (uint64_t) num_q_heads != (uint64_t) num_kv_heads * GPTOSS_ATTENTION_GROUP) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_attention: num_q_heads %u must be %d x num_kv_heads %u (> 0)",
            num_q_heads, GPTOSS_ATTENTION_GROUP, num_kv_heads);
    }
    const uint32_t last_position = first_position + num_tokens - 1;
    const uint32_t first_key = (window != 0 && first_position >= window) ? first_position + 1 - window : 0;
    const uint32_t batch_keys = last_position - first_key + 1;
    if (num_slots < batch_keys) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_attention: the batch needs keys %u..%u (%u) but the cache has %u slots",
            first_key, last_position, batch_keys, num_slots);
    }
    const uint64_t D = GPTOSS_ATTENTION_HEAD_DIM;
    const uint64_t q_bytes = GPTOSS_LAUNCH_BYTES(num_tokens, num_q_heads, D, sizeof(float));
    const uint64_t cache_bytes = GPTOSS_LAUNCH_BYTES(num_slots, num_kv_heads, D, kv_size);
    enum gptoss_status status;
    if ((status = check_tensor("q", q, q_offset, 16, q_bytes)) != gptoss_status_success ||
        (status = check_tensor("k_cache", k_cache, k_cache_offset, 16, cache_bytes)) != gptoss_status_success ||
        (status = check_tensor("v_cache", v_cache, v_cache_offset, 16, cache_bytes)) != gptoss_status_success ||
        (status = check_tensor("sinks", sinks, sinks_offset, 2, (uint64_t) num_q_heads * 2)) != gptoss_status_success ||
        (status = check_tensor("attn", attn, attn_offset, 16, q_bytes)) != gptoss_status_success) {
        return status;
    }

    /* The longest key range of any query in the batch (the last query's). */
    const uint32_t max_keys = (window != 0 && last_position + 1 > window) ? window : last_position + 1;
    const uint32_t splits = prefill ? 1 : decode_splits(max_keys);
    const uint32_t per_split = gptoss_launch_ceil_div(max_keys, splits);
    struct gptoss_attention_args args = {
        .num_tokens = num_tokens,
        .first_position = first_position,
        .num_q_heads = num_q_heads,
        .num_kv_heads = num_kv_heads,
        .window = window,
        .num_slots = num_slots,
        .num_splits = splits,
        .keys_per_split = gptoss_launch_ceil_div(per_split, ATTENTION_SPLIT_GRANULE) * ATTENTION_SPLIT_GRANULE,
    };
    struct gptoss_kernel_arg buffers[6] = {
        gptoss_launch_buffer_arg(1, q, q_offset), gptoss_launch_buffer_arg(2, k_cache, k_cache_offset),
        gptoss_launch_buffer_arg(3, v_cache, v_cache_offset),
        gptoss_launch_buffer_arg(4, sinks, sinks_offset), gptoss_launch_buffer_arg(5, attn, attn_offset),
        gptoss_launch_buffer_arg(6, attn, attn_offset),   /* partials: unused with one split, bound to a valid buffer */
    };
    if (prefill) {
        const uint32_t tiles = gptoss_launch_ceil_div(num_tokens, ATTENTION_PREFILL_TOKENS);
        return gptoss_launch_encode(wrapper, command_buffer, functions->prefill, num_kv_heads, tiles, 1,
                                    ATTENTION_PREFILL_THREADS, &args, sizeof(args), buffers, 5);
    }
    if (splits == 1) {
        return gptoss_launch_encode(wrapper, command_buffer, functions->decode, num_kv_heads, num_tokens, 1,
                                    ATTENTION_DECODE_THREADS, &args, sizeof(args), buffers, 6);
    }
    if (!gptoss_launch_function_is(functions->combine, "gptoss_attention_combine")) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_attention: %u keys need %u splits but functions->combine is not gptoss_attention_combine",
            max_keys, splits);
    }
    const uint64_t scratch_bytes = GPTOSS_LAUNCH_BYTES(num_tokens, num_q_heads, splits, ATTENTION_PARTIAL_FLOATS,
                                                       sizeof(float));
    if ((status = check_tensor("scratch", scratch, scratch_offset, 16, scratch_bytes)) != gptoss_status_success) {
        return status;
    }
    buffers[5] = gptoss_launch_buffer_arg(6, scratch, scratch_offset);
    if ((status = gptoss_launch_encode(wrapper, command_buffer, functions->decode, num_kv_heads, num_tokens, splits,
                                       ATTENTION_DECODE_THREADS, &args, sizeof(args), buffers,
                                       6)) != gptoss_status_success) {
        return status;
    }
    const struct gptoss_kernel_arg combine_buffers[2] = {gptoss_launch_buffer_arg(1, scratch,
            scratch_offset), gptoss_launch_buffer_arg(2, attn, attn_offset)};
    return gptoss_launch_encode(wrapper, command_buffer, functions->combine, num_q_heads, num_tokens, 1,
                                GPTOSS_ATTENTION_HEAD_DIM, &args, sizeof(args), combine_buffers, 2);
}
