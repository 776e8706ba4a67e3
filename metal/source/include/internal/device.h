/*
 * The internal device interface.
 *
 * Everything above it (model, context, kernel launch wrappers) is shared C code; below it are two
 * implementations with identical semantics:
 *   - device-metal.m: Apple Metal (Objective-C), a thin mechanical mapping onto MTLDevice & co.
 *   - cpu/: the CPU execution layer, which runs the same .metal kernel sources on the host CPU
 *     with Apple-GPU semantics (32-lane SIMD groups, threadgroup memory, barriers) and checks for
 *     faults a GPU would silently accept (out-of-bounds device access, divergent barriers).
 *
 * All objects belong to one device. Functions return enum gptoss_status and, on failure, record a
 * message with gptoss_set_error (see error.h). The interface is C so that both the C runtime and
 * the Objective-C / C++ implementations can include it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gptoss_device_kind {
    gptoss_device_kind_any = 0,    /* GPTOSS_DEVICE env var if set ("metal" or "cpu"), else metal if available, else cpu */
    gptoss_device_kind_cpu = 1,
    gptoss_device_kind_metal = 2,
};

struct gptoss_device;           /* reference counted */
struct gptoss_function;         /* one compute pipeline (kernel looked up by name); owned by caller */
struct gptoss_command_buffer;   /* an ordered list of dispatches; owned by caller */

struct gptoss_device_info {
    enum gptoss_device_kind kind;
    char name[128];
    uint32_t simd_width;                    /* threads per SIMD group: 32 on every Apple GPU */
    uint32_t max_threads_per_threadgroup;   /* 1024 */
    uint32_t max_threadgroup_memory;        /* bytes per threadgroup: 32768 */
    uint64_t recommended_working_set;       /* bytes the device can keep resident without paging; 0 if unknown */
    uint64_t max_buffer_length;             /* bytes of the largest single buffer (created or wrapped);
                                               UINT64_MAX if the backend has no limit */
    uint64_t physical_memory;               /* bytes of RAM of the machine; 0 if unknown */
    uint32_t num_compute_units;             /* GPU cores, or CPU worker threads */
};

/*
 * A buffer in memory shared by host and device ("shared storage"): ptr is valid on the host.
 * Passed by value-struct like the original runtime; release with gptoss_buffer_release.
 */
struct gptoss_buffer {
    struct gptoss_device* device;
    void* ptr;
    size_t size;
    void* impl;         /* backend object: id<MTLBuffer> or the CPU layer's allocation record */
};

struct gptoss_function_info {
    uint32_t max_threads_per_threadgroup;   /* for this kernel (may be below the device's) */
    uint32_t simd_width;
    uint32_t static_threadgroup_memory;     /* bytes of `threadgroup` variables declared in the kernel */
};

enum gptoss_kernel_arg_kind {
    gptoss_kernel_arg_buffer = 0,              /* [[buffer(index)]] bound to buffer + offset */
    gptoss_kernel_arg_bytes = 1,               /* [[buffer(index)]] bound to a copy of bytes[0..size) (setBytes) */
    gptoss_kernel_arg_threadgroup_memory = 2,  /* [[threadgroup(index)]] of size bytes (a multiple of 16) */
};

struct gptoss_kernel_arg {
    enum gptoss_kernel_arg_kind kind;
    uint32_t index;
    const struct gptoss_buffer* buffer;  /* buffer */
    size_t offset;                       /* buffer: byte offset into buffer */
    const void* bytes;                   /* bytes: copied when the dispatch is encoded */
    size_t size;                         /* bytes: byte count (<= 4096); threadgroup_memory: byte count */
};

/* dispatchThreadgroups:threadsPerThreadgroup: — every threadgroup is full. */
struct gptoss_dispatch {
    const struct gptoss_function* function;
    uint32_t threadgroups[3];
    uint32_t threads_per_threadgroup[3];
    size_t num_args;
    const struct gptoss_kernel_arg* args;
};

/* Device. */
enum gptoss_status gptoss_device_create(enum gptoss_device_kind kind, struct gptoss_device** device_out);
enum gptoss_status gptoss_device_retain(struct gptoss_device* device);
enum gptoss_status gptoss_device_release(struct gptoss_device* device);
void gptoss_device_get_info(const struct gptoss_device* device, struct gptoss_device_info* info_out);

/*
 * Buffers. create: size bytes, zero-filled, or a copy of data if data != NULL. create and wrap fail
 * with insufficient_resources when size exceeds info.max_buffer_length (message names both).
 */
enum gptoss_status gptoss_buffer_create(
    struct gptoss_device* device, size_t size, const void* data, struct gptoss_buffer* buffer_out);
/* wrap: use [ptr, ptr + size) in place, never copied. ptr must be page-aligned; the caller keeps
 * the memory alive until the buffer is released. Used for the memory-mapped weights. */
enum gptoss_status gptoss_buffer_wrap(
    struct gptoss_device* device, void* ptr, size_t size, struct gptoss_buffer* buffer_out);
/* Releases the buffer (no-op on a zeroed struct) and zeroes the struct. */
enum gptoss_status gptoss_buffer_release(struct gptoss_buffer* buffer);

/* Kernel functions, looked up by their MSL name. Unknown name: invalid_argument. */
enum gptoss_status gptoss_function_create(
    struct gptoss_device* device, const char* name, struct gptoss_function** function_out);
enum gptoss_status gptoss_function_release(struct gptoss_function* function);
void gptoss_function_get_info(const struct gptoss_function* function, struct gptoss_function_info* info_out);
const char* gptoss_function_get_name(const struct gptoss_function* function);

/*
 * Command buffers.
 *
 * encode validates the dispatch (threadgroup size within limits, threadgroup memory within the
 * device limit, every argument index the kernel declares bound) and records it. commit starts
 * execution; wait blocks until completion and returns the first error: device_error for a
 * kernel fault (message names the kernel, buffer index and offset), cancelled if the abort flag
 * was seen set. Dispatches execute in encoding order, each completing before the next starts.
 */
enum gptoss_status gptoss_command_buffer_create(
    struct gptoss_device* device, struct gptoss_command_buffer** command_buffer_out);
enum gptoss_status gptoss_command_buffer_encode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dispatch* dispatch);
/*
 * Optional: a flag in host memory that, once set non-zero (by any thread), makes the command
 * buffer skip its remaining dispatches; wait then returns gptoss_status_cancelled.
 */
void gptoss_command_buffer_set_abort_flag(
    struct gptoss_command_buffer* command_buffer, const volatile uint32_t* abort_flag);
enum gptoss_status gptoss_command_buffer_commit(struct gptoss_command_buffer* command_buffer);
enum gptoss_status gptoss_command_buffer_wait(struct gptoss_command_buffer* command_buffer);
enum gptoss_status gptoss_command_buffer_release(struct gptoss_command_buffer* command_buffer);

/*
 * Dispatch trace (both implementations). When the environment variable GPTOSS_TRACE names a file
 * (or is "-" for stderr), every dispatch is appended to it as one JSON line:
 *   {"kernel": name, "grid": [x,y,z], "threadgroup": [x,y,z], "buffer_bytes": n, "args": [...]}
 * Tests and benchmarks can also count in-process.
 */
struct gptoss_trace_counters {
    uint64_t dispatches;            /* dispatches executed */
    uint64_t command_buffers;       /* command buffers committed */
    uint64_t bound_buffer_bytes;    /* sum over dispatches of (buffer size - offset) of each bound buffer */
};
void gptoss_device_get_trace_counters(const struct gptoss_device* device, struct gptoss_trace_counters* counters_out);
void gptoss_device_reset_trace_counters(struct gptoss_device* device);

#ifdef __cplusplus
}  // extern "C"
#endif
