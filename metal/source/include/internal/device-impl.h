/*
 * What a device backend implements below the shared device code (metal/source/device.c).
 *
 * device.c owns everything both backends share: argument validation, reference counting, the
 * recorded list of dispatches of a command buffer, the abort flag, the dispatch trace and its
 * counters. A backend (the CPU execution layer in cpu/, the Apple Metal layer later) fills a
 * struct gptoss_device_ops with thin operations. Each op returns a status and, on failure, has
 * recorded a message with gptoss_set_error on the calling thread.
 */
#pragma once

#include <stdio.h>

#include "internal/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One recorded dispatch: the caller's dispatch with every argument (and setBytes data) copied. */
struct gptoss_recorded_dispatch {
    const struct gptoss_function* function;
    uint32_t threadgroups[3];
    uint32_t threads_per_threadgroup[3];
    size_t num_args;
    struct gptoss_kernel_arg* args;   /* owned; args[i].bytes point into owned copies */
};

struct gptoss_device_ops {
    const char* backend_name;  /* "cpu" or "metal" */
    /* Frees the backend state (device->impl); called once when the last reference goes. */
    void (*device_destroy)(struct gptoss_device* device);
    /* Fill buffer->ptr and buffer->impl for `size` bytes (zeroed; or copied from data if non-NULL). */
    enum gptoss_status (*buffer_create)(struct gptoss_device* device, size_t size, const void* data,
                                        struct gptoss_buffer* buffer);
    /* Fill buffer->impl for caller memory [ptr, ptr + size) used in place. */
    enum gptoss_status (*buffer_wrap)(struct gptoss_device* device, void* ptr, size_t size,
                                      struct gptoss_buffer* buffer);
    void (*buffer_release)(struct gptoss_buffer* buffer);
    /* Look up the kernel `function->name`; fill function->impl, function->info and the declared
     * argument masks. Unknown name: gptoss_status_invalid_argument. */
    enum gptoss_status (*function_create)(struct gptoss_device* device, struct gptoss_function* function);
    void (*function_release)(struct gptoss_function* function);
    /* Start executing the recorded dispatches in order (may complete synchronously). */
    enum gptoss_status (*command_buffer_commit)(struct gptoss_command_buffer* command_buffer);
    /* Block until the committed work finished; return its status with the message recorded. */
    enum gptoss_status (*command_buffer_wait)(struct gptoss_command_buffer* command_buffer);
    void (*command_buffer_release)(struct gptoss_command_buffer* command_buffer);
};

struct gptoss_device {
    const struct gptoss_device_ops* ops;
    void* impl;                           /* backend state */
    volatile int32_t refcount;
    struct gptoss_device_info info;
    /* Trace: counters are atomically updated; trace_file is NULL unless GPTOSS_TRACE is set. */
    struct gptoss_trace_counters counters;
    FILE* trace_file;
    bool trace_file_owned;                /* false for stderr */
};

struct gptoss_function {
    struct gptoss_device* device;
    void* impl;
    char name[128];
    struct gptoss_function_info info;
    /* Argument indices the kernel declares; encode checks each is bound. 0 if the backend cannot tell. */
    uint64_t declared_buffer_mask;        /* bit i: [[buffer(i)]] */
    uint64_t declared_threadgroup_mask;   /* bit i: [[threadgroup(i)]] */
};

enum gptoss_command_buffer_state {
    gptoss_command_buffer_state_recording = 0,
    gptoss_command_buffer_state_committed = 1,
    gptoss_command_buffer_state_completed = 2,
};

struct gptoss_command_buffer {
    struct gptoss_device* device;
    void* impl;
    enum gptoss_command_buffer_state state;
    struct gptoss_recorded_dispatch* dispatches;
    size_t num_dispatches;
    size_t capacity;
    const volatile uint32_t* abort_flag;
    enum gptoss_status status;            /* result, valid once completed */
};

/* Backend constructors: fill device->ops, device->impl and device->info. */
enum gptoss_status gptoss_cpu_device_init(struct gptoss_device* device);
#ifdef GPTOSS_WITH_METAL
enum gptoss_status gptoss_metal_device_init(struct gptoss_device* device);
#endif

/* Largest setBytes argument, as Metal documents for setBytes:length:atIndex:. */
#define GPTOSS_MAX_BYTES_ARGUMENT 4096

#ifdef __cplusplus
}  // extern "C"
#endif
