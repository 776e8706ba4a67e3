/*
 * Launch wrapper of the attention kernels (kernels/attention.metal): sinks, GQA, sliding window.
 *
 * Inputs: q [T, Hq * 64] f32 at absolute positions first_position .. first_position + T - 1 (RoPE
 * applied, 1/sqrt(64) already in the weights), the block's K and V caches [num_slots, Hkv, 64]
 * (fp16, or f32 in the exact-parity mode; position p in slot p % num_slots, the current T tokens
 * already written), sinks bf16 [Hq]. Output attn [T, Hq * 64] f32, head-major.
 * A query at position p attends keys lo(p)..p: lo(p) = max(0, p - window + 1) when window > 0
 * (sliding blocks), 0 when window == 0 (full blocks). Softmax over the scores and the head's sink.
 *
 * Kernels (KV = f16 or f32, the cache element type):
 *   gptoss_attention_decode_<KV>  grid (Hkv, T, num_splits) x 128 threads (4 SIMD groups), 14.3 KiB
 *       static threadgroup memory. Threadgroup = one KV head x one token x one share of its key range;
 *       the 4 SIMD groups take interleaved 32-key chunks and merge (max, sum, acc) in threadgroup
 *       memory. num_splits == 1: writes attn. num_splits > 1: writes (unnormalised acc, max, sum) for
 *       its share to the scratch buffer and gptoss_attention_combine finishes.
 *   gptoss_attention_combine      grid (Hq, T) x 64 threads: merges the splits of each (token, head).
 *   gptoss_attention_prefill_<KV> grid (Hkv, ceil(T / 4)) x 128 threads, 20 KiB (f16) / 28 KiB (f32)
 *       static threadgroup memory. Threadgroup = one KV head x 4 tokens; each 32-key K/V chunk is
 *       staged once in threadgroup memory for the 32 query rows (4 tokens x 8 heads); SIMD group s
 *       owns token s with its own causal/window mask.
 * Every kernel reads each K/V row once per threadgroup for all 8 query heads of its KV head.
 *
 * Constraints: head_dim 64, num_q_heads == 8 * num_kv_heads, T >= 1, first_position + T <= 2^31,
 * the keys of the batch (lo(first_position) .. first_position + T - 1) fit in num_slots (so the ring
 * of a sliding block needs num_slots >= window + T - 1), q/out/K/V offsets multiples of 16 bytes,
 * sinks offset a multiple of 2.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPTOSS_ATTENTION_HEAD_DIM 64
#define GPTOSS_ATTENTION_GROUP 8                 /* query heads per KV head */
#define GPTOSS_ATTENTION_PREFILL_MIN_TOKENS 16   /* T below this: decode kernel (one threadgroup row per token) */
#define GPTOSS_ATTENTION_KEYS_PER_SPLIT 1024     /* decode: a split gets at least this many keys ... */
#define GPTOSS_ATTENTION_MAX_SPLITS 64           /* ... and a query's keys go to at most this many splits */

/* The kernels for one KV-cache element type, resolved by name once at model load. */
struct gptoss_attention_functions {
    const struct gptoss_function* decode;    /* "gptoss_attention_decode_f16" or "..._f32" */
    const struct gptoss_function* prefill;   /* "gptoss_attention_prefill_f16" or "..._f32" (same type) */
    const struct gptoss_function* combine;   /* "gptoss_attention_combine" */
};

/*
 * Bytes of scratch gptoss_encode_attention needs for T tokens whose queries see at most max_keys keys
 * (at most the window on sliding blocks, context_length on full ones): 0 when one pass suffices (few
 * keys, or T >= GPTOSS_ATTENTION_PREFILL_MIN_TOKENS), else T * Hq * splits * 66 * 4.
 */
size_t gptoss_attention_scratch_size(uint32_t num_tokens, uint32_t num_q_heads, uint32_t max_keys);

/*
 * Encodes attention for one block: 1 dispatch (prefill kernel when T >= 16; decode kernel when the
 * longest key range fits one split), or 2 (decode with split-K + combine, when a query sees more than
 * 1024 keys). scratch may be NULL when gptoss_attention_scratch_size(...) is 0 for this call.
 * Reads: q, each K/V row in the batch's key range once per threadgroup (once per token and KV head
 * for decode, once per 4 tokens and KV head for prefill), sinks. Writes: attn (and scratch).
 */
enum gptoss_status gptoss_encode_attention(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_attention_functions* functions,
    const struct gptoss_buffer* q, size_t q_offset,
    const struct gptoss_buffer* k_cache, size_t k_cache_offset,
    const struct gptoss_buffer* v_cache, size_t v_cache_offset,
    const struct gptoss_buffer* sinks, size_t sinks_offset,
    const struct gptoss_buffer* attn, size_t attn_offset,
    const struct gptoss_buffer* scratch, size_t scratch_offset,
    uint32_t num_tokens, uint32_t first_position, uint32_t num_q_heads, uint32_t num_kv_heads,
    uint32_t window, uint32_t num_slots);

#ifdef __cplusplus
}  // extern "C"
#endif
