/* Launch wrapper of the router kernel (kernels/routing.metal); see internal/kernels-moe.h. */
#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-moe.h"
#include "internal/launch-common.h"

/* Static threadgroup memory of gptoss_router (sums, logits, selected logits) plus the x_norm row must fit 32 KiB. */
#define ROUTER_MAX_ROW_BYTES 30720u

static const char wrapper[] = "gptoss_encode_router";

/* Every router tensor is 16-byte aligned. */
static enum gptoss_status check_tensor(const char* what, const struct gptoss_buffer* buffer, size_t offset,
                                       uint64_t bytes) {
    return gptoss_launch_check_tensor(wrapper, what, buffer, offset, 16, bytes);
}

enum gptoss_status gptoss_encode_router(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* residual, size_t residual_offset,
    const struct gptoss_buffer* mlp_gain, size_t mlp_gain_offset,
    const struct gptoss_buffer* gate_weight, size_t gate_weight_offset,
    const struct gptoss_buffer* gate_bias, size_t gate_bias_offset,
    const struct gptoss_buffer* x_norm, size_t x_norm_offset,
    const struct gptoss_buffer* expert_ids, size_t expert_ids_offset,
    const struct gptoss_buffer* expert_weights, size_t expert_weights_offset,
    uint32_t num_tokens, uint32_t embedding_dim, uint32_t num_experts, uint32_t num_active, float epsilon)
{
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_target(wrapper, command_buffer, function, "gptoss_router"));
    if (num_tokens == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_encode_router: num_tokens is 0");
    }
    if (embedding_dim == 0 || embedding_dim % 32 != 0 || (uint64_t) embedding_dim * 4 > ROUTER_MAX_ROW_BYTES) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_router: embedding_dim %u must be a positive multiple of 32 and at most %u",
            embedding_dim, ROUTER_MAX_ROW_BYTES / 4);
    }
    if (num_experts == 0 || num_experts > GPTOSS_ROUTER_MAX_EXPERTS) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_router: num_experts %u must be in 1..%d", num_experts, GPTOSS_ROUTER_MAX_EXPERTS);
    }
    if (num_active == 0 || num_active > num_experts || num_active > GPTOSS_ROUTER_MAX_ACTIVE) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_encode_router: num_active %u must be in 1..min(num_experts %u, %d)",
            num_active, num_experts, GPTOSS_ROUTER_MAX_ACTIVE);
    }
    if (!(epsilon >= 0.0f) || epsilon > 1.0f) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_encode_router: epsilon %g is not in [0, 1]",
                                (double) epsilon);
    }
    const uint64_t T = num_tokens, D = embedding_dim, E = num_experts, k = num_active;
    enum gptoss_status status;
    if ((status = check_tensor("residual", residual, residual_offset, T * D * 4)) != gptoss_status_success ||
        (status = check_tensor("mlp_gain", mlp_gain, mlp_gain_offset, D * 2)) != gptoss_status_success ||
        (status = check_tensor("gate_weight", gate_weight, gate_weight_offset, E * D * 2)) != gptoss_status_success ||
        (status = check_tensor("gate_bias", gate_bias, gate_bias_offset, E * 2)) != gptoss_status_success ||
        (status = check_tensor("x_norm", x_norm, x_norm_offset, T * D * 4)) != gptoss_status_success ||
        (status = check_tensor("expert_ids", expert_ids, expert_ids_offset, T * k * 4)) != gptoss_status_success ||
        (status = check_tensor("expert_weights", expert_weights, expert_weights_offset,
                               T * k * 4)) != gptoss_status_success) {
        return status;
    }

    const struct gptoss_router_args args = {
        .num_tokens = num_tokens,
        .embedding_dim = embedding_dim,
        .num_experts = num_experts,
        .num_active = num_active,
        .epsilon = epsilon,
    };
    const struct gptoss_kernel_arg bindings[] = {
        gptoss_launch_buffer_arg(1, residual, residual_offset),
        gptoss_launch_buffer_arg(2, mlp_gain, mlp_gain_offset),
        gptoss_launch_buffer_arg(3, gate_weight, gate_weight_offset),
        gptoss_launch_buffer_arg(4, gate_bias, gate_bias_offset),
        gptoss_launch_buffer_arg(5, x_norm, x_norm_offset),
        gptoss_launch_buffer_arg(6, expert_ids, expert_ids_offset),
        gptoss_launch_buffer_arg(7, expert_weights, expert_weights_offset),
        gptoss_launch_threadgroup_memory_arg(0, (size_t) D * 4),
    };
    /* A SIMD group per router row up to 32 SIMD groups (E = 32: one row each; E = 128: four each),
     * fewer when the pipeline allows fewer threads (each SIMD group then takes more rows). */
    uint32_t threads = 0;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(wrapper, function, 32 * (num_experts < 32 ? num_experts : 32), 32,
                                              &threads));
    return gptoss_launch_encode(wrapper, command_buffer, function, num_tokens, 1, 1, threads, &args, sizeof(args),
                                bindings, GPTOSS_LAUNCH_COUNT(bindings));
}
