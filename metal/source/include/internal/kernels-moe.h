/*
 * Launch wrappers of the routing and MoE kernels (kernels/routing.metal, kernels/moe.metal).
 *
 * Every wrapper validates its arguments (gptoss_status_invalid_argument with a message naming the
 * argument), fills the argument struct of internal/kernel-args.h, computes the grid and encodes one
 * dispatch. A tensor is (buffer, byte offset); the MoE weights argument is the model's weights buffer
 * with the byte offset of the block's MoE section (16384-aligned in model.bin): experts are reached as
 * section + expert · expert_size + part offset, computed by gptoss_moe_expert_layout.
 *
 * Shapes: T tokens, D = embedding_dim, I = mlp_dim (both multiples of 32), E experts, k active.
 *
 * Decode (per block, 3 dispatches):
 *   gptoss_router                      residual, mlp_gain, gate weight/bias -> x_norm, expert_ids, expert_weights
 *   gptoss_moe_mlp1_swiglu_decode      x_norm, expert_ids, k experts' mlp1 -> act
 *   gptoss_moe_mlp2_accumulate_decode  act, expert_ids/weights, k experts' mlp2 -> residual (+=)
 * Prefill (per block, 5 dispatches):
 *   gptoss_router, gptoss_moe_scatter (histogram, prefix sums, grouping), gptoss_moe_mlp1_swiglu_prefill,
 *   gptoss_moe_mlp2_prefill (-> expert_out [T, k, D] scratch), gptoss_moe_gather (-> residual +=).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#include "device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPTOSS_ROUTER_MAX_EXPERTS 256
#define GPTOSS_ROUTER_MAX_ACTIVE 8
#define GPTOSS_MOE_MAX_EXPERTS 256
/* Prefill row tiles hold 32 (token, slot) rows. */
#define GPTOSS_MOE_PREFILL_TILE_ROWS 32

/* Byte offsets of the parts of one expert inside a MoE section (each part padded to 16 bytes). */
struct gptoss_moe_expert_layout {
    uint64_t mlp1_blocks_offset;   /* [2I, D/32, 16] u8 */
    uint64_t mlp1_scales_offset;   /* [2I, D/32] u8 */
    uint64_t mlp1_bias_offset;     /* [2I] bf16 */
    uint64_t mlp2_blocks_offset;   /* [D, I/32, 16] u8 */
    uint64_t mlp2_scales_offset;   /* [D, I/32] u8 */
    uint64_t mlp2_bias_offset;     /* [D] bf16 */
    uint64_t expert_size;          /* bytes of one expert (13,236,480 for D = I = 2880) */
};

/* model_bin.compute_layout's arithmetic. invalid_argument unless D and I are positive multiples of 32
 * with D x I <= 2^48 (so that expert_size x 256 experts cannot overflow 64 bits). */
enum gptoss_status gptoss_moe_expert_layout(
    uint32_t embedding_dim, uint32_t mlp_dim, struct gptoss_moe_expert_layout* layout_out);

/*
 * Kernel "gptoss_router" (routing.metal): for each token t,
 *   x_norm[t] = residual[t] / sqrt(mean(residual[t]^2) + epsilon) * mlp_gain       (f32 [T, D])
 *   logits = gate_weight [E, D] bf16 · x_norm[t] + gate_bias [E] bf16
 *   expert_ids[t] = the k largest logits, descending, ties to the lower index        (u32 [T, k])
 *   expert_weights[t] = softmax of those k logits                                     (f32 [T, k])
 * Grid: T threadgroups of 32 · min(E, 32) threads; threadgroup memory 4 D bytes.
 * Constraints: T >= 1, D a multiple of 32 with 4 D <= 28672, 1 <= k <= min(E, 8), E <= 256.
 */
enum gptoss_status gptoss_encode_router(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* residual, size_t residual_offset,
    const struct gptoss_buffer* mlp_gain, size_t mlp_gain_offset,
    const struct gptoss_buffer* gate_weight, size_t gate_weight_offset,
    const struct gptoss_buffer* gate_bias, size_t gate_bias_offset,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t num_experts, uint32_t num_active, float epsilon);

/*
 * Kernel "gptoss_moe_mlp1_swiglu_decode": act[t, s, j] = SwiGLU(h[2j], h[2j+1]) with
 * h = mlp1[e] · x_norm[t] + mlp1_bias[e], e = expert_ids[t, s] (MXFP4 dequantised in registers);
 * SwiGLU(g, l) = min(g, L) · sigmoid(1.702 min(g, L)) · (clamp(l, -L, L) + 1), L = swiglu_limit.
 * Grid: (ceil(I / 8), k, T) threadgroups of 256 threads (a SIMD group per activation).
 * Reads each routed expert's mlp1 once per token: 2I (D/32) 17 + 4I bytes.
 */
enum gptoss_status gptoss_encode_moe_mlp1_swiglu_decode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* act, size_t act_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit);

/*
 * Kernel "gptoss_moe_mlp2_accumulate_decode":
 *   residual[t, d] += sum_s expert_weights[t, s] · (mlp2[e_s][d] · act[t, s] + mlp2_bias[e_s][d]).
 * Grid: (ceil(D / 8), T) threadgroups of 256 threads (a SIMD group per output feature, all k slots).
 * Reads each routed expert's mlp2 once per token: D (I/32) 17 + 2D bytes.
 */
enum gptoss_status gptoss_encode_moe_mlp2_accumulate_decode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* act, size_t act_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active);

/*
 * Kernel "gptoss_moe_scatter": groups the T·k (token, slot) pairs p = t·k + s by expert.
 *   plan (u32 [2 (E + 1)]): expert_start[E + 1] (row prefix sums), tile_start[E + 1] (32-row tiles)
 *   row_pairs (u32 [T k]): pairs of expert e at row_pairs[expert_start[e] .. expert_start[e + 1])
 * Grid: 1 threadgroup of 1024 threads. Constraints: E <= 256.
 */
enum gptoss_status gptoss_encode_moe_scatter(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    uint32_t num_tokens, uint32_t num_experts, uint32_t num_active);

/* Row tiles the prefill GEMMs must cover: ceil(T k / 32) + E bounds the sum over experts of ceil(rows_e / 32). */
uint32_t gptoss_moe_prefill_max_row_tiles(uint32_t num_tokens, uint32_t num_experts, uint32_t num_active);

/*
 * Kernel "gptoss_moe_mlp1_swiglu_prefill": act as in the decode kernel, computed as grouped GEMMs over
 * each expert's rows (32 x 64-row tiles, MXFP4 dequantised into threadgroup memory, simdgroup_matrix).
 * Grid: (I / 32, max_row_tiles) threadgroups of 128 threads; threadgroups past the last tile exit.
 */
enum gptoss_status gptoss_encode_moe_mlp1_swiglu_prefill(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* act, size_t act_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit);

/*
 * Kernel "gptoss_moe_mlp2_prefill": expert_out[p, d] = expert_weights[p] · (mlp2[e][d] · act[p] + bias[e][d])
 * for every routed pair p (f32 scratch [T, k, D]). Grid: (D / 32, max_row_tiles) threadgroups of 128.
 */
enum gptoss_status gptoss_encode_moe_mlp2_prefill(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* act, size_t act_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* expert_out, size_t expert_out_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active);

/*
 * Kernel "gptoss_moe_gather": residual[t] += sum_s expert_out[t, s] (slot order; slots whose expert id
 * is invalid are skipped). Grid: (ceil(D / 4 / 256), T) threadgroups of 256 threads.
 */
enum gptoss_status gptoss_encode_moe_gather(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* expert_out, size_t expert_out_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t num_experts, uint32_t num_active);

#ifdef __cplusplus
}  // extern "C"
#endif
