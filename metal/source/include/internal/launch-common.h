/*
 * Helpers shared by the C kernel launch wrappers (launch-*.c): argument checks with messages that
 * name the wrapper, the argument and the values at fault, kernel-argument constructors, and the one
 * way a wrapper encodes a dispatch (its args struct at [[buffer(0)]], its buffers after it).
 * Implemented in launch-common.c. Family-specific checks and geometry stay in each wrapper's file.
 *
 * Every check returns gptoss_status_success, or gptoss_status_invalid_argument after recording a
 * message with gptoss_set_error that starts with "<wrapper>: <argument> ...".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#include "internal/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most bindings (buffers and threadgroup memory) one dispatch of a wrapper may pass after its args. */
#define GPTOSS_LAUNCH_MAX_BINDINGS 15

/* Number of elements of a true array (not a pointer). */
#define GPTOSS_LAUNCH_COUNT(array) (sizeof(array) / sizeof((array)[0]))

/* Returns the status of expr from the enclosing function unless it is success. */
#define GPTOSS_LAUNCH_CHECK(expr)                              \
    do {                                                       \
        const enum gptoss_status gptoss_launch_status_ = (expr); \
        if (gptoss_launch_status_ != gptoss_status_success) {  \
            return gptoss_launch_status_;                      \
        }                                                      \
    } while (0)

/* ceil(a / b) for b > 0, without the overflow of (a + b - 1) / b. */
static inline uint32_t gptoss_launch_ceil_div(uint32_t a, uint32_t b) {
    return a / b + (a % b != 0);
}

/* x rounded up to a multiple of alignment (a power of two). */
static inline uint64_t gptoss_launch_align_up(uint64_t x, uint64_t alignment) {
    return (x + alignment - 1) & ~(alignment - 1);
}

/*
 * Bytes of a tensor: the product of the factors (element counts and the element size), or UINT64_MAX
 * when it overflows 64 bits, so that a range check fails on absurd dimensions instead of passing on a
 * wrapped-around size. GPTOSS_LAUNCH_BYTES(num_tokens, dim, sizeof(float)).
 */
uint64_t gptoss_launch_product(const uint64_t* factors, size_t num_factors);
#define GPTOSS_LAUNCH_BYTES(...) \
    gptoss_launch_product((const uint64_t[]) {__VA_ARGS__}, sizeof((const uint64_t[]) {__VA_ARGS__}) / sizeof(uint64_t))

#ifndef __cplusplus  /* C compound literals; C++ (the bindings) needs only the self-test below */
/* [[buffer(index)]] bound to buffer + offset. */
static inline struct gptoss_kernel_arg gptoss_launch_buffer_arg(
    uint32_t index, const struct gptoss_buffer* buffer, size_t offset)
{
    return (struct gptoss_kernel_arg) {.kind = gptoss_kernel_arg_buffer, .index = index, .buffer = buffer, .offset = offset};
}

/* [[threadgroup(index)]] of size bytes (a multiple of 16). */
static inline struct gptoss_kernel_arg gptoss_launch_threadgroup_memory_arg(uint32_t index, size_t size) {
    return (struct gptoss_kernel_arg) {.kind = gptoss_kernel_arg_threadgroup_memory, .index = index, .size = size};
}
#endif

/*
 * True if buffer is non-NULL, offset is a multiple of alignment and [offset, offset + bytes) lies
 * inside the buffer (computed without overflow). For wrappers with messages of their own.
 */
bool gptoss_launch_span_fits(const struct gptoss_buffer* buffer, size_t offset, size_t alignment, uint64_t bytes);

/*
 * The tensor argument `what` of `wrapper` at buffer + offset: the buffer exists (non-NULL, with
 * memory), offset is a multiple of alignment, and the buffer holds bytes bytes from offset.
 * Messages: "<wrapper>: <what> buffer is NULL", "... offset <o> is not a multiple of <a>",
 * "... needs <n> bytes at offset <o> but the buffer holds <size> bytes".
 */
enum gptoss_status gptoss_launch_check_tensor(
    const char* wrapper, const char* what, const struct gptoss_buffer* buffer, size_t offset, size_t alignment,
    uint64_t bytes);

/*
 * The function argument `what` is the kernel named expected, so a wrapper can never dispatch a
 * pipeline with another kernel's argument layout. Message: "<wrapper>: <what> is <name|NULL>,
 * expected kernel <expected>".
 */
enum gptoss_status gptoss_launch_check_function(
    const char* wrapper, const char* what, const struct gptoss_function* function, const char* expected);

/*
 * The target of a single-kernel wrapper: a command buffer to encode into ("<wrapper>: command_buffer
 * is NULL" otherwise), then gptoss_launch_check_function(wrapper, "function", function, expected).
 */
enum gptoss_status gptoss_launch_check_target(
    const char* wrapper, const struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const char* expected);

/* True if function is non-NULL and is the kernel named name. */
bool gptoss_launch_function_is(const struct gptoss_function* function, const char* name);

/* The function's kernel name, or "NULL" for a NULL function (for messages). */
const char* gptoss_launch_function_name(const struct gptoss_function* function);

/*
 * KV-cache element size of a kernel that comes in a 16-bit and a 32-bit variant named
 * `<prefix>16` and `<prefix>32`: 2 or 4, or 0 if function is NULL or not one of the two.
 */
size_t gptoss_launch_kv_element_size(const struct gptoss_function* function, const char* prefix);

/* Threads per SIMD group every kernel is written for (simd_sum over 32 lanes, lane-strided loops). */
#define GPTOSS_LAUNCH_SIMD_WIDTH 32u

/*
 * Device limits. A pipeline reports its own maxTotalThreadsPerThreadgroup (below the device's 1024
 * when the kernel needs many registers) and threadExecutionWidth; the wrappers respect both:
 *   - gptoss_launch_check_simd: the kernel's SIMD width is 32 ("<wrapper>: kernel <name> runs with
 *     <w>-lane SIMD groups on this device; the kernels are written for 32").
 *   - gptoss_launch_threads, for kernels that work with any multiple of 32 threads: the preferred
 *     count capped to the pipeline's maximum rounded down to a multiple of 32; fewer than minimum
 *     is an error naming the kernel and both numbers.
 *   - gptoss_launch_encode checks the same for kernels whose threadgroup size is fixed (by
 *     threadgroup arrays or a number of SIMD groups baked into the kernel, which then also declares
 *     [[max_total_threads_per_threadgroup(N)]] so the compiler budgets registers for N threads).
 */
enum gptoss_status gptoss_launch_check_simd(const char* wrapper, const struct gptoss_function* function);
enum gptoss_status gptoss_launch_threads(
    const char* wrapper, const struct gptoss_function* function, uint32_t preferred, uint32_t minimum,
    uint32_t* threads_out);

/*
 * Encodes one dispatch of function: a grid of groups_x x groups_y x groups_z threadgroups of
 * `threads` threads (1-D), args_size bytes of args copied to [[buffer(0)]] (setBytes), then the
 * num_bindings bindings (buffers at [[buffer(i)]], threadgroup memory at [[threadgroup(i)]]).
 * The kernel's SIMD width must be 32 and threads at most the pipeline's maximum (else an error
 * naming wrapper, the kernel and both numbers); the device's encode then validates the rest.
 * num_bindings above GPTOSS_LAUNCH_MAX_BINDINGS is an error naming wrapper.
 */
enum gptoss_status gptoss_launch_encode(
    const char* wrapper, struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    uint32_t groups_x, uint32_t groups_y, uint32_t groups_z, uint32_t threads,
    const void* args, size_t args_size, const struct gptoss_kernel_arg* bindings, size_t num_bindings);

/*
 * Calls every public launch wrapper (gptoss_encode_*, gptoss_sampler_encode) on a CPU device with
 * representative bad arguments, asserting the status and a message fragment, and with good
 * arguments that must encode (and, where cheap, run and give the expected result). Returns the
 * number of failed expectations (-1 if the self-test itself could not be set up) and writes a
 * readable report (one line per expectation, truncated to report_size) into report. launch-selftest.c.
 */
int gptoss_launch_selftest(char* report, size_t report_size);

#ifdef __cplusplus
}  // extern "C"
#endif
