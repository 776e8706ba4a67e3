/* Launch wrappers of the dense kernel family (embeddings, RMSNorm, mat-vec, QKV + RoPE, GEMM);
 * see internal/kernels-matmul.h for kernels, geometry and constraints. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-matmul.h"
#include "internal/launch-common.h"

#define HEAD_DIM 64u
#define EMBEDDINGS_THREADS 128u
#define MATVEC_THREADS (32u * GPTOSS_MATVEC_SIMDGROUPS)
#define MATVEC_ROWS_PER_THREADGROUP (GPTOSS_MATVEC_ROWS * GPTOSS_MATVEC_SIMDGROUPS)

enum gptoss_status gptoss_encode_embeddings(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* tokens, size_t tokens_offset,
    const struct gptoss_buffer* embedding, size_t embedding_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t dim, uint32_t vocab_size)
{
    static const char wrapper[] = "gptoss_encode_embeddings";
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, "function", function, "gptoss_embeddings_bf16"));
    if (num_tokens == 0 || dim == 0 || dim % 8 != 0 || vocab_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u, dim %u (a non-zero multiple of 8), vocab_size %u must be non-zero",
                                wrapper, num_tokens, dim, vocab_size);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "tokens", tokens, tokens_offset, 4,
                                                   (uint64_t) num_tokens * 4));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "embedding", embedding, embedding_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(vocab_size, dim, 2)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "residual", residual, residual_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, dim, 4)));
    const struct gptoss_embeddings_args args = {.num_tokens = num_tokens, .dim = dim, .vocab_size = vocab_size};
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, tokens, tokens_offset), gptoss_launch_buffer_arg(2, embedding, embedding_offset),
        gptoss_launch_buffer_arg(3, residual, residual_offset)};
    /* Any multiple of 32 threads works (the kernel strides by threads_per_threadgroup). */
    uint32_t threads = 0;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_threads(wrapper, function, EMBEDDINGS_THREADS, 32, &threads));
    return gptoss_launch_encode(wrapper, command_buffer, function, num_tokens, 1, 1, threads, &args,
                                sizeof(args), buffers, 3);
}

enum gptoss_status gptoss_encode_rmsnorm(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* output, size_t output_offset,
    uint32_t num_tokens, uint32_t dim, float epsilon)
{
    static const char wrapper[] = "gptoss_encode_rmsnorm";
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, "function", function, "gptoss_rmsnorm"));
    if (num_tokens == 0 || dim == 0 || dim % 4 != 0 || !(epsilon >= 0.0f) || isinf(epsilon)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u must be non-zero, dim %u a non-zero multiple of 4, epsilon %g finite and >= 0",
                                wrapper, num_tokens, dim, (double) epsilon);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "input", input, input_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, dim, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "gain", gain, gain_offset, 8, (uint64_t) dim * 2));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "output", output, output_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, dim, 4)));
    const struct gptoss_rmsnorm_args args = {.num_tokens = num_tokens, .dim = dim, .epsilon = epsilon};
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, input, input_offset), gptoss_launch_buffer_arg(2, gain, gain_offset),
        gptoss_launch_buffer_arg(3, output, output_offset)};
    return gptoss_launch_encode(wrapper, command_buffer, function, num_tokens, 1, 1, 32, &args, sizeof(args), buffers,
                                3);
}

/* Shared checks of a projection: input [T, K] f32, weight [N, K] bf16, bias [N] (optional), output [T, N]. */
static enum gptoss_status check_projection(
    const char* wrapper, const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* weight, size_t weight_offset, const struct gptoss_buffer* bias, size_t bias_offset,
    const struct gptoss_buffer* output, size_t output_offset, uint32_t num_tokens, uint32_t k, uint32_t n)
{
    if (num_tokens == 0 || n == 0 || k == 0 || k % 8 != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u and n %u must be non-zero, k %u a non-zero multiple of 8",
                                wrapper, num_tokens, n, k);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "input", input, input_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, k, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "weight", weight, weight_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(n, k, 2)));
    if (bias != NULL) {
        GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "bias", bias, bias_offset, 2, (uint64_t) n * 2));
    }
    return gptoss_launch_check_tensor(wrapper, "output", output, output_offset, 4,
                                      GPTOSS_LAUNCH_BYTES(num_tokens, n, 4));
}

/* One mat-vec or GEMM dispatch; gain != NULL (mat-vec only) fuses RMSNorm(input) * gain. Arguments checked. */
static enum gptoss_status encode_projection(
    const char* wrapper, struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    int use_gemm,
    const struct gptoss_buffer* input, size_t input_offset, const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* bias, size_t bias_offset, const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* output, size_t output_offset, uint32_t num_tokens, uint32_t k, uint32_t n,
    int add_residual, float epsilon)
{
    const uint32_t flags = (bias != NULL ? GPTOSS_DENSE_FLAG_BIAS : 0) |
                           (add_residual ? GPTOSS_DENSE_FLAG_ADD_RESIDUAL : 0) |
                           (gain != NULL ? GPTOSS_DENSE_FLAG_RMSNORM : 0);
    /* Unused optional inputs are bound to the weight buffer: every declared [[buffer(i)]] must be bound. */
    const struct gptoss_buffer* bias_bound = bias != NULL ? bias : weight;
    const size_t bias_bound_offset = bias != NULL ? bias_offset : weight_offset;
    if (use_gemm) {
        const struct gptoss_gemm_args args = {.num_tokens = num_tokens, .k = k, .n = n, .flags = flags};
        const struct gptoss_kernel_arg buffers[] = {
            gptoss_launch_buffer_arg(1, input, input_offset), gptoss_launch_buffer_arg(2, weight, weight_offset),
            gptoss_launch_buffer_arg(3, bias_bound, bias_bound_offset),
            gptoss_launch_buffer_arg(4, output, output_offset)};
        return gptoss_launch_encode(wrapper, command_buffer, function, gptoss_launch_ceil_div(n, GPTOSS_GEMM_BN),
                                    gptoss_launch_ceil_div(num_tokens, GPTOSS_GEMM_BM), 1, GPTOSS_GEMM_THREADS, &args,
                                    sizeof(args), buffers, 4);
    }
    const struct gptoss_matvec_args args = {.num_tokens = num_tokens, .k = k, .n = n, .flags = flags, .epsilon = epsilon};
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, input, input_offset), gptoss_launch_buffer_arg(2, weight, weight_offset),
        gptoss_launch_buffer_arg(3, bias_bound, bias_bound_offset),
        gptoss_launch_buffer_arg(4, gain != NULL ? gain : weight, gain != NULL ? gain_offset : weight_offset),
        gptoss_launch_buffer_arg(5, output, output_offset)};
    return gptoss_launch_encode(wrapper, command_buffer, function,
                                gptoss_launch_ceil_div(n, MATVEC_ROWS_PER_THREADGROUP),
                                gptoss_launch_ceil_div(num_tokens, GPTOSS_MATVEC_TOKENS), 1, MATVEC_THREADS, &args,
                                sizeof(args), buffers, 5);
}

enum gptoss_status gptoss_encode_dense_projection(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dense_functions* functions,
    const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* bias, size_t bias_offset,
    const struct gptoss_buffer* output, size_t output_offset,
    uint32_t num_tokens, uint32_t k, uint32_t n, int add_residual)
{
    static const char wrapper[] = "gptoss_encode_dense_projection";
    if (functions == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: functions is NULL", wrapper);
    }
    const int use_gemm = num_tokens >= GPTOSS_DENSE_GEMM_MIN_TOKENS;
    const struct gptoss_function* function = use_gemm ? functions->gemm : functions->matvec;
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, use_gemm ? "functions->gemm" : "functions->matvec",
                                                     function, use_gemm ? "gptoss_gemm_bf16" : "gptoss_matvec_bf16"));
    GPTOSS_LAUNCH_CHECK(check_projection(wrapper, input, input_offset, weight, weight_offset, bias, bias_offset, output,
                                         output_offset, num_tokens, k, n));
    return encode_projection(wrapper, command_buffer, function, use_gemm, input, input_offset, weight, weight_offset,
                             bias, bias_offset, NULL, 0, output, output_offset, num_tokens, k, n, add_residual, 0.0f);
}

enum gptoss_status gptoss_encode_unembedding(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dense_functions* functions,
    const struct gptoss_buffer* residual, size_t residual_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* weight, size_t weight_offset,
    const struct gptoss_buffer* x_norm_scratch, size_t x_norm_scratch_offset,
    const struct gptoss_buffer* logits, size_t logits_offset,
    uint32_t num_rows, uint32_t dim, uint32_t vocab_size, float epsilon)
{
    static const char wrapper[] = "gptoss_encode_unembedding";
    if (functions == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: functions is NULL", wrapper);
    }
    if (!(epsilon >= 0.0f) || isinf(epsilon)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: epsilon %g must be finite and >= 0", wrapper,
                                (double) epsilon);
    }
    GPTOSS_LAUNCH_CHECK(check_projection(wrapper, residual, residual_offset, weight, weight_offset, NULL, 0, logits,
                                         logits_offset, num_rows, dim, vocab_size));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "gain", gain, gain_offset, 16, (uint64_t) dim * 2));
    if (num_rows < GPTOSS_DENSE_GEMM_MIN_TOKENS) {
        GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, "functions->matvec", functions->matvec,
                                                         "gptoss_matvec_bf16"));
        return encode_projection(wrapper, command_buffer, functions->matvec, 0, residual, residual_offset, weight,
                                 weight_offset, NULL, 0, gain, gain_offset, logits, logits_offset, num_rows, dim,
                                 vocab_size, 0, epsilon);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, "functions->gemm", functions->gemm, "gptoss_gemm_bf16"));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "x_norm_scratch", x_norm_scratch, x_norm_scratch_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_rows, dim, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_encode_rmsnorm(command_buffer, functions->rmsnorm, residual, residual_offset, gain,
                                              gain_offset, x_norm_scratch, x_norm_scratch_offset, num_rows, dim,
                                              epsilon));
    return encode_projection(wrapper, command_buffer, functions->gemm, 1, x_norm_scratch, x_norm_scratch_offset, weight,
                             weight_offset, NULL, 0, NULL, 0, logits, logits_offset, num_rows, dim, vocab_size, 0,
                             0.0f);
}

/* The YaRN inverse frequency of each pair, in double as the reference model computes it, rounded once. */
static void rope_inv_freq(const struct gptoss_rope_params* rope, float inv_freq[GPTOSS_ROPE_PAIRS]) {
    for (uint32_t i = 0; i < GPTOSS_ROPE_PAIRS; i++) {
        const double extrapolated = pow((double) rope->theta, -2.0 * (double) i / (double) HEAD_DIM);
        const double interpolated = extrapolated * (double) rope->interpolation_scale;
        double ramp = (double) i * (double) rope->yarn_scale + (double) rope->yarn_offset;
        ramp = ramp < 0.0 ? 0.0 : ramp > 1.0 ? 1.0 : ramp;
        inv_freq[i] = (float) (interpolated * ramp + extrapolated * (1.0 - ramp));
    }
}

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
    uint32_t first_position, uint32_t kv_slots, float epsilon, const struct gptoss_rope_params* rope)
{
    static const char wrapper[] = "gptoss_encode_qkv";
    if (functions == NULL || rope == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s is NULL", wrapper,
                                functions == NULL ? "functions" : "rope");
    }
    const int prefill = num_tokens >= GPTOSS_DENSE_GEMM_MIN_TOKENS;
    const struct gptoss_function* main_function = prefill ? functions->rope_kv : functions->qkv_decode;
    const size_t kv_size = gptoss_launch_kv_element_size(main_function,
                                                         prefill ? "gptoss_rope_kv" : "gptoss_qkv_rope_kv");
    if (kv_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: functions->%s is %s, not a %s{16,32} kernel",
                                wrapper, prefill ? "rope_kv" : "qkv_decode",
                                gptoss_launch_function_name(main_function),
                                prefill ? "gptoss_rope_kv" : "gptoss_qkv_rope_kv");
    }
    if (num_tokens == 0 || dim == 0 || dim % 8 != 0 || num_heads == 0 || num_kv_heads == 0 || kv_slots == 0 ||
        !(epsilon >= 0.0f) || isinf(epsilon)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u, dim %u (multiple of 8), num_heads %u, num_kv_heads %u, kv_slots %u "
                                "must be non-zero and epsilon %g finite and >= 0",
                                wrapper, num_tokens, dim, num_heads, num_kv_heads, kv_slots, (double) epsilon);
    }
    if ((uint64_t) first_position + num_tokens > UINT32_MAX) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: positions %u + %u tokens overflow 32 bits",
                                wrapper, first_position, num_tokens);
    }
    if (!(rope->theta > 0.0f) || !isfinite(rope->theta) || !isfinite(rope->interpolation_scale) ||
        !isfinite(rope->yarn_offset) || !isfinite(rope->yarn_scale) || !isfinite(rope->yarn_multiplier)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: rope parameters must be finite with theta > 0",
                                wrapper);
    }
    const uint64_t rows = (uint64_t) (num_heads + 2ull * num_kv_heads) * HEAD_DIM;
    if (rows > UINT32_MAX) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %u + 2 x %u heads is too many", wrapper,
                                num_heads, num_kv_heads);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "residual", residual, residual_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, dim, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "gain", gain, gain_offset, 16, (uint64_t) dim * 2));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "weight", weight, weight_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(rows, dim, 2)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "bias", bias, bias_offset, 4, rows * 2));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "q", q, q_offset, 8,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, num_heads, HEAD_DIM, 4)));
    const uint64_t cache_bytes = GPTOSS_LAUNCH_BYTES(kv_slots, num_kv_heads, HEAD_DIM, kv_size);
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "k_cache", k_cache, k_cache_offset, kv_size, cache_bytes));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "v_cache", v_cache, v_cache_offset, kv_size, cache_bytes));

    struct gptoss_qkv_args args = {
        .num_tokens = num_tokens, .dim = dim, .num_heads = num_heads, .num_kv_heads = num_kv_heads,
        .position = first_position, .kv_slots = kv_slots, .epsilon = epsilon, .yarn_multiplier = rope->yarn_multiplier};
    rope_inv_freq(rope, args.inv_freq);

    if (!prefill) {
        const struct gptoss_kernel_arg buffers[] = {
            gptoss_launch_buffer_arg(1, residual, residual_offset), gptoss_launch_buffer_arg(2, gain, gain_offset),
            gptoss_launch_buffer_arg(3, weight, weight_offset), gptoss_launch_buffer_arg(4, bias, bias_offset),
            gptoss_launch_buffer_arg(5, q, q_offset),
            gptoss_launch_buffer_arg(6, k_cache, k_cache_offset), gptoss_launch_buffer_arg(7, v_cache, v_cache_offset)};
        return gptoss_launch_encode(wrapper, command_buffer, main_function,
                                    gptoss_launch_ceil_div((uint32_t) rows, MATVEC_ROWS_PER_THREADGROUP),
                                    gptoss_launch_ceil_div(num_tokens, GPTOSS_MATVEC_TOKENS), 1, MATVEC_THREADS, &args,
                                    sizeof(args), buffers, 7);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_function(wrapper, "functions->gemm", functions->gemm, "gptoss_gemm_bf16"));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "x_norm_scratch", x_norm_scratch, x_norm_scratch_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, dim, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_tensor(wrapper, "qkv_scratch", qkv_scratch, qkv_scratch_offset, 16,
                                                   GPTOSS_LAUNCH_BYTES(num_tokens, rows, 4)));
    GPTOSS_LAUNCH_CHECK(gptoss_encode_rmsnorm(command_buffer, functions->rmsnorm, residual, residual_offset, gain,
                                              gain_offset, x_norm_scratch, x_norm_scratch_offset, num_tokens, dim,
                                              epsilon));
    GPTOSS_LAUNCH_CHECK(encode_projection(wrapper, command_buffer, functions->gemm, 1, x_norm_scratch,
                                          x_norm_scratch_offset, weight, weight_offset, bias, bias_offset, NULL, 0,
                                          qkv_scratch, qkv_scratch_offset, num_tokens, dim, (uint32_t) rows, 0, 0.0f));
    const struct gptoss_kernel_arg buffers[] = {
        gptoss_launch_buffer_arg(1, qkv_scratch, qkv_scratch_offset), gptoss_launch_buffer_arg(2, q, q_offset),
        gptoss_launch_buffer_arg(3, k_cache, k_cache_offset), gptoss_launch_buffer_arg(4, v_cache, v_cache_offset)};
    return gptoss_launch_encode(wrapper, command_buffer, main_function, num_tokens, num_heads + 2 * num_kv_heads, 1, 32,
                                &args, sizeof(args), buffers, 4);
}
