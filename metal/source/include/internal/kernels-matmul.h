/*
 * Launch wrappers of the dense kernel family: embeddings (kernels/embeddings.metal), batched RMSNorm
 * (kernels/norm.metal), decode mat-vec, fused decode QKV + RoPE + KV write, prefill GEMM and prefill
 * RoPE + KV write (kernels/matmul.metal). Implemented in launch-matmul.c.
 *
 * Conventions: weights are bf16 row-major [out][in] read in place from the weights buffer (offsets
 * 16-byte aligned, in % 8 == 0); activations f32; every (buffer, offset) pair must hold the bytes the
 * kernel touches, which the wrappers check (gptoss_status_invalid_argument + message otherwise).
 *
 * Kernels (names to resolve with gptoss_function_create):
 *   gptoss_embeddings_bf16   tokens u32 [T], embedding [V, D] -> residual [T, D]. Grid (T) x 128 threads.
 *                            An id >= V gives a zero row (never an out-of-bounds read).
 *   gptoss_rmsnorm           x [T, D], gain [D] -> out [T, D]. Grid (T) x 32 threads. D % 4 == 0.
 *   gptoss_matvec_bf16       x [T, K] (optionally RMSNorm(x)*gain, fused), w [N, K], bias [N] -> out [T, N]
 *                            (= or +=). Grid (ceil(N/32), ceil(T/4)) x 256 threads: a SIMD group owns 4
 *                            rows, a threadgroup 4 tokens, so each weight row is read ceil(T/4) times.
 *   gptoss_qkv_rope_kv16/32  residual [T, D], attn gain, qkv w [(Hq+2Hkv)64, D], bias -> RoPE'd q [T, Hq 64]
 *                            f32; RoPE'd K and V into the block's cache [slots, Hkv, 64] (fp16 / fp32) at
 *                            slot position % slots. Geometry of the mat-vec with N = (Hq+2Hkv)64.
 *   gptoss_gemm_bf16         x [T, K], w [N, K], bias -> out [T, N] (= or +=). Grid (ceil(N/64), ceil(T/32))
 *                            x 128 threads, 20 KiB of threadgroup memory; any T, N; K % 8 == 0.
 *   gptoss_rope_kv16/32      qkv [T, (Hq+2Hkv)64] (GEMM output, bias included) -> q, K/V cache as above.
 *                            Grid (T, Hq+2Hkv) x 32 threads.
 *
 * Decode vs prefill: below GPTOSS_DENSE_GEMM_MIN_TOKENS tokens the mat-vec kernels are used (each
 * weight read ceil(T/4) <= 2 times, RMSNorm fused, QKV in one dispatch); from it on the GEMM (weights
 * read ceil(T/32) times from memory, tiles reused from threadgroup memory). 8 is where the mat-vec
 * starts reading the weights a second time; re-measure on Apple GPUs.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPTOSS_DENSE_GEMM_MIN_TOKENS 8u

/* The dense pipelines a context resolves once at load. qkv_decode and rope_kv must use the same KV
 * element type (both *_kv16 or both *_kv32); unused members may be NULL where a wrapper does not need them. */
struct gptoss_dense_functions {
    const struct gptoss_function* matvec;      /* gptoss_matvec_bf16 */
    const struct gptoss_function* gemm;        /* gptoss_gemm_bf16 */
    const struct gptoss_function* rmsnorm;     /* gptoss_rmsnorm */
    const struct gptoss_function* qkv_decode;  /* gptoss_qkv_rope_kv16 | gptoss_qkv_rope_kv32 */
    const struct gptoss_function* rope_kv;     /* gptoss_rope_kv16 | gptoss_rope_kv32 */
};

/* YaRN RoPE parameters as in the model header. */
struct gptoss_rope_params {
    float theta;
    float interpolation_scale;
    float yarn_offset;
    float yarn_scale;
    float yarn_multiplier;
};

/* residual[t] = embedding[tokens[t]] as f32. One dispatch. */
enum gptoss_status gptoss_encode_embeddings(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* tokens, size_t tokens_offset,
    const struct gptoss_buffer* embedding, size_t embedding_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t dim, uint32_t vocab_size);

/* out[t] = RMSNorm(x[t]) * gain. One dispatch (prefill; decode fuses the norm into the mat-vecs). */
enum gptoss_status gptoss_encode_rmsnorm(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* output, size_t output_offset,
    uint32_t num_tokens, uint32_t dim, float epsilon);

/* output[t, :] (+)= W x[t] + bias (bias may be NULL; add_residual: output += instead of =). Picks the
 * mat-vec (T < GPTOSS_DENSE_GEMM_MIN_TOKENS, needs functions->matvec) or the GEMM (functions->gemm).
 * One dispatch. Used for the attention output projection (add_residual = 1). */
enum gptoss_status gptoss_encode_dense_projection(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dense_functions* functions,
    const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* bias, size_t bias_offset,
    const struct gptoss_buffer* output, size_t output_offset,
    uint32_t num_tokens, uint32_t k, uint32_t n, int add_residual);

/* logits[l] = W_unembed (RMSNorm(residual[l]) * final_gain) for L rows. L < threshold: one fused
 * mat-vec dispatch; else RMSNorm into x_norm_scratch ([L, D] f32) + GEMM (two dispatches). */
enum gptoss_status gptoss_encode_unembedding(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dense_functions* functions,
    const struct gptoss_buffer* residual, size_t residual_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* x_norm_scratch, size_t x_norm_scratch_offset,
    const struct gptoss_buffer* logits, size_t logits_offset,
    uint32_t num_rows, uint32_t dim, uint32_t vocab_size, float epsilon);

/* The attention input half of a block: q = RoPE(Wq RMSNorm(residual) + bq), K/V likewise into the
 * block's cache (slots, position of token 0 = first_position, token t at slot (first_position+t) % slots).
 * T < threshold: one fused dispatch (qkv_decode). Else rmsnorm -> x_norm_scratch [T, D], GEMM ->
 * qkv_scratch [T, (Hq+2Hkv)64] f32, rope_kv: three dispatches. Scratch buffers may be NULL in decode. */
enum gptoss_status gptoss_encode_qkv(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dense_functions* functions,
    const struct gptoss_buffer* residual, size_t residual_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* bias, size_t bias_offset,
    const struct gptoss_buffer* q, size_t q_offset,
    const struct gptoss_buffer* k_cache, size_t k_cache_offset,
    const struct gptoss_buffer* v_cache, size_t v_cache_offset,
    const struct gptoss_buffer* x_norm_scratch, size_t x_norm_scratch_offset,
    const struct gptoss_buffer* qkv_scratch, size_t qkv_scratch_offset,
    uint32_t num_tokens, uint32_t dim, uint32_t num_heads, uint32_t num_kv_heads,
    uint32_t first_position, uint32_t kv_slots, float epsilon, const struct gptoss_rope_params* rope);

#ifdef __cplusplus
}  // extern "C"
#endif
