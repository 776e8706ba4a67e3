/* Launch wrappers of the dense kernel family (embeddings, RMSNorm, mat-vec, QKV + RoPE, GEMM);
 * see internal/kernels-matmul.h for kernels, geometry and constraints. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/kernels-matmul.h"

#define HEAD_DIM 64u
#define EMBEDDINGS_THREADS 128u
#define MATVEC_THREADS (32u * GPTOSS_MATVEC_SIMDGROUPS)
#define MATVEC_ROWS_PER_THREADGROUP (GPTOSS_MATVEC_ROWS * GPTOSS_MATVEC_SIMDGROUPS)

static uint32_t ceil_div(uint32_t a, uint32_t b) { return a / b + (a % b != 0); }

/* buffer non-NULL, offset aligned, [offset, offset + bytes) inside the buffer. */
static enum gptoss_status check_tensor(
    const char* wrapper, const char* what, const struct gptoss_buffer* buffer, size_t offset, size_t alignment,
    uint64_t bytes)
{
    if (buffer == NULL || buffer->ptr == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s buffer is NULL", wrapper, what);
    }
    if (offset % alignment != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s offset %zu is not a multiple of %zu",
                                wrapper, what, offset, alignment);
    }
    if (offset > buffer->size || bytes > buffer->size - offset) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: %s needs %llu bytes at offset %zu but the buffer holds %zu bytes", wrapper, what,
                                (unsigned long long) bytes, offset, buffer->size);
    }
    return gptoss_status_success;
}

/* The function is the kernel `expected` (so a wrong pipeline can never be dispatched with our args). */
static enum gptoss_status check_function(
    const char* wrapper, const char* what, const struct gptoss_function* function, const char* expected)
{
    const char* name = function == NULL ? NULL : gptoss_function_get_name(function);
    if (name == NULL || strcmp(name, expected) != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s is %s, expected kernel %s", wrapper, what,
                                name == NULL ? "NULL" : name, expected);
    }
    return gptoss_status_success;
}

/* KV element size of a `<prefix>16` / `<prefix>32` kernel, 0 otherwise. */
static size_t kv_element_size(const struct gptoss_function* function, const char* prefix) {
    const char* name = function == NULL ? NULL : gptoss_function_get_name(function);
    const size_t n = strlen(prefix);
    if (name == NULL || strncmp(name, prefix, n) != 0) {
        return 0;
    }
    return strcmp(name + n, "16") == 0 ? 2 : strcmp(name + n, "32") == 0 ? 4 : 0;
}

static struct gptoss_kernel_arg buffer_arg(uint32_t index, const struct gptoss_buffer* buffer, size_t offset) {
    return (struct gptoss_kernel_arg) {.kind = gptoss_kernel_arg_buffer, .index = index, .buffer = buffer, .offset = offset};
}

/* Encodes one dispatch: args at [[buffer(0)]] (setBytes), then buffers at 1..num_buffers. */
static enum gptoss_status encode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function, uint32_t gx, uint32_t gy,
    uint32_t threads, const void* args, size_t args_size, const struct gptoss_kernel_arg* buffers, size_t num_buffers)
{
    struct gptoss_kernel_arg bound[9];
    bound[0] = (struct gptoss_kernel_arg) {.kind = gptoss_kernel_arg_bytes, .index = 0, .bytes = args, .size = args_size};
    for (size_t i = 0; i < num_buffers; i++) {
        bound[i + 1] = buffers[i];
    }
    const struct gptoss_dispatch dispatch = {
        .function = function,
        .threadgroups = {gx, gy, 1},
        .threads_per_threadgroup = {threads, 1, 1},
        .num_args = num_buffers + 1,
        .args = bound,
    };
    return gptoss_command_buffer_encode(command_buffer, &dispatch);
}

#define CHECK(expr)                                   \
    do {                                              \
        const enum gptoss_status status_ = (expr);    \
        if (status_ != gptoss_status_success) {       \
            return status_;                           \
        }                                             \
    } while (0)

enum gptoss_status gptoss_encode_embeddings(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* tokens, size_t tokens_offset,
    const struct gptoss_buffer* embedding, size_t embedding_offset,
    const struct gptoss_buffer* residual, size_t residual_offset,
    uint32_t num_tokens, uint32_t dim, uint32_t vocab_size)
{
    static const char wrapper[] = "gptoss_encode_embeddings";
    CHECK(check_function(wrapper, "function", function, "gptoss_embeddings_bf16"));
    if (num_tokens == 0 || dim == 0 || dim % 8 != 0 || vocab_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u, dim %u (a non-zero multiple of 8), vocab_size %u must be non-zero",
                                wrapper, num_tokens, dim, vocab_size);
    }
    CHECK(check_tensor(wrapper, "tokens", tokens, tokens_offset, 4, (uint64_t) num_tokens * 4));
    CHECK(check_tensor(wrapper, "embedding", embedding, embedding_offset, 16, (uint64_t) vocab_size * dim * 2));
    CHECK(check_tensor(wrapper, "residual", residual, residual_offset, 16, (uint64_t) num_tokens * dim * 4));
    const struct gptoss_embeddings_args args = {.num_tokens = num_tokens, .dim = dim, .vocab_size = vocab_size};
    const struct gptoss_kernel_arg buffers[] = {
        buffer_arg(1, tokens, tokens_offset), buffer_arg(2, embedding, embedding_offset),
        buffer_arg(3, residual, residual_offset)};
    return encode(command_buffer, function, num_tokens, 1, EMBEDDINGS_THREADS, &args, sizeof(args), buffers, 3);
}

enum gptoss_status gptoss_encode_rmsnorm(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const struct gptoss_buffer* input, size_t input_offset,
    const struct gptoss_buffer* gain, size_t gain_offset,
    const struct gptoss_buffer* output, size_t output_offset,
    uint32_t num_tokens, uint32_t dim, float epsilon)
{
    static const char wrapper[] = "gptoss_encode_rmsnorm";
    CHECK(check_function(wrapper, "function", function, "gptoss_rmsnorm"));
    if (num_tokens == 0 || dim == 0 || dim % 4 != 0 || !(epsilon >= 0.0f) || isinf(epsilon)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: num_tokens %u must be non-zero, dim %u a non-zero multiple of 4, epsilon %g finite and >= 0",
                                wrapper, num_tokens, dim, (double) epsilon);
    }
    CHECK(check_tensor(wrapper, "input", input, input_offset, 16, (uint64_t) num_tokens * dim * 4));
    CHECK(check_tensor(wrapper, "gain", gain, gain_offset, 8, (uint64_t) dim * 2));
    CHECK(check_tensor(wrapper, "output", output, output_offset, 16, (uint64_t) num_tokens * dim * 4));
    const struct gptoss_rmsnorm_args args = {.num_tokens = num_tokens, .dim = dim, .epsilon = epsilon};
    const struct gptoss_kernel_arg buffers[] = {
        buffer_arg(1, input, input_offset), buffer_arg(2, gain, gain_offset), buffer_arg(3, output, output_offset)};
    return encode(command_buffer, function, num_tokens, 1, 32, &args, sizeof(args), buffers, 3);
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
    CHECK(check_tensor(wrapper, "input", input, input_offset, 16, (uint64_t) num_tokens * k * 4));
    CHECK(check_tensor(wrapper, "weight", weight, weight_offset, 16, (uint64_t) n * k * 2));
    if (bias != NULL) {
        CHECK(check_tensor(wrapper, "bias", bias, bias_offset, 2, (uint64_t) n * 2));
    }
    return check_tensor(wrapper, "output", output, output_offset, 4, (uint64_t) num_tokens * n * 4);
}

/* One mat-vec or GEMM dispatch; gain != NULL (mat-vec only) fuses RMSNorm(input) * gain. Arguments checked. */
static enum gptoss_status encode_projection(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function, int use_gemm,
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
            buffer_arg(1, input, input_offset), buffer_arg(2, weight, weight_offset),
            buffer_arg(3, bias_bound, bias_bound_offset), buffer_arg(4, output, output_offset)};
        return encode(command_buffer, function, ceil_div(n, GPTOSS_GEMM_BN), ceil_div(num_tokens, GPTOSS_GEMM_BM),
                      GPTOSS_GEMM_THREADS, &args, sizeof(args), buffers, 4);
    }
    const struct gptoss_matvec_args args = {.num_tokens = num_tokens, .k = k, .n = n, .flags = flags, .epsilon = epsilon};
    const struct gptoss_kernel_arg buffers[] = {
        buffer_arg(1, input, input_offset), buffer_arg(2, weight, weight_offset),
        buffer_arg(3, bias_bound, bias_bound_offset),
        buffer_arg(4, gain != NULL ? gain : weight, gain != NULL ? gain_offset : weight_offset),
        buffer_arg(5, output, output_offset)};
    return encode(command_buffer, function, ceil_div(n, MATVEC_ROWS_PER_THREADGROUP),
                  ceil_div(num_tokens, GPTOSS_MATVEC_TOKENS), MATVEC_THREADS, &args, sizeof(args), buffers, 5);
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
    CHECK(check_function(wrapper, use_gemm ? "functions->gemm" : "functions->matvec", function,
                         use_gemm ? "gptoss_gemm_bf16" : "gptoss_matvec_bf16"));
    CHECK(check_projection(wrapper, input, input_offset, weight, weight_offset, bias, bias_offset, output,
                           output_offset, num_tokens, k, n));
    return encode_projection(command_buffer, function, use_gemm, input, input_offset, weight, weight_offset, bias,
                             bias_offset, NULL, 0, output, output_offset, num_tokens, k, n, add_residual, 0.0f);
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
    CHECK(check_projection(wrapper, residual, residual_offset, weight, weight_offset, NULL, 0, logits, logits_offset,
                           num_rows, dim, vocab_size));
    CHECK(check_tensor(wrapper, "gain", gain, gain_offset, 16, (uint64_t) dim * 2));
    if (num_rows < GPTOSS_DENSE_GEMM_MIN_TOKENS) {
        CHECK(check_function(wrapper, "functions->matvec", functions->matvec, "gptoss_matvec_bf16"));
        return encode_projection(command_buffer, functions->matvec, 0, residual, residual_offset, weight,
                                 weight_offset, NULL, 0, gain, gain_offset, logits, logits_offset, num_rows, dim,
                                 vocab_size, 0, epsilon);
    }
    CHECK(check_function(wrapper, "functions->gemm", functions->gemm, "gptoss_gemm_bf16"));
    CHECK(check_tensor(wrapper, "x_norm_scratch", x_norm_scratch, x_norm_scratch_offset, 16,
                       (uint64_t) num_rows * dim * 4));
    CHECK(gptoss_encode_rmsnorm(command_buffer, functions->rmsnorm, residual, residual_offset, gain, gain_offset,
                                x_norm_scratch, x_norm_scratch_offset, num_rows, dim, epsilon));
    return encode_projection(command_buffer, functions->gemm, 1, x_norm_scratch, x_norm_scratch_offset, weight,
                             weight_offset, NULL, 0, NULL, 0, logits, logits_offset, num_rows, dim, vocab_size, 0, 0.0f);
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
    const size_t kv_size = kv_element_size(main_function, prefill ? "gptoss_rope_kv" : "gptoss_qkv_rope_kv");
    if (kv_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: functions->%s is %s, not a %s{16,32} kernel",
                                wrapper, prefill ? "rope_kv" : "qkv_decode",
                                main_function == NULL ? "NULL" : gptoss_function_get_name(main_function),
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
    CHECK(check_tensor(wrapper, "residual", residual, residual_offset, 16, (uint64_t) num_tokens * dim * 4));
    CHECK(check_tensor(wrapper, "gain", gain, gain_offset, 16, (uint64_t) dim * 2));
    CHECK(check_tensor(wrapper, "weight", weight, weight_offset, 16, rows * dim * 2));
    CHECK(check_tensor(wrapper, "bias", bias, bias_offset, 4, rows * 2));
    CHECK(check_tensor(wrapper, "q", q, q_offset, 8, (uint64_t) num_tokens * num_heads * HEAD_DIM * 4));
    const uint64_t cache_bytes = (uint64_t) kv_slots * num_kv_heads * HEAD_DIM * kv_size;
    CHECK(check_tensor(wrapper, "k_cache", k_cache, k_cache_offset, kv_size, cache_bytes));
    CHECK(check_tensor(wrapper, "v_cache", v_cache, v_cache_offset, kv_size, cache_bytes));

    struct gptoss_qkv_args args = {
        .num_tokens = num_tokens, .dim = dim, .num_heads = num_heads, .num_kv_heads = num_kv_heads,
        .position = first_position, .kv_slots = kv_slots, .epsilon = epsilon, .yarn_multiplier = rope->yarn_multiplier};
    rope_inv_freq(rope, args.inv_freq);

    if (!prefill) {
        const struct gptoss_kernel_arg buffers[] = {
            buffer_arg(1, residual, residual_offset), buffer_arg(2, gain, gain_offset),
            buffer_arg(3, weight, weight_offset), buffer_arg(4, bias, bias_offset), buffer_arg(5, q, q_offset),
            buffer_arg(6, k_cache, k_cache_offset), buffer_arg(7, v_cache, v_cache_offset)};
        return encode(command_buffer, main_function, ceil_div((uint32_t) rows, MATVEC_ROWS_PER_THREADGROUP),
                      ceil_div(num_tokens, GPTOSS_MATVEC_TOKENS), MATVEC_THREADS, &args, sizeof(args), buffers, 7);
    }
    CHECK(check_function(wrapper, "functions->gemm", functions->gemm, "gptoss_gemm_bf16"));
    CHECK(check_tensor(wrapper, "x_norm_scratch", x_norm_scratch, x_norm_scratch_offset, 16,
                       (uint64_t) num_tokens * dim * 4));
    CHECK(check_tensor(wrapper, "qkv_scratch", qkv_scratch, qkv_scratch_offset, 16, (uint64_t) num_tokens * rows * 4));
    CHECK(gptoss_encode_rmsnorm(command_buffer, functions->rmsnorm, residual, residual_offset, gain, gain_offset,
                                x_norm_scratch, x_norm_scratch_offset, num_tokens, dim, epsilon));
    CHECK(encode_projection(command_buffer, functions->gemm, 1, x_norm_scratch, x_norm_scratch_offset, weight,
                            weight_offset, bias, bias_offset, NULL, 0, qkv_scratch, qkv_scratch_offset, num_tokens, dim,
                            (uint32_t) rows, 0, 0.0f));
    const struct gptoss_kernel_arg buffers[] = {
        buffer_arg(1, qkv_scratch, qkv_scratch_offset), buffer_arg(2, q, q_offset),
        buffer_arg(3, k_cache, k_cache_offset), buffer_arg(4, v_cache, v_cache_offset)};
    return encode(command_buffer, main_function, num_tokens, num_heads + 2 * num_kv_heads, 32, &args, sizeof(args),
                  buffers, 4);
}
