/* Launch wrappers of the MoE kernels (kernels/moe.metal); see internal/kernels-moe.h. */
#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-moe.h"

#define MOE_DECODE_SIMDGROUPS 8      /* rows (activations / output features) per decode threadgroup */
#define MOE_PREFILL_THREADS 128      /* 4 SIMD groups x 8 rows of a 32-row tile */
#define MOE_PREFILL_TILE_COLUMNS 32  /* activations (mlp1) or output features (mlp2) per threadgroup */
#define MOE_SCATTER_THREADS 1024
#define MOE_GATHER_THREADS 256

static uint64_t align16(uint64_t x) {
    return (x + 15) & ~(uint64_t) 15;
}

enum gptoss_status gptoss_moe_expert_layout(
    uint32_t embedding_dim, uint32_t mlp_dim, struct gptoss_moe_expert_layout* layout_out)
{
    if (layout_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_moe_expert_layout: layout_out is NULL");
    }
    if (embedding_dim == 0 || embedding_dim % 32 != 0 || mlp_dim == 0 || mlp_dim % 32 != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_moe_expert_layout: embedding_dim %u and mlp_dim %u must be positive multiples of 32",
            embedding_dim, mlp_dim);
    }
    const uint64_t D = embedding_dim, I = mlp_dim;
    uint64_t offset = 0;
    layout_out->mlp1_blocks_offset = offset; offset += align16(2 * I * (D / 32) * 16);
    layout_out->mlp1_scales_offset = offset; offset += align16(2 * I * (D / 32));
    layout_out->mlp1_bias_offset = offset;   offset += align16(2 * I * 2);
    layout_out->mlp2_blocks_offset = offset; offset += align16(D * (I / 32) * 16);
    layout_out->mlp2_scales_offset = offset; offset += align16(D * (I / 32));
    layout_out->mlp2_bias_offset = offset;   offset += align16(D * 2);
    layout_out->expert_size = offset;
    return gptoss_status_success;
}

uint32_t gptoss_moe_prefill_max_row_tiles(uint32_t num_tokens, uint32_t num_experts, uint32_t num_active) {
    const uint64_t pairs = (uint64_t) num_tokens * num_active;
    const uint64_t tiles = (pairs + GPTOSS_MOE_PREFILL_TILE_ROWS - 1) / GPTOSS_MOE_PREFILL_TILE_ROWS + num_experts;
    return tiles > UINT32_MAX ? UINT32_MAX : (uint32_t) tiles;
}

static enum gptoss_status check_tensor(const char* kernel, const char* what, const struct gptoss_buffer* buffer,
                                       size_t offset, uint64_t bytes)
{
    if (buffer == NULL || buffer->ptr == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s buffer is NULL", kernel, what);
    }
    if (offset % 16 != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s offset %zu is not a multiple of 16", kernel, what, offset);
    }
    if (offset > buffer->size || bytes > buffer->size - offset) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "%s: %s needs %llu bytes at offset %zu but the buffer holds %zu bytes",
            kernel, what, (unsigned long long) bytes, offset, buffer->size);
    }
    return gptoss_status_success;
}

/* Validates the common shape arguments and fills args (expert layout included). */
static enum gptoss_status fill_moe_args(
    const char* kernel, struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t mlp_dim, uint32_t num_experts, uint32_t num_active,
    float swiglu_limit, struct gptoss_moe_args* args)
{
    if (command_buffer == NULL || function == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s is NULL", kernel,
                                command_buffer == NULL ? "command_buffer" : "function");
    }
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
            "%s: embedding_dim %u and mlp_dim %u must be positive multiples of 32", kernel, embedding_dim, mlp_dim);
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

static enum gptoss_status encode(const struct gptoss_function* function, struct gptoss_command_buffer* command_buffer,
                                 const struct gptoss_moe_args* args, const struct gptoss_kernel_arg* buffers,
                                 size_t num_buffers, uint32_t gx, uint32_t gy, uint32_t gz, uint32_t threads)
{
    struct gptoss_kernel_arg kernel_args[8];
    kernel_args[0] = (struct gptoss_kernel_arg) {
        .kind = gptoss_kernel_arg_bytes, .index = 0, .bytes = args, .size = sizeof(*args)};
    for (size_t i = 0; i < num_buffers; i++) {
        kernel_args[i + 1] = buffers[i];
    }
    const struct gptoss_dispatch dispatch = {
        .function = function,
        .threadgroups = {gx, gy, gz},
        .threads_per_threadgroup = {threads, 1, 1},
        .num_args = num_buffers + 1,
        .args = kernel_args,
    };
    return gptoss_command_buffer_encode(command_buffer, &dispatch);
}

#define BUFFER_ARG(i, b, o) {.kind = gptoss_kernel_arg_buffer, .index = (i), .buffer = (b), .offset = (o)}
#define CHECK(expr) do { const enum gptoss_status s_ = (expr); if (s_ != gptoss_status_success) return s_; } while (0)

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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, embedding_dim, mlp_dim, num_experts, num_active,
                        swiglu_limit, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, k = num_active;
    CHECK(check_tensor(kernel, "x_norm", x_norm, x_norm_offset, T * D * 4));
    CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset, T * k * 4));
    CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset, args.expert_size * num_experts));
    CHECK(check_tensor(kernel, "act", act, act_offset, T * k * I * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, x_norm, x_norm_offset), BUFFER_ARG(2, expert_ids, expert_ids_offset),
        BUFFER_ARG(3, moe_weights, moe_section_offset), BUFFER_ARG(4, act, act_offset),
    };
    return encode(function, command_buffer, &args, buffers, 4,
                  (mlp_dim + MOE_DECODE_SIMDGROUPS - 1) / MOE_DECODE_SIMDGROUPS, num_active, num_tokens,
                  32 * MOE_DECODE_SIMDGROUPS);
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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, embedding_dim, mlp_dim, num_experts, num_active,
                        1.0f, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, k = num_active;
    CHECK(check_tensor(kernel, "act", act, act_offset, T * k * I * 4));
    CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset, T * k * 4));
    CHECK(check_tensor(kernel, "expert_weights", expert_weights, expert_weights_offset, T * k * 4));
    CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset, args.expert_size * num_experts));
    CHECK(check_tensor(kernel, "residual", residual, residual_offset, T * D * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, act, act_offset), BUFFER_ARG(2, expert_ids, expert_ids_offset),
        BUFFER_ARG(3, expert_weights, expert_weights_offset), BUFFER_ARG(4, moe_weights, moe_section_offset),
        BUFFER_ARG(5, residual, residual_offset),
    };
    return encode(function, command_buffer, &args, buffers, 5,
                  (embedding_dim + MOE_DECODE_SIMDGROUPS - 1) / MOE_DECODE_SIMDGROUPS, num_tokens, 1,
                  32 * MOE_DECODE_SIMDGROUPS);
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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, 32, 32, num_experts, num_active, 1.0f, &args));
    const uint64_t T = num_tokens, E = num_experts, k = num_active;
    CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset, T * k * 4));
    CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, T * k * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, expert_ids, expert_ids_offset), BUFFER_ARG(2, plan, plan_offset),
        BUFFER_ARG(3, row_pairs, row_pairs_offset),
    };
    return encode(function, command_buffer, &args, buffers, 3, 1, 1, 1, MOE_SCATTER_THREADS);
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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, embedding_dim, mlp_dim, num_experts, num_active,
                        swiglu_limit, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, E = num_experts, k = num_active;
    CHECK(check_tensor(kernel, "x_norm", x_norm, x_norm_offset, T * D * 4));
    CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, T * k * 4));
    CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset, args.expert_size * num_experts));
    CHECK(check_tensor(kernel, "act", act, act_offset, T * k * I * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, x_norm, x_norm_offset), BUFFER_ARG(2, plan, plan_offset),
        BUFFER_ARG(3, row_pairs, row_pairs_offset), BUFFER_ARG(4, moe_weights, moe_section_offset),
        BUFFER_ARG(5, act, act_offset),
    };
    return encode(function, command_buffer, &args, buffers, 5, mlp_dim / MOE_PREFILL_TILE_COLUMNS, args.max_row_tiles,
                  1, MOE_PREFILL_THREADS);
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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, embedding_dim, mlp_dim, num_experts, num_active,
                        1.0f, &args));
    const uint64_t T = num_tokens, D = embedding_dim, I = mlp_dim, E = num_experts, k = num_active;
    CHECK(check_tensor(kernel, "act", act, act_offset, T * k * I * 4));
    CHECK(check_tensor(kernel, "plan", plan, plan_offset, 2 * (E + 1) * 4));
    CHECK(check_tensor(kernel, "row_pairs", row_pairs, row_pairs_offset, T * k * 4));
    CHECK(check_tensor(kernel, "expert_weights", expert_weights, expert_weights_offset, T * k * 4));
    CHECK(check_tensor(kernel, "moe_weights", moe_weights, moe_section_offset, args.expert_size * num_experts));
    CHECK(check_tensor(kernel, "expert_out", expert_out, expert_out_offset, T * k * D * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, act, act_offset), BUFFER_ARG(2, plan, plan_offset), BUFFER_ARG(3, row_pairs, row_pairs_offset),
        BUFFER_ARG(4, expert_weights, expert_weights_offset), BUFFER_ARG(5, moe_weights, moe_section_offset),
        BUFFER_ARG(6, expert_out, expert_out_offset),
    };
    return encode(function, command_buffer, &args, buffers, 6, embedding_dim / MOE_PREFILL_TILE_COLUMNS,
                  args.max_row_tiles, 1, MOE_PREFILL_THREADS);
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
    CHECK(fill_moe_args(kernel, command_buffer, function, num_tokens, embedding_dim, 32, num_experts, num_active, 1.0f,
                        &args));
    const uint64_t T = num_tokens, D = embedding_dim, k = num_active;
    CHECK(check_tensor(kernel, "expert_out", expert_out, expert_out_offset, T * k * D * 4));
    CHECK(check_tensor(kernel, "expert_ids", expert_ids, expert_ids_offset, T * k * 4));
    CHECK(check_tensor(kernel, "residual", residual, residual_offset, T * D * 4));
    const struct gptoss_kernel_arg buffers[] = {
        BUFFER_ARG(1, expert_out, expert_out_offset), BUFFER_ARG(2, expert_ids, expert_ids_offset),
        BUFFER_ARG(3, residual, residual_offset),
    };
    const uint32_t quads = embedding_dim / 4;
    return encode(function, command_buffer, &args, buffers, 3, (quads + MOE_GATHER_THREADS - 1) / MOE_GATHER_THREADS,
                  num_tokens, 1, MOE_GATHER_THREADS);
}
