/*
 * The object behind gptoss_context_t (context.c): the token sequence, the KV cache, the per-chunk
 * activation buffers and the bookkeeping that decides which positions must be (re)computed.
 * Buffer shapes follow docs/inference-design.md ("Buffers of a context").
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
  #include <atomic>
  typedef std::atomic<uint_least64_t> gptoss_context_ref_count_t;
  typedef std::atomic<uintptr_t> gptoss_context_running_t;
#else
  #include <stdatomic.h>
  typedef atomic_uint_least64_t gptoss_context_ref_count_t;
  typedef atomic_uintptr_t gptoss_context_running_t;
#endif

#include <gpt-oss/types.h>

#include "internal/device.h"
#include "internal/sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* max_batch_tokens when the caller passes 0. */
#define GPTOSS_DEFAULT_MAX_BATCH_TOKENS 128
/*
 * Chunks of fewer than GPTOSS_DENSE_GEMM_MIN_TOKENS (kernels-matmul.h) tokens run the decode kernels
 * (mat-vec, per-token MoE); the dense and attention wrappers choose by T themselves, context.c picks
 * the MoE kernels with the same threshold.
 */

struct gptoss_context {
    gptoss_context_ref_count_t ref_count;
    /*
     * The thread-safety guard (docs/thread-safety.md): 0 when no call runs on the context, else the
     * name (const char*) of the public gptoss_context_* function running. Every call except cancel,
     * retain, release and get_max_tokens claims it with a compare-and-swap at entry (a second
     * concurrent call returns invalid_state naming the running one) and, while it runs, holds a
     * reference so that a release from another thread cannot free the context under it.
     */
    gptoss_context_running_t running;
    struct gptoss_model* model;            /* retained */

    size_t max_tokens;                     /* context_length */
    size_t max_batch_tokens;               /* T: rows of every activation buffer */
    size_t num_tokens;                     /* tokens in the sequence */
    /*
     * Positions [0, num_kv_tokens) have valid KV entries in every block for the current tokens.
     * After a reset the old tokens stay in `tokens` beyond num_tokens; appending the same ids keeps
     * num_kv_tokens, a different id lowers it to the divergence point.
     */
    size_t num_kv_tokens;
    /*
     * The sliding-window rings hold valid entries for positions [ring_lo, num_kv_tokens) only: a
     * chunk ending at position e overwrites the slots of positions below e - ring_slots.
     */
    size_t ring_lo;
    size_t ring_slots;                     /* attention_window + max_batch_tokens */

    bool fp32_kv;
    bool output_all_logits;
    size_t num_logits_rows;                /* rows of `logits` valid; 0 = no logits */
    size_t logits_end;                     /* one past the position of the last logits row */
    size_t num_expert_rows;                /* rows of expert_ids valid for the last chunk */
    /*
     * Rows reserved per block in expert_ids / expert_weights: max_batch_tokens rounded up so that
     * each block's slice starts 16-byte aligned (rows * num_active_experts * 4 a multiple of 16),
     * as the routing and MoE kernels require for any legal max_batch_tokens and expert count.
     */
    size_t routing_rows_per_block;

    /* Host time (ns) spent encoding command buffers, in commit + wait, and in sampler finish. */
    uint64_t encode_ns;
    uint64_t device_ns;
    uint64_t finish_ns;

    /* Set by gptoss_context_cancel (any thread), seen by the device through the abort flag. */
    volatile uint32_t abort_flag;

    /* Device buffers (shared storage: host pointers valid). */
    struct gptoss_buffer tokens;           /* u32 [max_tokens] */
    struct gptoss_buffer residual;         /* f32 [T, D] */
    struct gptoss_buffer x_norm;           /* f32 [T, D] (RMSNorm output for the prefill GEMMs and the MoE) */
    struct gptoss_buffer qkv;              /* f32 [T, (Hq + 2 Hkv) 64] (prefill: GEMM output before RoPE) */
    struct gptoss_buffer q;                /* f32 [T, Hq 64] after RoPE */
    struct gptoss_buffer attn;             /* f32 [T, Hq 64] */
    struct gptoss_buffer attn_partials;    /* decode attention split partials (size from kernels-attention.h) */
    struct gptoss_buffer expert_ids;       /* u32 [blocks, routing_rows_per_block, k] */
    struct gptoss_buffer expert_weights;   /* f32 [blocks, routing_rows_per_block, k] */
    struct gptoss_buffer act;              /* f32 [T, k, I] */
    struct gptoss_buffer moe_plan;         /* u32 [2 (E + 1)] */
    struct gptoss_buffer moe_row_pairs;    /* u32 [T k] */
    struct gptoss_buffer expert_out;       /* f32 [T, k, D] */
    struct gptoss_buffer logits;           /* f32 [T or 1, V] */
    struct gptoss_buffer kv_cache;         /* per block: K then V, [slots, Hkv, 64] fp16 or fp32 */
    size_t* kv_block_offset;               /* byte offset of block n's K in kv_cache; V follows */
    size_t* kv_block_slots;                /* slots of block n */
    struct gptoss_sampling_scratch sampling_scratch;
    bool sampling_scratch_created;
};

#ifdef __cplusplus
}  // extern "C"
#endif
