/* Launch wrappers of the MoE kernels (kernels/moe.metal); see internal/kernels-moe.h. */
#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-moe.h"
#include "internal/launch-common.h"

#define MOE_DECODE_SIMDGROUPS 8      /* rows (activations / output features) per decode threadgroup, at most */
#define MOE_PREFILL_THREADS 128      /* 4 SIMD groups x 8 rows of a 32-row tile */
#define MOE_PREFILL_TILE_COLUMNS 32  /* activations (mlp1) or output features (mlp2) per threadgroup */
#define MOE_SCATTER_THREADS 1024
#define MOE_GATHER_THREADS 256
/* Largest embedding_dim x mlp_dim: an expert takes about 2.1 D I bytes, so 256 experts stay below 2^58. */
#define MOE_MAX_DIM_PRODUCT (UINT64_C(1) << 48)

enum gptoss_status gptoss_moe_expert_layout(
    uint32_t embedding_dim, uint32_t mlp_dim, struct gptoss_moe_expert_layout* layout_out)
{
    if (layout_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_moe_expert_layout: layout_out is NULL");
    }
    if (embedding_dim == 0 || embedding_dim % 32 != 0 || mlp_dim == 0 || mlp_dim % 32 != 0 ||
        (uint64_t) embedding_dim * mlp_dim > MOE_MAX_DIM_PRODUCT) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_moe_expert_layout: embedding_dim %u and mlp_dim %u must be positive multiples of 32 "
            "with a product of at most 2^48", embedding_dim, mlp_dim);
    }
    const uint64_t D = embedding_dim, I = mlp_dim;
    uint64_t offset = 0;
    layout_out->mlp1_blocks_offset = offset; offset += gptoss_launch_align_up(2 * I * (D / 32) * 16, 16);
    layout_out->mlp1_scales_offset = offset; offset += gptoss_launch_align_up(2 * I * (D / 32), 16);
    layout_out->mlp1_bias_offset = offset;   offset += gptoss_launch_align_up(2 * I * 2, 16);
    layout_out->mlp2_blocks_offset = offset; offset += gptoss_launch_align_up(D * (I / 32) * 16, 16);
    layout_out->mlp2_scales_offset = offset; offset += gptoss_launch_align_up(D * (I / 32), 16);
    layout_out->mlp2_bias_offset = offset;   offset += gptoss_launch_align_up(D * 2, 16);
    layout_out->expert_size = offset;
    return gptoss_status_success;
}

uint32_t gptoss_moe_prefill_max_row_tiles(uint32_t num_tokens, uint32_t num_experts, uint32_t num_active) {
    const uint64_t pairs = (uint64_t) num_tokens * num_active;
    const uint64_t tiles = (pairs + GPTOSS_MOE_PREFILL_TILE_ROWS - 1) / GPTOSS_MOE_PREFILL_TILE_ROWS + num_experts;
    return tiles > UINT32_MAX ? UINT32_MAX : (uint32_t) tiles;
}

/* Every MoE tensor is 16-byte aligned (the kernels read 16-byte vectors and MXFP4 blocks). */
static enum gptoss_status check_tensor(const char* kernel, const char* what, const struct gptoss_buffer* buffer,
                                       size_t offset, uint64_t bytes)
{
    return gptoss_launch_check_tensor(kernel, what, buffer, offset, 16, bytes);
}

/* Validates the command buffer, the function (the kernel named expected) and the common shape arguments,
 * and fills args (expert layout included). */
static enum gptoss_status fill_moe_args(
    const char* kernel, struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const char* expected,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit, struct gptoss_moe_args* args)
{
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_target(kernel, command_buffer, function, expected));
    if (num_tokens == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: num_tokens is 0", kernel);
    }
    if (num_experts == 0 || num_experts > GPTOSS_MOE_MAX_EXPERTS) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: num_experts %u must be in 1..%d",
                                kernel, num_experts, GPTOSS_MOE_MAX_EXPERTS);
    }
    if (num_active == 0 || num_active > num_experts) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: num_active %u must be in 1..num_experts (%u)",
                                kernel, num_active, num_experts);
    }
    if (!(swiglu_limit > 0.0f)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: swiglu_limit %g must be positive",
                                kernel, (double) swiglu_limit);
    }
    struct gptoss_moe_expert_layout layout;
    if (gptoss_moe_expert_layout(embedding_dim, mlp_dim, &layout) != gptoss_status_success) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "%s: embedding_dim %u and mlp_dim %u must be positive multiples of 32 with a product of at most 2^48",
            kernel, embedding_dim, mlp_dim);
    }
    *args = (struct gptoss_moe_args) {
        .expert_size = layout.expert_size,
        .mlp1_blocks_offset = layout.mlp1_blocks_offset,
        .mlp1_scales_offset = layout.mlp1_scales_offset,
        .mlp1_bias_offset = layout.mlp1_bias_offset,
        .mlp2_blocks_offset = layout.mlp2_blocks_offset,
        .mlp2_scales_offset = layout.mlp2_scales_offset,
        .mlp2_bias_offset = layout.mlp2_bias_offset,
        .num_tokens = num_tokens,
        .embedding_dim = embedding_dim,
        .mlp_dim = mlp_dim,
        .num_experts = num_experts,
        .num_active = num_active,
        .swiglu_limit = swiglu_limit,
        .max_row_tiles = gptoss_moe_prefill_max_row_tiles(num_tokens, num_experts, num_active),
    };
    return gptoss_status_success;
}

enum gptoss_status gptoss_encode_moe_mlp1_swiglu_decode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* act, size_t act_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit)
{
    static const char kernel[] = "gptoss_encode_moe_mlp1_swiglu_decode";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_mlp1_swiglu_decode", num_tokens,
                                      embedding_dim, mlp_dim, num_experts, num_active, swiglu_limit, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "x_norm", x_norm, x_norm_offset, GPTOSS_LAUNCH_BYTES(T, D, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset,
                                     GPTOSS_LAUNCH_BYTES(args.expert_size, num_experts)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "act", act, act_offset, GPTOSS_LAUNCH_BYTES(T, k, I, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, x_norm, x_norm_offset), gptoss_launch_buffer_arg(2, expert_ids, expert_ids_offset),
        gptoss_launch_buffer_arg(3, moe_weights, moe_section_offset), gptoss_launch_buffer_arg(4, act, act_offset),
    };
    /* A SIMD group per row: fewer per threadgroup when the pipeline allows fewer threads. */
    uint32_t threads = 0;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(kernel, function, 32 * MOE_DECODE_SIMDGROUPS, 32, &threads));
    return gptoss_launch_encode(kernel, command_buffer, function,
                                gptoss_launch_ceil_div(mlp_dim, threads / 32), num_active, num_tokens,
                                threads, &args, sizeof(args), buffers, 4);
}

enum gptoss_status gptoss_encode_moe_mlp2_accumulate_decode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* act, size_t act_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active)
{
    static const char kernel[] = "gptoss_encode_moe_mlp2_accumulate_decode";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_mlp2_accumulate_decode", num_tokens,
                                      embedding_dim, mlp_dim, num_experts, num_active, 1.0f, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "act", act, act_offset, GPTOSS_LAUNCH_BYTES(T, k, I, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_weights", expert_weights, expert_weights_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset,
                                     GPTOSS_LAUNCH_BYTES(args.expert_size, num_experts)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "residual", residual, residual_offset, GPTOSS_LAUNCH_BYTES(T, D, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, act, act_offset), gptoss_launch_buffer_arg(2, expert_ids, expert_ids_offset),
        gptoss_launch_buffer_arg(3, expert_weights, expert_weights_offset),
        gptoss_launch_buffer_arg(4, moe_weights, moe_section_offset),
        gptoss_launch_buffer_arg(5, residual, residual_offset),
    };
    uint32_t threads = 0;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(kernel, function, 32 * MOE_DECODE_SIMDGROUPS, 32, &threads));
    return gptoss_launch_encode(kernel, command_buffer, function,
                                gptoss_launch_ceil_div(embedding_dim, threads / 32), num_tokens, 1,
                                threads, &args, sizeof(args), buffers, 5);
}

enum gptoss_status gptoss_encode_moe_scatter(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    uint32_t num_tokens, uint32_t num_experts, uint32_t num_active)
{
    static const char kernel[] = "gptoss_encode_moe_scatter";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_scatter", num_tokens, 32, 32,
                                      num_experts, num_active, 1.0f, &args));
    const uint64_t T = num_tokens, E = num_experts, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, GPTOSS_LAUNCH_BYTES(T, k, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, expert_ids, expert_ids_offset), gptoss_launch_buffer_arg(2, plan, plan_offset),
        gptoss_launch_buffer_arg(3, row_pairs, row_pairs_offset),
    };
    /* Any multiple of 32 threads works (loops stride by threads_per_threadgroup). */
    uint32_t threads = 0;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(kernel, function, MOE_SCATTER_THREADS, 32, &threads));
    return gptoss_launch_encode(kernel, command_buffer, function, 1, 1, 1, threads, &args, sizeof(args),
                                buffers, 3);
}

enum gptoss_status gptoss_encode_moe_mlp1_swiglu_prefill(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* act, size_t act_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit)
{
    static const char kernel[] = "gptoss_encode_moe_mlp1_swiglu_prefill";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_mlp1_swiglu_prefill", num_tokens,
                                      embedding_dim, mlp_dim, num_experts, num_active, swiglu_limit, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, E = num_experts, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "x_norm", x_norm, x_norm_offset, GPTOSS_LAUNCH_BYTES(T, D, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset,
                                     GPTOSS_LAUNCH_BYTES(args.expert_size, num_experts)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "act", act, act_offset, GPTOSS_LAUNCH_BYTES(T, k, I, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, x_norm, x_norm_offset), gptoss_launch_buffer_arg(2, plan, plan_offset),
        gptoss_launch_buffer_arg(3, row_pairs, row_pairs_offset),
        gptoss_launch_buffer_arg(4, moe_weights, moe_section_offset),
        gptoss_launch_buffer_arg(5, act, act_offset),
    };
    return gptoss_launch_encode(kernel, command_buffer, function, mlp_dim / MOE_PREFILL_TILE_COLUMNS,
                                args.max_row_tiles, 1, MOE_PREFILL_THREADS, &args, sizeof(args), buffers, 5);
}

enum gptoss_status gptoss_encode_moe_mlp2_prefill(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* act, size_t act_offset,
    const struct gptoss_buffer* plan, size_t plan_offset,
    const struct gptoss_buffer* row_pairs, size_t row_pairs_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    const struct gptoss_buffer* moe_weights, size_t moe_section_offset,
    const struct gptoss_buffer* expert_out, size_t expert_out_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active)
{
    static const char kernel[] = "gptoss_encode_moe_mlp2_prefill";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_mlp2_prefill", num_tokens,
                                      embedding_dim, mlp_dim, num_experts, num_active, 1.0f, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, E = num_experts, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "act", act, act_offset, GPTOSS_LAUNCH_BYTES(T, k, I, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_weights", expert_weights, expert_weights_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset,
                                     GPTOSS_LAUNCH_BYTES(args.expert_size, num_experts)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_out", expert_out, expert_out_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, D, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, act, act_offset), gptoss_launch_buffer_arg(2, plan, plan_offset),
        gptoss_launch_buffer_arg(3, row_pairs, row_pairs_offset),
        gptoss_launch_buffer_arg(4, expert_weights, expert_weights_offset),
        gptoss_launch_buffer_arg(5, moe_weights, moe_section_offset),
        gptoss_launch_buffer_arg(6, expert_out, expert_out_offset),
    };
    return gptoss_launch_encode(kernel, command_buffer, function, embedding_dim / MOE_PREFILL_TILE_COLUMNS,
                                args.max_row_tiles, 1, MOE_PREFILL_THREADS, &args, sizeof(args), buffers, 6);
}

enum gptoss_status gptoss_encode_moe_gather(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* expert_out, size_t expert_out_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t num_experts, uint32_t num_active)
{
    static const char kernel[] = "gptoss_encode_moe_gather";
    struct gptoss_moe_args args;
    GPTOSS_LAUNCH_CHECK(fill_moe_args(kernel, command_buffer, function, "gptoss_moe_gather", num_tokens, embedding_dim,
                                      32, num_experts, num_active, 1.0f, &args));
    const uint64_t T = num_tokens, D = embedding_dim, k = num_active;
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_out", expert_out, expert_out_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, D, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset,
                                     GPTOSS_LAUNCH_BYTES(T, k, 4)));
    GPTOSS_LAUNCH_CHECK(check_tensor(kernel, "residual", residual, residual_offset, GPTOSS_LAUNCH_BYTES(T, D, 4)));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, expert_out, expert_out_offset),
        gptoss_launch_buffer_arg(2, expert_ids, expert_ids_offset),
        gptoss_launch_buffer_arg(3, residual, residual_offset),
    };
    const uint32_t quads = embedding_dim / 4;
    uint32_t threads = 0;  /* a thread per float4: any threadgroup size */
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(kernel, function, MOE_GATHER_THREADS, 32, &threads));
    return gptoss_launch_encode(kernel, command_buffer, function, gptoss_launch_ceil_div(quads, threads),
                                num_tokens, 1, threads, &args, sizeof(args), buffers, 3);
}
