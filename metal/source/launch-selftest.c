/*
 * Self-test of the kernel launch wrappers' misuse checks (see gptoss_launch_selftest in
 * internal/launch-common.h). Every public wrapper is called on a CPU device with bad arguments —
 * NULL buffers and functions, misaligned offsets, ranges past a buffer's end, the wrong kernel,
 * zero or oversized dimensions, head-ratio and ring-size violations — expecting invalid_argument and
 * a fragment of the message, and with good arguments that must encode; the cheap good calls also run
 * and their outputs are compared with values computed here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <gpt-oss/functions.h>
#include <gpt-oss/types.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernels-attention.h"
#include "internal/kernels-matmul.h"
#include "internal/kernels-moe.h"
#include "internal/launch-common.h"
#include "internal/sampling.h"

#define MAX_BUFFERS 64
#define MAX_FUNCTIONS 32

struct selftest {
    char* report;
    size_t report_size;
    size_t report_used;
    int checks;
    int failures;
    struct gptoss_device* device;
    struct gptoss_command_buffer* rejects;  /* bad calls encode into this one; it is never committed */
    struct gptoss_buffer buffers[MAX_BUFFERS];
    size_t num_buffers;
    struct gptoss_function* functions[MAX_FUNCTIONS];
    size_t num_functions;
};

static void say(struct selftest* t, const char* format, ...) GPTOSS_PRINTF_FORMAT(2, 3);
static void say(struct selftest* t, const char* format, ...) {
    if (t->report == NULL || t->report_used + 1 >= t->report_size) {
        return;
    }
    va_list list;
    va_start(list, format);
    const int n = vsnprintf(t->report + t->report_used, t->report_size - t->report_used, format, list);
    va_end(list);
    if (n > 0) {
        const size_t room = t->report_size - t->report_used - 1;
        t->report_used += (size_t) n < room ? (size_t) n : room;
    }
}

/* One expectation on a call already made: its status, and for a failure a fragment of its message. */
static void expect(struct selftest* t, const char* label, enum gptoss_status status, enum gptoss_status expected,
                   const char* fragment)
{
    const char* message = gptoss_get_last_error_message();
    t->checks++;
    bool ok = status == expected;
    if (ok && fragment != NULL) {
        ok = message != NULL && strstr(message, fragment) != NULL;
    }
    if (!ok) {
        t->failures++;
    }
    say(t, "%s %s: status %s%s%s", ok ? "ok  " : "FAIL", label, gptoss_status_to_string(status),
        status == expected ? "" : " (expected ", status == expected ? "" : gptoss_status_to_string(expected));
    if (status != expected) {
        say(t, ")");
    }
    if (status != gptoss_status_success || fragment != NULL) {
        say(t, "; message \"%s\"", message == NULL ? "" : message);
    }
    if (!ok && fragment != NULL) {
        say(t, "; expected fragment \"%s\"", fragment);
    }
    say(t, "\n");
}

/* A bad call: invalid_argument whose message contains fragment. */
#define EXPECT_REJECT(t, label, fragment, call)                                                    \
    do {                                                                                           \
        gptoss_clear_error();                                                                      \
        expect((t), (label), (call), gptoss_status_invalid_argument, (fragment));                  \
    } while (0)

/* A good call: success. */
#define EXPECT_ACCEPT(t, label, call)                                                              \
    do {                                                                                           \
        gptoss_clear_error();                                                                      \
        expect((t), (label), (call), gptoss_status_success, NULL);                                 \
    } while (0)

static void expect_true(struct selftest* t, const char* label, bool condition, const char* detail) {
    t->checks++;
    if (!condition) {
        t->failures++;
    }
    say(t, "%s %s%s%s\n", condition ? "ok  " : "FAIL", label, condition ? "" : ": ", condition ? "" : detail);
}

/* A zero-filled buffer of size bytes owned by the test (released at the end); NULL on failure. */
static struct gptoss_buffer* new_buffer(struct selftest* t, size_t size) {
    if (t->num_buffers == MAX_BUFFERS ||
        gptoss_buffer_create(t->device, size, NULL, &t->buffers[t->num_buffers]) != gptoss_status_success) {
        return NULL;
    }
    return &t->buffers[t->num_buffers++];
}

static struct gptoss_function* new_function(struct selftest* t, const char* name) {
    if (t->num_functions == MAX_FUNCTIONS ||
        gptoss_function_create(t->device, name, &t->functions[t->num_functions]) != gptoss_status_success) {
        return NULL;
    }
    return t->functions[t->num_functions++];
}

/* Commits command_buffer (when encoding succeeded), waits and releases it; the status of the run. */
static enum gptoss_status run(struct gptoss_command_buffer* command_buffer, enum gptoss_status encoded) {
    enum gptoss_status status = encoded;
    if (status == gptoss_status_success) {
        status = gptoss_command_buffer_commit(command_buffer);
    }
    if (status == gptoss_status_success) {
        status = gptoss_command_buffer_wait(command_buffer);
    }
    gptoss_command_buffer_release(command_buffer);
    return status;
}

static struct gptoss_command_buffer* new_command_buffer(struct selftest* t) {
    struct gptoss_command_buffer* command_buffer = NULL;
    gptoss_command_buffer_create(t->device, &command_buffer);
    return command_buffer;
}

/* bf16 / fp16 bit patterns of values exactly representable in them (small dyadic numbers). */
static uint16_t bf16(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    return (uint16_t) (bits >> 16);
}

static uint16_t fp16(float x) {
    if (x == 0.0f) {
        return 0;
    }
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    const uint32_t sign = (bits >> 16) & 0x8000u, exponent = (bits >> 23) & 0xFFu, mantissa = bits & 0x7FFFFFu;
    return (uint16_t) (sign | ((exponent - 127 + 15) << 10) | (mantissa >> 13));
}

static bool all_close(const float* actual, const float* expected, size_t n, float tolerance, char* detail,
                      size_t size) {
    for (size_t i = 0; i < n; i++) {
        if (!(fabsf(actual[i] - expected[i]) <= tolerance)) {
            snprintf(detail, size, "element %zu is %g, expected %g (tolerance %g)", i, (double) actual[i],
                     (double) expected[i], (double) tolerance);
            return false;
        }
    }
    return true;
}

/* ---- dense family (launch-matmul.c) ---- */

enum { DENSE_T = 1, DENSE_PREFILL_T = GPTOSS_DENSE_GEMM_MIN_TOKENS, DENSE_D = 32, DENSE_N = 8, DENSE_V = 16 };

static void test_embeddings(struct selftest* t, struct gptoss_function* embeddings, struct gptoss_function* rmsnorm) {
    struct gptoss_buffer* tokens = new_buffer(t, 2 * 4);
    struct gptoss_buffer* table = new_buffer(t, DENSE_V * DENSE_D * 2);
    struct gptoss_buffer* residual = new_buffer(t, 2 * DENSE_D * 4);
    struct gptoss_buffer* small = new_buffer(t, 64);
    if (tokens == NULL || table == NULL || residual == NULL || small == NULL) {
        expect_true(t, "embeddings: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    EXPECT_REJECT(t, "embeddings: NULL function", "function is NULL, expected kernel gptoss_embeddings_bf16",
        gptoss_encode_embeddings(cb, NULL, tokens, 0, table, 0, residual, 0, 2, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: wrong kernel", "function is gptoss_rmsnorm, expected kernel gptoss_embeddings_bf16",
        gptoss_encode_embeddings(cb, rmsnorm, tokens, 0, table, 0, residual, 0, 2, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: zero tokens", "num_tokens 0",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, 0, 0, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: dim not a multiple of 8", "dim 12",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, 0, 2, 12, DENSE_V));
    EXPECT_REJECT(t, "embeddings: zero vocabulary", "vocab_size 0",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, 0, 2, DENSE_D, 0));
    EXPECT_REJECT(t, "embeddings: NULL tokens", "gptoss_encode_embeddings: tokens buffer is NULL",
        gptoss_encode_embeddings(cb, embeddings, NULL, 0, table, 0, residual, 0, 2, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: misaligned tokens", "tokens offset 2 is not a multiple of 4",
        gptoss_encode_embeddings(cb, embeddings, tokens, 2, table, 0, residual, 0, 1, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: table too short",
                  "embedding needs 2048 bytes at offset 0 but the buffer holds 1024 bytes",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, 0, 2, DENSE_D, 2 * DENSE_V));
    EXPECT_REJECT(t, "embeddings: offset past the end", "residual needs 256 bytes at offset 272",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, 272, 2, DENSE_D, DENSE_V));
    EXPECT_REJECT(t, "embeddings: offset near SIZE_MAX (overflow)", "residual needs 256 bytes at offset",
        gptoss_encode_embeddings(cb, embeddings, tokens, 0, table, 0, residual, SIZE_MAX - 15, 2, DENSE_D, DENSE_V));

    /* Good call, run: rows 3 and 5 of a table whose entries are exact in bf16. */
    uint16_t* e = table->ptr;
    for (uint32_t v = 0; v < DENSE_V; v++) {
        for (uint32_t d = 0; d < DENSE_D; d++) {
            e[v * DENSE_D + d] = bf16((float) v + 0.25f * (float) (d % 4));
        }
    }
    ((uint32_t*) tokens->ptr)[0] = 3;
    ((uint32_t*) tokens->ptr)[1] = 5;
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "embeddings: 2 tokens (run)", run(good,
        gptoss_encode_embeddings(good, embeddings, tokens, 0, table, 0, residual, 0, 2, DENSE_D, DENSE_V)));
    float expected[2 * DENSE_D];
    for (uint32_t i = 0; i < 2 * DENSE_D; i++) {
        expected[i] = (float) (i < DENSE_D ? 3 : 5) + 0.25f * (float) (i % DENSE_D % 4);
    }
    char detail[160];
    expect_true(t, "embeddings: rows 3 and 5 copied exactly",
                all_close(residual->ptr, expected, 2 * DENSE_D, 0.0f, detail, sizeof(detail)), detail);
}

static void test_rmsnorm(struct selftest* t, struct gptoss_function* rmsnorm, struct gptoss_function* embeddings) {
    struct gptoss_buffer* x = new_buffer(t, DENSE_D * 4);
    struct gptoss_buffer* gain = new_buffer(t, DENSE_D * 2);
    struct gptoss_buffer* out = new_buffer(t, DENSE_D * 4);
    if (x == NULL || gain == NULL || out == NULL) {
        expect_true(t, "rmsnorm: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    EXPECT_REJECT(t, "rmsnorm: wrong kernel", "gptoss_encode_rmsnorm: function is gptoss_embeddings_bf16, "
                  "expected kernel gptoss_rmsnorm",
        gptoss_encode_rmsnorm(cb, embeddings, x, 0, gain, 0, out, 0, 1, DENSE_D, 1e-5f));
    EXPECT_REJECT(t, "rmsnorm: dim not a multiple of 4", "dim 30",
        gptoss_encode_rmsnorm(cb, rmsnorm, x, 0, gain, 0, out, 0, 1, 30, 1e-5f));
    EXPECT_REJECT(t, "rmsnorm: negative epsilon", "epsilon -1",
        gptoss_encode_rmsnorm(cb, rmsnorm, x, 0, gain, 0, out, 0, 1, DENSE_D, -1.0f));
    EXPECT_REJECT(t, "rmsnorm: infinite epsilon", "epsilon inf",
        gptoss_encode_rmsnorm(cb, rmsnorm, x, 0, gain, 0, out, 0, 1, DENSE_D, INFINITY));
    EXPECT_REJECT(t, "rmsnorm: misaligned gain", "gain offset 4 is not a multiple of 8",
        gptoss_encode_rmsnorm(cb, rmsnorm, x, 0, gain, 4, out, 0, 1, DENSE_D, 1e-5f));
    EXPECT_REJECT(t, "rmsnorm: output past the end",
                  "output needs 128 bytes at offset 16 but the buffer holds 128 bytes",
        gptoss_encode_rmsnorm(cb, rmsnorm, x, 0, gain, 0, out, 16, 1, DENSE_D, 1e-5f));

    /* Good call, run: x = 2 everywhere, gain 0.5 -> 2 / sqrt(4) * 0.5 = 0.5. */
    for (uint32_t d = 0; d < DENSE_D; d++) {
        ((float*) x->ptr)[d] = 2.0f;
        ((uint16_t*) gain->ptr)[d] = bf16(0.5f);
    }
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "rmsnorm: 1 token (run)",
                  run(good, gptoss_encode_rmsnorm(good, rmsnorm, x, 0, gain, 0, out, 0, 1, DENSE_D, 0.0f)));
    float expected[DENSE_D];
    for (uint32_t d = 0; d < DENSE_D; d++) {
        expected[d] = 0.5f;
    }
    char detail[160];
    /* 1e-6: a few f32 roundings of a unit-size result (sum of squares, rsqrt, two products). */
    expect_true(t, "rmsnorm: 2 / rms(2) * 0.5 = 0.5", all_close(out->ptr, expected, DENSE_D, 1e-6f, detail,
                sizeof(detail)),
                detail);
}

static void test_dense_projection(struct selftest* t, const struct gptoss_dense_functions* dense) {
    struct gptoss_buffer* x = new_buffer(t, DENSE_PREFILL_T * DENSE_D * 4);
    struct gptoss_buffer* weight = new_buffer(t, DENSE_N * DENSE_D * 2);
    struct gptoss_buffer* bias = new_buffer(t, DENSE_N * 2);
    struct gptoss_buffer* out = new_buffer(t, DENSE_PREFILL_T * DENSE_N * 4);
    if (x == NULL || weight == NULL || bias == NULL || out == NULL) {
        expect_true(t, "dense_projection: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    struct gptoss_dense_functions swapped = *dense;
    swapped.matvec = dense->gemm;
    swapped.gemm = dense->matvec;
    EXPECT_REJECT(t, "dense_projection: NULL functions", "gptoss_encode_dense_projection: functions is NULL",
        gptoss_encode_dense_projection(cb, NULL, x, 0, weight, 0, NULL, 0, out, 0, 1, DENSE_D, DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: wrong mat-vec kernel", "functions->matvec is gptoss_gemm_bf16, "
                  "expected kernel gptoss_matvec_bf16",
        gptoss_encode_dense_projection(cb, &swapped, x, 0, weight, 0, NULL, 0, out, 0, 1, DENSE_D, DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: wrong GEMM kernel", "functions->gemm is gptoss_matvec_bf16, "
                  "expected kernel gptoss_gemm_bf16",
        gptoss_encode_dense_projection(cb, &swapped, x, 0, weight, 0, NULL, 0, out, 0, DENSE_PREFILL_T, DENSE_D,
                                       DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: k not a multiple of 8", "k 12",
        gptoss_encode_dense_projection(cb, dense, x, 0, weight, 0, NULL, 0, out, 0, 1, 12, DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: zero n", "n 0",
        gptoss_encode_dense_projection(cb, dense, x, 0, weight, 0, NULL, 0, out, 0, 1, DENSE_D, 0, 0));
    EXPECT_REJECT(t, "dense_projection: weight too short",
                  "weight needs 1024 bytes at offset 0 but the buffer holds 512 bytes",
        gptoss_encode_dense_projection(cb, dense, x, 0, weight, 0, NULL, 0, out, 0, 1, DENSE_D, 2 * DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: misaligned bias", "bias offset 1 is not a multiple of 2",
        gptoss_encode_dense_projection(cb, dense, x, 0, weight, 0, bias, 1, out, 0, 1, DENSE_D, DENSE_N, 0));
    EXPECT_REJECT(t, "dense_projection: NULL output", "output buffer is NULL",
        gptoss_encode_dense_projection(cb, dense, x, 0, weight, 0, NULL, 0, NULL, 0, 1, DENSE_D, DENSE_N, 0));

    /* Good calls, run: W = [I_8 | 0] picks x[0..8); bias 1; += onto 10 -> x + 11, mat-vec and GEMM. */
    uint16_t* w = weight->ptr;
    for (uint32_t n = 0; n < DENSE_N; n++) {
        for (uint32_t k = 0; k < DENSE_D; k++) {
            w[n * DENSE_D + k] = bf16(n == k ? 1.0f : 0.0f);
        }
        ((uint16_t*) bias->ptr)[n] = bf16(1.0f);
    }
    for (uint32_t i = 0; i < DENSE_PREFILL_T * DENSE_D; i++) {
        ((float*) x->ptr)[i] = (float) (i % 64);
    }
    float expected[DENSE_PREFILL_T * DENSE_N];
    for (uint32_t tok = 0; tok < DENSE_PREFILL_T; tok++) {
        for (uint32_t n = 0; n < DENSE_N; n++) {
            expected[tok * DENSE_N + n] = (float) ((tok * DENSE_D + n) % 64) + 11.0f;
        }
    }
    const uint32_t token_counts[2] = {1, DENSE_PREFILL_T};
    const char* labels[2] = {"dense_projection: mat-vec, bias, add_residual (run)",
                             "dense_projection: GEMM, bias, add_residual (run)"};
    for (int c = 0; c < 2; c++) {
        for (uint32_t i = 0; i < DENSE_PREFILL_T * DENSE_N; i++) {
            ((float*) out->ptr)[i] = 10.0f;
        }
        struct gptoss_command_buffer* good = new_command_buffer(t);
        EXPECT_ACCEPT(t, labels[c], run(good, gptoss_encode_dense_projection(good, dense, x, 0, weight, 0, bias, 0,
                      out, 0,
                                                                            token_counts[c], DENSE_D, DENSE_N, 1)));
        char detail[160];
        /* Exact: every product is x * 1 or x * 0 and the sums are small integers. */
        expect_true(t,
                    c == 0 ? "dense_projection: mat-vec result x + 1 + 10" : "dense_projection: GEMM result x + 1 + 10",
                    all_close(out->ptr, expected, token_counts[c] * DENSE_N, 0.0f, detail, sizeof(detail)), detail);
    }
}

static void test_unembedding(struct selftest* t, const struct gptoss_dense_functions* dense) {
    struct gptoss_buffer* residual = new_buffer(t, DENSE_PREFILL_T * DENSE_D * 4);
    struct gptoss_buffer* gain = new_buffer(t, DENSE_D * 2);
    struct gptoss_buffer* weight = new_buffer(t, DENSE_V * DENSE_D * 2);
    struct gptoss_buffer* scratch = new_buffer(t, DENSE_PREFILL_T * DENSE_D * 4);
    struct gptoss_buffer* logits = new_buffer(t, DENSE_PREFILL_T * DENSE_V * 4);
    if (residual == NULL || gain == NULL || weight == NULL || scratch == NULL || logits == NULL) {
        expect_true(t, "unembedding: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    struct gptoss_dense_functions no_matvec = *dense, no_gemm = *dense;
    no_matvec.matvec = NULL;
    no_gemm.gemm = NULL;
    const uint32_t P = DENSE_PREFILL_T;
    EXPECT_REJECT(t, "unembedding: NULL functions", "gptoss_encode_unembedding: functions is NULL",
        gptoss_encode_unembedding(cb, NULL, residual, 0, gain, 0, weight, 0, NULL, 0, logits, 0, 1, DENSE_D, DENSE_V,
                                  1e-5f));
    EXPECT_REJECT(t, "unembedding: NaN epsilon", "must be finite and >= 0",
        gptoss_encode_unembedding(cb, dense, residual, 0, gain, 0, weight, 0, NULL, 0, logits, 0, 1, DENSE_D, DENSE_V,
                                  NAN));
    EXPECT_REJECT(t, "unembedding: zero rows", "num_tokens 0",
        gptoss_encode_unembedding(cb, dense, residual, 0, gain, 0, weight, 0, NULL, 0, logits, 0, 0, DENSE_D, DENSE_V,
                                  1e-5f));
    EXPECT_REJECT(t, "unembedding: gain misaligned", "gain offset 8 is not a multiple of 16",
        gptoss_encode_unembedding(cb, dense, residual, 0, gain, 8, weight, 0, NULL, 0, logits, 0, 1, DENSE_D, DENSE_V,
                                  1e-5f));
    EXPECT_REJECT(t, "unembedding: logits past the end",
                  "output needs 512 bytes at offset 16 but the buffer holds 512 bytes",
        gptoss_encode_unembedding(cb, dense, residual, 0, gain, 0, weight, 0, scratch, 0, logits, 16, P, DENSE_D,
                                  DENSE_V, 1e-5f));
    EXPECT_REJECT(t, "unembedding: decode without mat-vec", "functions->matvec is NULL, "
                  "expected kernel gptoss_matvec_bf16",
        gptoss_encode_unembedding(cb, &no_matvec, residual, 0, gain, 0, weight, 0, NULL, 0, logits, 0, 1, DENSE_D,
                                  DENSE_V, 1e-5f));
    EXPECT_REJECT(t, "unembedding: prefill without GEMM", "functions->gemm is NULL, expected kernel gptoss_gemm_bf16",
        gptoss_encode_unembedding(cb, &no_gemm, residual, 0, gain, 0, weight, 0, scratch, 0, logits, 0, P, DENSE_D,
                                  DENSE_V, 1e-5f));
    EXPECT_REJECT(t, "unembedding: prefill without scratch", "x_norm_scratch buffer is NULL",
        gptoss_encode_unembedding(cb, dense, residual, 0, gain, 0, weight, 0, NULL, 0, logits, 0, P, DENSE_D, DENSE_V,
                                  1e-5f));

    /* Good calls, run: residual 2, gain 1 -> normalised 1; W row v = (v / 32) everywhere -> logit v. */
    for (uint32_t i = 0; i < P * DENSE_D; i++) {
        ((float*) residual->ptr)[i] = 2.0f;
    }
    for (uint32_t d = 0; d < DENSE_D; d++) {
        ((uint16_t*) gain->ptr)[d] = bf16(1.0f);
    }
    for (uint32_t v = 0; v < DENSE_V; v++) {
        for (uint32_t d = 0; d < DENSE_D; d++) {
            ((uint16_t*) weight->ptr)[v * DENSE_D + d] = bf16((float) v / 32.0f);
        }
    }
    float expected[DENSE_PREFILL_T * DENSE_V];
    for (uint32_t i = 0; i < P * DENSE_V; i++) {
        expected[i] = (float) (i % DENSE_V);
    }
    const uint32_t row_counts[2] = {1, P};
    const char* labels[2] = {"unembedding: 1 row, fused mat-vec (run)", "unembedding: 8 rows, RMSNorm + GEMM (run)"};
    for (int c = 0; c < 2; c++) {
        memset(logits->ptr, 0, logits->size);
        struct gptoss_command_buffer* good = new_command_buffer(t);
        EXPECT_ACCEPT(t, labels[c], run(good, gptoss_encode_unembedding(good, dense, residual, 0, gain, 0, weight, 0,
                      scratch,
                                                                       0, logits, 0, row_counts[c], DENSE_D, DENSE_V,
                                                                           0.0f)));
        char detail[160];
        /* 1e-4: the normalised value 1 carries a few f32 roundings, times sums up to 32 * 15/32 = 15. */
        expect_true(t, c == 0 ? "unembedding: mat-vec logits = row index" : "unembedding: GEMM logits = row index",
                    all_close(logits->ptr, expected, row_counts[c] * DENSE_V, 1e-4f, detail, sizeof(detail)), detail);
    }
}

static void test_qkv(struct selftest* t, const struct gptoss_dense_functions* dense) {
    enum { HQ = 8, HKV = 1, ROWS = (HQ + 2 * HKV) * 64, SLOTS = 16 };
    const uint32_t P = DENSE_PREFILL_T;
    struct gptoss_buffer* residual = new_buffer(t, P * DENSE_D * 4);
    struct gptoss_buffer* gain = new_buffer(t, DENSE_D * 2);
    struct gptoss_buffer* weight = new_buffer(t, ROWS * DENSE_D * 2);
    struct gptoss_buffer* bias = new_buffer(t, ROWS * 2);
    struct gptoss_buffer* q = new_buffer(t, P * HQ * 64 * 4);
    struct gptoss_buffer* k_cache = new_buffer(t, SLOTS * HKV * 64 * 2);
    struct gptoss_buffer* v_cache = new_buffer(t, SLOTS * HKV * 64 * 2);
    struct gptoss_buffer* x_norm = new_buffer(t, P * DENSE_D * 4);
    struct gptoss_buffer* qkv = new_buffer(t, P * ROWS * 4);
    if (residual == NULL || gain == NULL || weight == NULL || bias == NULL || q == NULL || k_cache == NULL ||
        v_cache == NULL || x_norm == NULL || qkv == NULL) {
        expect_true(t, "qkv: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    const struct gptoss_rope_params rope = {.theta = 150000.0f, .interpolation_scale = 1.0f / 32.0f,
                                            .yarn_offset = -0.5f, .yarn_scale = 0.1f, .yarn_multiplier = 1.0f};
    struct gptoss_rope_params bad_rope = rope;
    bad_rope.theta = 0.0f;
    struct gptoss_dense_functions wrong = *dense, no_gemm = *dense;
    wrong.qkv_decode = dense->matvec;
    wrong.rope_kv = dense->qkv_decode;
    no_gemm.gemm = dense->rmsnorm;
#define QKV(functions, T, D, hq, hkv, first, slots, eps, rope_params, k_off, v_buf, scratch_buf) \
    gptoss_encode_qkv(cb, (functions), residual, 0, gain, 0, weight, 0, bias, 0, q, 0, k_cache, (k_off), (v_buf), 0, \
                      (scratch_buf), 0, qkv, 0, (T), (D), (hq), (hkv), (first), (slots), (eps), (rope_params))
    EXPECT_REJECT(t, "qkv: NULL functions", "gptoss_encode_qkv: functions is NULL",
        QKV(NULL, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: NULL rope", "gptoss_encode_qkv: rope is NULL",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, NULL, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: wrong decode kernel", "functions->qkv_decode is gptoss_matvec_bf16, "
                  "not a gptoss_qkv_rope_kv{16,32} kernel",
        QKV(&wrong, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: wrong prefill kernel", "functions->rope_kv is gptoss_qkv_rope_kv16, "
                  "not a gptoss_rope_kv{16,32} kernel",
        QKV(&wrong, P, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: dim not a multiple of 8", "dim 20 (multiple of 8)",
        QKV(dense, 1, 20, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: zero KV heads", "num_kv_heads 0",
        QKV(dense, 1, DENSE_D, HQ, 0, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: zero slots", "kv_slots 0",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, 0, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: position overflow", "positions 4294967295 + 1 tokens overflow 32 bits",
        QKV(dense, 1, DENSE_D, HQ, HKV, UINT32_MAX, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: theta 0", "rope parameters must be finite with theta > 0",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &bad_rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: too many heads", "+ 2 x 4294967295 heads is too many",
        QKV(dense, 1, DENSE_D, HQ, UINT32_MAX, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: misaligned fp16 K cache", "k_cache offset 1 is not a multiple of 2",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 1, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: K cache too short for the slots",
                  "k_cache needs 4096 bytes at offset 0 but the buffer holds 2048 bytes",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, 2 * SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
    EXPECT_REJECT(t, "qkv: NULL V cache", "v_cache buffer is NULL",
        QKV(dense, 1, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, NULL, x_norm));
    EXPECT_REJECT(t, "qkv: prefill without scratch", "x_norm_scratch buffer is NULL",
        QKV(dense, P, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, NULL));
    EXPECT_REJECT(t, "qkv: prefill with a wrong GEMM", "functions->gemm is gptoss_rmsnorm, "
                  "expected kernel gptoss_gemm_bf16",
        QKV(&no_gemm, P, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope, 0, v_cache, x_norm));
#undef QKV
    /* Zero weights: only that the dispatches encode and execute without a fault is checked. */
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "qkv: decode, 1 token (encode)",
        gptoss_encode_qkv(good, dense, residual, 0, gain, 0, weight, 0, bias, 0, q, 0, k_cache, 0, v_cache, 0, NULL, 0,
                          NULL, 0, 1, DENSE_D, HQ, HKV, 5, SLOTS, 1e-5f, &rope));
    EXPECT_ACCEPT(t, "qkv: prefill, 8 tokens (encode)",
        gptoss_encode_qkv(good, dense, residual, 0, gain, 0, weight, 0, bias, 0, q, 0, k_cache, 0, v_cache, 0, x_norm,
                          0,
                          qkv, 0, P, DENSE_D, HQ, HKV, 0, SLOTS, 1e-5f, &rope));
    EXPECT_ACCEPT(t, "qkv: decode and prefill execute", run(good, gptoss_status_success));
}

/* ---- attention (launch-attention.c) ---- */

static void test_attention(struct selftest* t, const struct gptoss_attention_functions* attention) {
    enum { HQ = 8, HKV = 1, SLOTS = 16, BIG_SLOTS = 4096, D = GPTOSS_ATTENTION_HEAD_DIM };
    const uint32_t P = GPTOSS_ATTENTION_PREFILL_MIN_TOKENS;
    struct gptoss_buffer* q = new_buffer(t, P * HQ * D * 4);
    struct gptoss_buffer* k_cache = new_buffer(t, BIG_SLOTS * HKV * D * 2);
    struct gptoss_buffer* v_cache = new_buffer(t, BIG_SLOTS * HKV * D * 2);
    struct gptoss_buffer* sinks = new_buffer(t, HQ * 2);
    struct gptoss_buffer* attn = new_buffer(t, P * HQ * D * 4);
    const size_t scratch_size = gptoss_attention_scratch_size(1, HQ, 2001);
    struct gptoss_buffer* scratch = new_buffer(t, scratch_size);
    if (q == NULL || k_cache == NULL || v_cache == NULL || sinks == NULL || attn == NULL || scratch == NULL) {
        expect_true(t, "attention: buffers", false, "could not create buffers");
        return;
    }
    expect_true(t, "attention: scratch size for 2001 keys is 2 splits", scratch_size == 1 * HQ * 2 * 66 * 4,
                "gptoss_attention_scratch_size(1, 8, 2001) != 8 * 2 * 66 * 4");
    struct gptoss_command_buffer* cb = t->rejects;
    struct gptoss_attention_functions wrong = *attention, no_combine = *attention;
    wrong.decode = attention->prefill;
    no_combine.combine = NULL;
#define ATTN(command_buffer, functions, q_off, sinks_buf, scratch_buf, T, first, hq, hkv, window, slots) \
    gptoss_encode_attention((command_buffer), (functions), q, (q_off), k_cache, 0, v_cache, 0, (sinks_buf), 0, \
                            attn, 0, (scratch_buf), 0, (T), (first), (hq), (hkv), (window), (slots))
    EXPECT_REJECT(t, "attention: NULL command buffer", "gptoss_encode_attention: command_buffer is NULL",
        ATTN(NULL, attention, 0, sinks, NULL, 1, 0, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: NULL functions", "gptoss_encode_attention: functions is NULL",
        ATTN(cb, NULL, 0, sinks, NULL, 1, 0, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: wrong decode kernel",
        "functions->decode is gptoss_attention_prefill_f16, not a gptoss_attention_decode_{f16,f32} kernel",
        ATTN(cb, &wrong, 0, sinks, NULL, 1, 0, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: zero tokens", "num_tokens is 0", ATTN(cb, attention, 0, sinks, NULL, 0, 0, HQ, HKV,
                  0, SLOTS));
    EXPECT_REJECT(t, "attention: positions past 2^31", "positions 2147483647 + 2 tokens exceed 2^31",
        ATTN(cb, attention, 0, sinks, NULL, 2, 2147483647u, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: head ratio 4", "num_q_heads 4 must be 8 x num_kv_heads 1",
        ATTN(cb, attention, 0, sinks, NULL, 1, 0, 4, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: zero KV heads", "must be 8 x num_kv_heads 0 (> 0)",
        ATTN(cb, attention, 0, sinks, NULL, 1, 0, 0, 0, 0, SLOTS));
    EXPECT_REJECT(t, "attention: sliding ring too small", "the batch needs keys 7..11 (5) but the cache has 4 slots",
        ATTN(cb, attention, 0, sinks, NULL, 2, 10, HQ, HKV, 4, 4));
    EXPECT_REJECT(t, "attention: full cache too small", "the batch needs keys 0..16 (17) but the cache has 16 slots",
        ATTN(cb, attention, 0, sinks, NULL, 1, 16, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: misaligned q", "q offset 8 is not a multiple of 16",
        ATTN(cb, attention, 8, sinks, NULL, 1, 0, HQ, HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: NULL sinks", "sinks buffer is NULL", ATTN(cb, attention, 0, NULL, NULL, 1, 0, HQ,
                  HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: sinks too short for 16 heads",
                  "sinks needs 32 bytes at offset 0 but the buffer holds 16 bytes",
        ATTN(cb, attention, 0, sinks, NULL, 1, 0, 2 * HQ, 2 * HKV, 0, SLOTS));
    EXPECT_REJECT(t, "attention: split-K without combine",
        "2001 keys need 2 splits but functions->combine is not gptoss_attention_combine",
        ATTN(cb, &no_combine, 0, sinks, scratch, 1, 2000, HQ, HKV, 0, BIG_SLOTS));
    EXPECT_REJECT(t, "attention: split-K without scratch", "scratch buffer is NULL",
        ATTN(cb, attention, 0, sinks, NULL, 1, 2000, HQ, HKV, 0, BIG_SLOTS));
    EXPECT_REJECT(t, "attention: split-K scratch too short", "scratch needs 8448 bytes",
        ATTN(cb, attention, 0, sinks, scratch, 2, 2000, HQ, HKV, 0, BIG_SLOTS));
    /* Good calls: split-K and prefill encode; a single-key decode runs. */
    struct gptoss_command_buffer* encode_only = new_command_buffer(t);
    EXPECT_ACCEPT(t, "attention: split-K decode (encode)", ATTN(encode_only, attention, 0, sinks, scratch, 1, 2000,
                  HQ, HKV, 0, BIG_SLOTS));
    EXPECT_ACCEPT(t, "attention: prefill, 16 tokens, window 8 (encode)", ATTN(encode_only, attention, 0, sinks, NULL,
                  P, 0, HQ, HKV, 8, 24));
    EXPECT_ACCEPT(t, "attention: split-K and prefill execute", run(encode_only, gptoss_status_success));

    /* q = 0 so the one key scores 0, like the sink (bf16 0): attn = v / 2 for every head. */
    uint16_t* v = v_cache->ptr;
    float expected[HQ * D];
    for (uint32_t d = 0; d < D; d++) {
        v[d] = fp16((float) d / 8.0f);
        ((uint16_t*) k_cache->ptr)[d] = fp16(1.0f);
    }
    for (uint32_t i = 0; i < HQ * D; i++) {
        expected[i] = (float) (i % D) / 16.0f;
    }
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "attention: decode, 1 key (run)", run(good, ATTN(good, attention, 0, sinks, NULL, 1, 0, HQ, HKV,
                  0, SLOTS)));
#undef ATTN
    char detail[160];
    /* 1e-5: softmax weight 1/2 from exp(0) / (exp(0) + exp(0)) with f32 exp rounding, times values < 8. */
    expect_true(t, "attention: one key and an equal sink give v / 2", all_close(attn->ptr, expected, HQ * D, 1e-5f,
                detail,
                sizeof(detail)), detail);
}

/* ---- router and MoE (launch-routing.c, launch-moe.c) ---- */

static void test_router(struct selftest* t, struct gptoss_function* router, struct gptoss_function* other) {
    enum { T = 1, D = 32, E = 4, K = 2 };
    struct gptoss_buffer* residual = new_buffer(t, T * D * 4);
    struct gptoss_buffer* gain = new_buffer(t, D * 2);
    struct gptoss_buffer* gate_weight = new_buffer(t, E * D * 2);
    struct gptoss_buffer* gate_bias = new_buffer(t, E * 2 + 14);
    struct gptoss_buffer* x_norm = new_buffer(t, T * D * 4);
    struct gptoss_buffer* ids = new_buffer(t, T * K * 4);
    struct gptoss_buffer* weights = new_buffer(t, T * K * 4);
    if (residual == NULL || gain == NULL || gate_weight == NULL || gate_bias == NULL || x_norm == NULL || ids == NULL ||
        weights == NULL) {
        expect_true(t, "router: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
#define ROUTER(command_buffer, function, residual_off, weight_buf, T_, D_, E_, K_, eps) \
    gptoss_encode_router((command_buffer), (function), residual, (residual_off), gain, 0, (weight_buf), 0, \
                         gate_bias, 0, x_norm, 0, ids, 0, weights, 0, (T_), (D_), (E_), (K_), (eps))
    EXPECT_REJECT(t, "router: NULL command buffer", "gptoss_encode_router: command_buffer is NULL",
        ROUTER(NULL, router, 0, gate_weight, T, D, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: NULL function", "gptoss_encode_router: function is NULL",
        ROUTER(cb, NULL, 0, gate_weight, T, D, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: wrong kernel", "function is gptoss_rmsnorm, expected kernel gptoss_router",
        ROUTER(cb, other, 0, gate_weight, T, D, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: zero tokens", "num_tokens is 0", ROUTER(cb, router, 0, gate_weight, 0, D, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: embedding_dim not a multiple of 32",
                  "embedding_dim 48 must be a positive multiple of 32 and at most 7680",
        ROUTER(cb, router, 0, gate_weight, T, 48, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: embedding_dim too large", "embedding_dim 7712",
        ROUTER(cb, router, 0, gate_weight, T, 7712, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: 257 experts", "num_experts 257 must be in 1..256",
        ROUTER(cb, router, 0, gate_weight, T, D, 257, K, 1e-5f));
    EXPECT_REJECT(t, "router: more active than experts", "num_active 5 must be in 1..min(num_experts 4, 8)",
        ROUTER(cb, router, 0, gate_weight, T, D, E, 5, 1e-5f));
    EXPECT_REJECT(t, "router: 9 active", "num_active 9", ROUTER(cb, router, 0, gate_weight, T, D, 32, 9, 1e-5f));
    EXPECT_REJECT(t, "router: epsilon 2", "epsilon 2 is not in [0, 1]", ROUTER(cb, router, 0, gate_weight, T, D, E, K,
                  2.0f));
    EXPECT_REJECT(t, "router: misaligned residual", "residual offset 4 is not a multiple of 16",
        ROUTER(cb, router, 4, gate_weight, T, D, E, K, 1e-5f));
    EXPECT_REJECT(t, "router: gate weight too short",
                  "gate_weight needs 512 bytes at offset 0 but the buffer holds 256 bytes",
        ROUTER(cb, router, 0, gate_weight, T, D, 2 * E, K, 1e-5f));
    EXPECT_REJECT(t, "router: NULL gate weight", "gate_weight buffer is NULL", ROUTER(cb, router, 0, NULL, T, D, E, K,
                  1e-5f));

    /* Good call, run: zero gate weights, bias (0, 1, 2, 3): experts 3 then 2, weights softmax(3, 2). */
    for (uint32_t e = 0; e < E; e++) {
        ((uint16_t*) gate_bias->ptr)[e] = bf16((float) e);
    }
    for (uint32_t d = 0; d < D; d++) {
        ((float*) residual->ptr)[d] = 1.0f;
        ((uint16_t*) gain->ptr)[d] = bf16(1.0f);
    }
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "router: 1 token, 4 experts, top-2 (run)", run(good, ROUTER(good, router, 0, gate_weight, T, D,
                  E, K, 1e-5f)));
#undef ROUTER
    const uint32_t* chosen = ids->ptr;
    const float* w = weights->ptr;
    const float w0 = 1.0f / (1.0f + expf(-1.0f));
    char detail[160];
    snprintf(detail, sizeof(detail), "experts (%u, %u) weights (%g, %g), expected (3, 2) (%g, %g)", chosen[0],
             chosen[1],
             (double) w[0], (double) w[1], (double) w0, (double) (1.0f - w0));
    /* 1e-6: a two-term softmax in f32 (one exp, one division). */
    expect_true(t, "router: top-2 of bias (0, 1, 2, 3)",
                chosen[0] == 3 && chosen[1] == 2 && fabsf(w[0] - w0) <= 1e-6f &&
                fabsf(w[1] - (1.0f - w0)) <= 1e-6f, detail);
}

struct moe_fixture {
    struct gptoss_buffer *x_norm, *ids, *expert_weights, *moe, *act, *plan, *row_pairs, *expert_out, *residual;
};

static void test_moe(struct selftest* t, struct gptoss_function* const kernels[6], struct gptoss_function* other) {
    enum { T = 2, D = 32, I = 32, E = 4, K = 2 };
    struct gptoss_moe_expert_layout layout;
    EXPECT_REJECT(t, "moe_expert_layout: NULL output", "layout_out is NULL", gptoss_moe_expert_layout(D, I, NULL));
    EXPECT_REJECT(t, "moe_expert_layout: mlp_dim 40",
                  "embedding_dim 32 and mlp_dim 40 must be positive multiples of 32",
                  gptoss_moe_expert_layout(D, 40, &layout));
    EXPECT_REJECT(t, "moe_expert_layout: D x I overflowing 256 experts",
                  "mlp_dim 4294967264 must be positive multiples of 32 with a product of at most 2^48",
                  gptoss_moe_expert_layout(0xFFFFFFE0u, 0xFFFFFFE0u, &layout));
    EXPECT_ACCEPT(t, "moe_expert_layout: D = I = 32", gptoss_moe_expert_layout(D, I, &layout));
    struct moe_fixture f = {
        .x_norm = new_buffer(t, T * D * 4), .ids = new_buffer(t, T * K * 4), .expert_weights = new_buffer(t, T * K * 4),
        .moe = new_buffer(t, (size_t) layout.expert_size * E), .act = new_buffer(t, T * K * I * 4),
        .plan = new_buffer(t, 2 * (E + 1) * 4), .row_pairs = new_buffer(t, T * K * 4),
        .expert_out = new_buffer(t, T * K * D * 4), .residual = new_buffer(t, T * D * 4)};
    if (f.x_norm == NULL || f.ids == NULL || f.expert_weights == NULL || f.moe == NULL || f.act == NULL ||
        f.plan == NULL || f.row_pairs == NULL || f.expert_out == NULL || f.residual == NULL) {
        expect_true(t, "moe: buffers", false, "could not create buffers");
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    struct gptoss_function *mlp1_decode = kernels[0], *mlp2_decode = kernels[1], *scatter = kernels[2],
                           *mlp1_prefill = kernels[3], *mlp2_prefill = kernels[4], *gather = kernels[5];
    /* mlp1 decode: the shared shape checks of every MoE wrapper. */
#define MLP1D(command_buffer, function, x_off, moe_buf, T_, D_, I_, E_, K_, limit) \
    gptoss_encode_moe_mlp1_swiglu_decode((command_buffer), (function), f.x_norm, (x_off), f.ids, 0, (moe_buf), 0, \
                                         f.act, 0, (T_), (D_), (I_), (E_), (K_), (limit))
    EXPECT_REJECT(t, "moe_mlp1_decode: NULL command buffer",
                  "gptoss_encode_moe_mlp1_swiglu_decode: command_buffer is NULL",
        MLP1D(NULL, mlp1_decode, 0, f.moe, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: NULL function", "gptoss_encode_moe_mlp1_swiglu_decode: function is NULL",
        MLP1D(cb, NULL, 0, f.moe, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: wrong kernel", "function is gptoss_moe_mlp2_accumulate_decode, "
                  "expected kernel gptoss_moe_mlp1_swiglu_decode",
        MLP1D(cb, mlp2_decode, 0, f.moe, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: zero tokens", "num_tokens is 0", MLP1D(cb, mlp1_decode, 0, f.moe, 0, D, I, E,
                  K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: 257 experts", "num_experts 257 must be in 1..256",
        MLP1D(cb, mlp1_decode, 0, f.moe, T, D, I, 257, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: more active than experts", "num_active 5 must be in 1..num_experts (4)",
        MLP1D(cb, mlp1_decode, 0, f.moe, T, D, I, E, 5, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: swiglu_limit 0", "swiglu_limit 0 must be positive",
        MLP1D(cb, mlp1_decode, 0, f.moe, T, D, I, E, K, 0.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: NaN swiglu_limit", "must be positive",
        MLP1D(cb, mlp1_decode, 0, f.moe, T, D, I, E, K, NAN));
    EXPECT_REJECT(t, "moe_mlp1_decode: embedding_dim 16",
                  "embedding_dim 16 and mlp_dim 32 must be positive multiples of 32",
        MLP1D(cb, mlp1_decode, 0, f.moe, T, 16, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: misaligned x_norm", "x_norm offset 8 is not a multiple of 16",
        MLP1D(cb, mlp1_decode, 8, f.moe, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: MoE section shorter than E experts", "moe_weights needs",
        MLP1D(cb, mlp1_decode, 0, f.moe, 1, D, I, 2 * E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: NULL MoE weights", "moe_weights buffer is NULL",
        MLP1D(cb, mlp1_decode, 0, NULL, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_decode: act past the end",
                  "act needs 512 bytes at offset 16 but the buffer holds 512 bytes",
        gptoss_encode_moe_mlp1_swiglu_decode(cb, mlp1_decode, f.x_norm, 0, f.ids, 0, f.moe, 0, f.act, 16, T, D, I, E,
                                             K, 7.0f));
    /* The other MoE wrappers: wrong kernel and one tensor each. */
    EXPECT_REJECT(t, "moe_mlp2_decode: wrong kernel", "expected kernel gptoss_moe_mlp2_accumulate_decode",
        gptoss_encode_moe_mlp2_accumulate_decode(cb, other, f.act, 0, f.ids, 0, f.expert_weights, 0, f.moe, 0,
                                                 f.residual, 0, T, D, I, E, K));
    EXPECT_REJECT(t, "moe_mlp2_decode: residual past the end",
                  "residual needs 256 bytes at offset 16 but the buffer holds 256 bytes",
        gptoss_encode_moe_mlp2_accumulate_decode(cb, mlp2_decode, f.act, 0, f.ids, 0, f.expert_weights, 0, f.moe, 0,
                                                 f.residual, 16, T, D, I, E, K));
    EXPECT_REJECT(t, "moe_scatter: wrong kernel", "expected kernel gptoss_moe_scatter",
        gptoss_encode_moe_scatter(cb, gather, f.ids, 0, f.plan, 0, f.row_pairs, 0, T, E, K));
    EXPECT_REJECT(t, "moe_scatter: plan too short", "plan needs 80 bytes at offset 0 but the buffer holds 40 bytes",
        gptoss_encode_moe_scatter(cb, scatter, f.ids, 0, f.plan, 0, f.row_pairs, 0, 1, 2 * E + 1, K));
    EXPECT_REJECT(t, "moe_mlp1_prefill: wrong kernel", "expected kernel gptoss_moe_mlp1_swiglu_prefill",
        gptoss_encode_moe_mlp1_swiglu_prefill(cb, mlp1_decode, f.x_norm, 0, f.plan, 0, f.row_pairs, 0, f.moe, 0,
                                              f.act, 0, T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp1_prefill: NULL row_pairs", "row_pairs buffer is NULL",
        gptoss_encode_moe_mlp1_swiglu_prefill(cb, mlp1_prefill, f.x_norm, 0, f.plan, 0, NULL, 0, f.moe, 0, f.act, 0,
                                              T, D, I, E, K, 7.0f));
    EXPECT_REJECT(t, "moe_mlp2_prefill: wrong kernel", "expected kernel gptoss_moe_mlp2_prefill",
        gptoss_encode_moe_mlp2_prefill(cb, mlp1_prefill, f.act, 0, f.plan, 0, f.row_pairs, 0, f.expert_weights, 0,
                                       f.moe, 0, f.expert_out, 0, T, D, I, E, K));
    EXPECT_REJECT(t, "moe_mlp2_prefill: expert_out past the end",
                  "expert_out needs 512 bytes at offset 16 but the buffer holds 512 bytes",
        gptoss_encode_moe_mlp2_prefill(cb, mlp2_prefill, f.act, 0, f.plan, 0, f.row_pairs, 0, f.expert_weights, 0,
                                       f.moe, 0, f.expert_out, 16, T, D, I, E, K));
    EXPECT_REJECT(t, "moe_gather: wrong kernel", "expected kernel gptoss_moe_gather",
        gptoss_encode_moe_gather(cb, scatter, f.expert_out, 0, f.ids, 0, f.residual, 0, T, D, E, K));
    EXPECT_REJECT(t, "moe_gather: embedding_dim 0", "embedding_dim 0 and mlp_dim 32 must be positive multiples of 32",
        gptoss_encode_moe_gather(cb, gather, f.expert_out, 0, f.ids, 0, f.residual, 0, T, 0, E, K));
    EXPECT_REJECT(t, "moe_gather: misaligned expert_ids", "expert_ids offset 4 is not a multiple of 16",
        gptoss_encode_moe_gather(cb, gather, f.expert_out, 0, f.ids, 4, f.residual, 0, T, D, E, K));

    struct gptoss_command_buffer* encode_only = new_command_buffer(t);
    EXPECT_ACCEPT(t, "moe_mlp1_decode (encode)", MLP1D(encode_only, mlp1_decode, 0, f.moe, T, D, I, E, K, 7.0f));
#undef MLP1D
    EXPECT_ACCEPT(t, "moe_mlp2_decode (encode)", gptoss_encode_moe_mlp2_accumulate_decode(encode_only, mlp2_decode,
                  f.act, 0, f.ids, 0,
        f.expert_weights, 0, f.moe, 0, f.residual, 0, T, D, I, E, K));
    EXPECT_ACCEPT(t, "moe_scatter (encode)", gptoss_encode_moe_scatter(encode_only, scatter, f.ids, 0, f.plan, 0,
                  f.row_pairs, 0, T, E, K));
    EXPECT_ACCEPT(t, "moe_mlp1_prefill (encode)", gptoss_encode_moe_mlp1_swiglu_prefill(encode_only, mlp1_prefill,
                  f.x_norm, 0, f.plan, 0,
        f.row_pairs, 0, f.moe, 0, f.act, 0, T, D, I, E, K, 7.0f));
    EXPECT_ACCEPT(t, "moe_mlp2_prefill (encode)", gptoss_encode_moe_mlp2_prefill(encode_only, mlp2_prefill, f.act, 0,
                  f.plan, 0,
        f.row_pairs, 0, f.expert_weights, 0, f.moe, 0, f.expert_out, 0, T, D, I, E, K));
    /* Zero expert ids and weights: a valid routing (expert 0 twice); only fault-free execution is checked. */
    EXPECT_ACCEPT(t, "moe: decode and prefill dispatches execute", run(encode_only, gptoss_status_success));

    /* gather runs: residual (1) += expert_out rows of both slots (2 and 3) -> 6. */
    for (uint32_t i = 0; i < T * K; i++) {
        ((uint32_t*) f.ids->ptr)[i] = i % E;
    }
    for (uint32_t i = 0; i < T * K * D; i++) {
        ((float*) f.expert_out->ptr)[i] = (i / D) % K == 0 ? 2.0f : 3.0f;
    }
    float expected[T * D];
    for (uint32_t i = 0; i < T * D; i++) {
        ((float*) f.residual->ptr)[i] = 1.0f;
        expected[i] = 6.0f;
    }
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "moe_gather: 2 tokens, 2 slots (run)", run(good, gptoss_encode_moe_gather(good, gather,
                  f.expert_out, 0, f.ids, 0,
        f.residual, 0, T, D, E, K)));
    char detail[160];
    expect_true(t, "moe_gather: 1 + 2 + 3 = 6 (exact)", all_close(f.residual->ptr, expected, T * D, 0.0f, detail,
                sizeof(detail)),
                detail);
}

/* ---- sampling (launch-sampling.c) ---- */

static void test_sampler_encode(struct selftest* t) {
    enum { V = 64 };
    struct gptoss_sampling_functions functions;
    struct gptoss_sampling_scratch scratch;
    gptoss_sampler_t sampler = NULL;
    struct gptoss_buffer* logits = new_buffer(t, V * 4);
    struct gptoss_buffer* history = new_buffer(t, 4 * 4);
    if (logits == NULL || history == NULL) {
        expect_true(t, "sampler_encode: buffers", false, "could not create buffers");
        return;
    }
    if (gptoss_sampling_functions_create(t->device, &functions) != gptoss_status_success) {
        expect_true(t, "sampler_encode: sampling functions", false, gptoss_get_last_error_message());
        return;
    }
    if (gptoss_sampling_scratch_create(t->device, V, &scratch) != gptoss_status_success) {
        expect_true(t, "sampler_encode: scratch", false, gptoss_get_last_error_message());
        gptoss_sampling_functions_release(&functions);
        return;
    }
    if (gptoss_sampler_create(&sampler) != gptoss_status_success ||
        gptoss_sampler_set_temperature(sampler, 0.0f) != gptoss_status_success) {
        expect_true(t, "sampler_encode: sampler", false, gptoss_get_last_error_message());
        gptoss_sampling_scratch_release(&scratch);
        gptoss_sampling_functions_release(&functions);
        return;
    }
    struct gptoss_command_buffer* cb = t->rejects;
    EXPECT_REJECT(t, "sampler_encode: NULL sampler", "gptoss_sampler_encode: NULL argument",
        gptoss_sampler_encode(NULL, cb, &functions, logits, 0, V, NULL, 0, 0, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: NULL logits", "gptoss_sampler_encode: NULL argument",
        gptoss_sampler_encode(sampler, cb, &functions, NULL, 0, V, NULL, 0, 0, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: vocabulary mismatch", "vocabulary_size 32 does not match the scratch (64)",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 0, V / 2, NULL, 0, 0, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: misaligned logits",
                  "logits at offset 2 do not hold 64 floats in a buffer of 256 bytes",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 2, V, NULL, 0, 0, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: logits past the end", "logits at offset 4 do not hold 64 floats",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 4, V, NULL, 0, 0, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: NULL history", "history of 3 tokens at offset 0 does not fit its buffer",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 0, V, NULL, 0, 3, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: history past the end", "history of 4 tokens at offset 4 does not fit its buffer",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 0, V, history, 4, 4, 0, 0, &scratch));
    EXPECT_REJECT(t, "sampler_encode: prompt longer than history", "num_prompt_tokens 3 exceeds history_count 2",
        gptoss_sampler_encode(sampler, cb, &functions, logits, 0, V, history, 0, 2, 3, 0, &scratch));

    /* Good call, run: greedy picks the largest logit (token 41). */
    for (uint32_t i = 0; i < V; i++) {
        ((float*) logits->ptr)[i] = (float) (i % 7);
    }
    ((float*) logits->ptr)[41] = 100.0f;
    struct gptoss_command_buffer* good = new_command_buffer(t);
    EXPECT_ACCEPT(t, "sampler_encode: greedy, 64 tokens (run)",
        run(good, gptoss_sampler_encode(sampler, good, &functions, logits, 0, V, history, 0, 0, 0, 0, &scratch)));
    uint32_t token = UINT32_MAX;
    EXPECT_ACCEPT(t, "sampler_finish after the run", gptoss_sampler_finish(sampler, &scratch, &token));
    char detail[96];
    snprintf(detail, sizeof(detail), "sampled %u", token);
    expect_true(t, "sampler: greedy token is 41", token == 41, detail);
    gptoss_sampler_release(sampler);
    gptoss_sampling_scratch_release(&scratch);
    gptoss_sampling_functions_release(&functions);
}

/* ---- shared helpers (launch-common.c) ---- */

static void test_helpers(struct selftest* t) {
    char detail[128];
    const uint64_t big = UINT64_C(1) << 32;
    const struct { const char* label; uint64_t actual, expected; } cases[] = {
        {"GPTOSS_LAUNCH_BYTES(3, 5, 4) = 60", GPTOSS_LAUNCH_BYTES(3, 5, 4), 60},
        {"GPTOSS_LAUNCH_BYTES(2^31, 2^31, 4) saturates (2^64)", GPTOSS_LAUNCH_BYTES(big / 2, big / 2, 4), UINT64_MAX},
        {"GPTOSS_LAUNCH_BYTES(2^32, 2^32, 0) = 0", GPTOSS_LAUNCH_BYTES(big, big, 0), 0},
        {"GPTOSS_LAUNCH_BYTES(2^32 - 1, 2^32 - 8, 2) saturates", GPTOSS_LAUNCH_BYTES(big - 1, big - 8, 2), UINT64_MAX},
        {"ceil_div(UINT32_MAX, 2) = 2^31", gptoss_launch_ceil_div(UINT32_MAX, 2), big / 2},
        {"align_up(17, 16) = 32", gptoss_launch_align_up(17, 16), 32},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(detail, sizeof(detail), "got %llu", (unsigned long long) cases[i].actual);
        expect_true(t, cases[i].label, cases[i].actual == cases[i].expected, detail);
    }
}

int gptoss_launch_selftest(char* report, size_t report_size) {
    struct selftest t;
    memset(&t, 0, sizeof(t));
    t.report = report_size != 0 ? report : NULL;
    t.report_size = report_size;
    if (t.report != NULL) {
        t.report[0] = '\0';
    }
    if (gptoss_device_create(gptoss_device_kind_cpu, &t.device) != gptoss_status_success ||
        gptoss_command_buffer_create(t.device, &t.rejects) != gptoss_status_success) {
        say(&t, "setup: %s\n", gptoss_get_last_error_message());
        if (t.device != NULL) {
            gptoss_device_release(t.device);
        }
        return -1;
    }
    static const char* const names[] = {
        "gptoss_embeddings_bf16", "gptoss_rmsnorm", "gptoss_matvec_bf16", "gptoss_gemm_bf16", "gptoss_qkv_rope_kv16",
        "gptoss_rope_kv16", "gptoss_attention_decode_f16", "gptoss_attention_prefill_f16", "gptoss_attention_combine",
        "gptoss_router", "gptoss_moe_mlp1_swiglu_decode", "gptoss_moe_mlp2_accumulate_decode", "gptoss_moe_scatter",
        "gptoss_moe_mlp1_swiglu_prefill", "gptoss_moe_mlp2_prefill", "gptoss_moe_gather"};
    struct gptoss_function* fn[sizeof(names) / sizeof(names[0])];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        fn[i] = new_function(&t, names[i]);
        if (fn[i] == NULL) {
            say(&t, "setup: kernel %s: %s\n", names[i], gptoss_get_last_error_message());
            t.failures = -1;
        }
    }
    if (t.failures == 0) {
        const struct gptoss_dense_functions dense = {
            .matvec = fn[2], .gemm = fn[3], .rmsnorm = fn[1], .qkv_decode = fn[4], .rope_kv = fn[5]};
        const struct gptoss_attention_functions attention = {.decode = fn[6], .prefill = fn[7], .combine = fn[8]};
        struct gptoss_function* const moe[6] = {fn[10], fn[11], fn[12], fn[13], fn[14], fn[15]};
        test_helpers(&t);
        test_embeddings(&t, fn[0], fn[1]);
        test_rmsnorm(&t, fn[1], fn[0]);
        test_dense_projection(&t, &dense);
        test_unembedding(&t, &dense);
        test_qkv(&t, &dense);
        test_attention(&t, &attention);
        test_router(&t, fn[9], fn[1]);
        test_moe(&t, moe, fn[1]);
        test_sampler_encode(&t);
        say(&t, "%d checks, %d failed\n", t.checks, t.failures);
    }
    gptoss_command_buffer_release(t.rejects);
    for (size_t i = 0; i < t.num_functions; i++) {
        gptoss_function_release(t.functions[i]);
    }
    for (size_t i = 0; i < t.num_buffers; i++) {
        gptoss_buffer_release(&t.buffers[i]);
    }
    gptoss_device_release(t.device);
    gptoss_clear_error();
    return t.failures;
}
