/*
 * The device interface (internal/device.h), shared by every backend: validation, reference
 * counting, recorded dispatches, abort flag, dispatch trace and counters. Backends implement the
 * thin operations of internal/device-impl.h.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <gpt-oss.h>

#include "internal/device-impl.h"
#include "internal/error.h"

/* Metal's limits on argument table indices (buffers: 31, threadgroup memory: 31). */
#define GPTOSS_MAX_ARGUMENT_INDEX 31

#ifndef GPTOSS_WITH_METAL  /* only the no-Metal message names the kind (unused, -Wunused-function, otherwise) */
static const char* device_kind_name(enum gptoss_device_kind kind) {
    switch (kind) {
        case gptoss_device_kind_any: return "any";
        case gptoss_device_kind_cpu: return "cpu";
        case gptoss_device_kind_metal: return "metal";
    }
    return "unknown";
}
#endif

static enum gptoss_status resolve_device_kind(enum gptoss_device_kind requested, enum gptoss_device_kind* kind_out) {
    if (requested == gptoss_device_kind_any) {
        const char* env = getenv("GPTOSS_DEVICE");
        if (env != NULL && env[0] != '\0') {
            if (strcmp(env, "cpu") == 0) {
                requested = gptoss_device_kind_cpu;
            } else if (strcmp(env, "metal") == 0) {
                requested = gptoss_device_kind_metal;
            } else {
                return gptoss_set_error(gptoss_status_invalid_argument,
                    "GPTOSS_DEVICE=%s: expected \"cpu\" or \"metal\"", env);
            }
        } else {
#ifdef GPTOSS_WITH_METAL
            requested = gptoss_device_kind_metal;
#else
            requested = gptoss_device_kind_cpu;
#endif
        }
    }
    if (requested != gptoss_device_kind_cpu && requested != gptoss_device_kind_metal) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_device_create: unknown device kind %d", (int) requested);
    }
    *kind_out = requested;
    return gptoss_status_success;
}

static void open_trace_file(struct gptoss_device* device) {
    const char* path = getenv("GPTOSS_TRACE");
    if (path == NULL || path[0] == '\0') {
        return;
    }
    if (strcmp(path, "-") == 0) {
        device->trace_file = stderr;
        device->trace_file_owned = false;
        return;
    }
    device->trace_file = fopen(path, "a");
    if (device->trace_file == NULL) {
        /* Tracing is a debugging aid: a bad path must not stop inference, but say so once. */
        fprintf(stderr, "gpt-oss: GPTOSS_TRACE=%s cannot be opened for appending; dispatch trace disabled\n", path);
        return;
    }
    device->trace_file_owned = true;
}

enum gptoss_status gptoss_device_create(enum gptoss_device_kind kind, struct gptoss_device** device_out) {
    if (device_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_device_create: device_out is NULL");
    }
    *device_out = NULL;
    enum gptoss_device_kind resolved;
    enum gptoss_status status = resolve_device_kind(kind, &resolved);
    if (status != gptoss_status_success) {
        return status;
    }
    struct gptoss_device* device = calloc(1, sizeof(struct gptoss_device));
    if (device == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_device_create: out of memory");
    }
    device->refcount = 1;
    if (resolved == gptoss_device_kind_cpu) {
        status = gptoss_cpu_device_init(device);
    } else {
#ifdef GPTOSS_WITH_METAL
        status = gptoss_metal_device_init(device);
#else
        status = gptoss_set_error(gptoss_status_unsupported_system,
            "gptoss_device_create: the %s device was requested but this build has no Apple Metal layer "
            "(use GPTOSS_DEVICE=cpu or build on Apple Silicon macOS)", device_kind_name(resolved));
#endif
    }
    if (status != gptoss_status_success) {
        free(device);
        return status;
    }
    open_trace_file(device);
    *device_out = device;
    return gptoss_status_success;
}

enum gptoss_status gptoss_device_retain(struct gptoss_device* device) {
    if (device == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_device_retain: device is NULL");
    }
    __atomic_add_fetch(&device->refcount, 1, __ATOMIC_RELAXED);
    return gptoss_status_success;
}

enum gptoss_status gptoss_device_release(struct gptoss_device* device) {
    if (device == NULL) {
        return gptoss_status_success;
    }
    if (__atomic_sub_fetch(&device->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        device->ops->device_destroy(device);
        if (device->trace_file != NULL && device->trace_file_owned) {
            fclose(device->trace_file);
        }
        free(device);
    }
    return gptoss_status_success;
}

void gptoss_device_get_info(const struct gptoss_device* device, struct gptoss_device_info* info_out) {
    *info_out = device->info;
}

/* ---- Buffers ---- */

static double gib(uint64_t bytes) {
    return (double) bytes / (double) (UINT64_C(1) << 30);
}

/* insufficient_resources if size exceeds the device's largest buffer (MTLDevice.maxBufferLength). */
static enum gptoss_status check_buffer_length(const struct gptoss_device* device, const char* function, size_t size) {
    const uint64_t limit = device->info.max_buffer_length;
    if ((uint64_t) size > limit) {
        return gptoss_set_error(gptoss_status_insufficient_resources,
            "%s: a buffer of %zu bytes (%.2f GiB) exceeds the device's maximum buffer length of %" PRIu64
            " bytes (%.2f GiB) on %s", function, size, gib(size), limit, gib(limit), device->info.name);
    }
    return gptoss_status_success;
}

enum gptoss_status gptoss_buffer_create(
    struct gptoss_device* device, size_t size, const void* data, struct gptoss_buffer* buffer_out)
{
    if (buffer_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_buffer_create: buffer_out is NULL");
    }
    memset(buffer_out, 0, sizeof(*buffer_out));
    if (device == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_buffer_create: device is NULL");
    }
    enum gptoss_status status = check_buffer_length(device, "gptoss_buffer_create", size);
    if (status != gptoss_status_success) {
        return status;
    }
    status = device->ops->buffer_create(device, size, data, buffer_out);
    if (status != gptoss_status_success) {
        memset(buffer_out, 0, sizeof(*buffer_out));
        return status;
    }
    buffer_out->device = device;
    buffer_out->size = size;
    gptoss_device_retain(device);
    return gptoss_status_success;
}

enum gptoss_status gptoss_buffer_wrap(
    struct gptoss_device* device, void* ptr, size_t size, struct gptoss_buffer* buffer_out)
{
    if (buffer_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_buffer_wrap: buffer_out is NULL");
    }
    memset(buffer_out, 0, sizeof(*buffer_out));
    if (device == NULL || ptr == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_buffer_wrap: %s is NULL", device == NULL ? "device" : "ptr");
    }
    /* Metal's newBufferWithBytesNoCopy requires page alignment; enforce it on every backend. */
    if (((uintptr_t) ptr) % 4096 != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_buffer_wrap: pointer %p is not page-aligned (4096 bytes)", ptr);
    }
    enum gptoss_status status = check_buffer_length(device, "gptoss_buffer_wrap", size);
    if (status != gptoss_status_success) {
        return status;
    }
    status = device->ops->buffer_wrap(device, ptr, size, buffer_out);
    if (status != gptoss_status_success) {
        memset(buffer_out, 0, sizeof(*buffer_out));
        return status;
    }
    buffer_out->device = device;
    buffer_out->ptr = ptr;
    buffer_out->size = size;
    gptoss_device_retain(device);
    return gptoss_status_success;
}

enum gptoss_status gptoss_buffer_release(struct gptoss_buffer* buffer) {
    if (buffer == NULL || buffer->device == NULL) {
        if (buffer != NULL) {
            memset(buffer, 0, sizeof(*buffer));
        }
        return gptoss_status_success;
    }
    struct gptoss_device* device = buffer->device;
    device->ops->buffer_release(buffer);
    memset(buffer, 0, sizeof(*buffer));
    gptoss_device_release(device);
    return gptoss_status_success;
}

/* ---- Functions ---- */

enum gptoss_status gptoss_function_create(
    struct gptoss_device* device, const char* name, struct gptoss_function** function_out)
{
    if (function_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_function_create: function_out is NULL");
    }
    *function_out = NULL;
    if (device == NULL || name == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_function_create: %s is NULL", device == NULL ? "device" : "name");
    }
    struct gptoss_function* function = calloc(1, sizeof(struct gptoss_function));
    if (function == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_function_create: out of memory");
    }
    if (strlen(name) >= sizeof(function->name)) {
        free(function);
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_function_create: kernel name '%.64s...' is too long", name);
    }
    strcpy(function->name, name);
    function->device = device;
    enum gptoss_status status = device->ops->function_create(device, function);
    if (status != gptoss_status_success) {
        free(function);
        return status;
    }
    gptoss_device_retain(device);
    *function_out = function;
    return gptoss_status_success;
}

enum gptoss_status gptoss_function_release(struct gptoss_function* function) {
    if (function == NULL) {
        return gptoss_status_success;
    }
    struct gptoss_device* device = function->device;
    device->ops->function_release(function);
    free(function);
    gptoss_device_release(device);
    return gptoss_status_success;
}

void gptoss_function_get_info(const struct gptoss_function* function, struct gptoss_function_info* info_out) {
    *info_out = function->info;
}

const char* gptoss_function_get_name(const struct gptoss_function* function) {
    return function->name;
}

/* ---- Command buffers ---- */

enum gptoss_status gptoss_command_buffer_create(
    struct gptoss_device* device, struct gptoss_command_buffer** command_buffer_out)
{
    if (command_buffer_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_create: command_buffer_out is NULL");
    }
    *command_buffer_out = NULL;
    if (device == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_create: device is NULL");
    }
    struct gptoss_command_buffer* command_buffer = calloc(1, sizeof(struct gptoss_command_buffer));
    if (command_buffer == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_command_buffer_create: out of memory");
    }
    command_buffer->device = device;
    gptoss_device_retain(device);
    *command_buffer_out = command_buffer;
    return gptoss_status_success;
}

static enum gptoss_status validate_dispatch(
    const struct gptoss_command_buffer* command_buffer, const struct gptoss_dispatch* dispatch)
{
    const struct gptoss_device* device = command_buffer->device;
    const struct gptoss_function* function = dispatch->function;
    if (function == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_encode: dispatch.function is NULL");
    }
    const char* name = function->name;
    if (function->device != device) {
        return gptoss_set_error(gptoss_status_invalid_argument, "encode %s: the function belongs to another device", name);
    }
    uint64_t threads = 1;
    for (int d = 0; d < 3; d++) {
        if (dispatch->threads_per_threadgroup[d] == 0) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "encode %s: threads_per_threadgroup[%d] is 0", name, d);
        }
        threads *= dispatch->threads_per_threadgroup[d];
    }
    if (threads > function->info.max_threads_per_threadgroup) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "encode %s: %" PRIu64 " threads per threadgroup (%u x %u x %u) exceed the kernel's maximum of %u",
            name, threads, dispatch->threads_per_threadgroup[0], dispatch->threads_per_threadgroup[1],
            dispatch->threads_per_threadgroup[2], function->info.max_threads_per_threadgroup);
    }
    if (dispatch->num_args != 0 && dispatch->args == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "encode %s: num_args is %zu but args is NULL", name, dispatch->num_args);
    }
    uint64_t bound_buffers = 0, bound_threadgroup = 0;
    uint64_t threadgroup_bytes = function->info.static_threadgroup_memory;
    for (size_t i = 0; i < dispatch->num_args; i++) {
        const struct gptoss_kernel_arg* arg = &dispatch->args[i];
        if (arg->index >= GPTOSS_MAX_ARGUMENT_INDEX) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "encode %s: args[%zu].index %u is beyond the argument table (max %d)", name, i, arg->index, GPTOSS_MAX_ARGUMENT_INDEX - 1);
        }
        const uint64_t bit = UINT64_C(1) << arg->index;
        switch (arg->kind) {
            case gptoss_kernel_arg_buffer:
                if (arg->buffer == NULL || arg->buffer->device == NULL) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: buffer(%u) is bound to a NULL or released buffer", name, arg->index);
                }
                if (arg->buffer->device != device) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: buffer(%u) belongs to another device", name, arg->index);
                }
                if (arg->offset > arg->buffer->size) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: buffer(%u) offset %zu is beyond the buffer's %zu bytes", name, arg->index, arg->offset, arg->buffer->size);
                }
                break;
            case gptoss_kernel_arg_bytes:
                if (arg->size == 0 || arg->size > GPTOSS_MAX_BYTES_ARGUMENT || arg->bytes == NULL) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: buffer(%u) bytes argument of %zu bytes (must be 1..%d bytes, non-NULL)",
                        name, arg->index, arg->size, GPTOSS_MAX_BYTES_ARGUMENT);
                }
                break;
            case gptoss_kernel_arg_threadgroup_memory:
                if (arg->size == 0 || arg->size % 16 != 0) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: threadgroup(%u) size %zu is not a positive multiple of 16 bytes", name, arg->index, arg->size);
                }
                if (bound_threadgroup & bit) {
                    return gptoss_set_error(gptoss_status_invalid_argument,
                        "encode %s: threadgroup(%u) is bound twice", name, arg->index);
                }
                bound_threadgroup |= bit;
                threadgroup_bytes += arg->size;
                continue;
            default:
                return gptoss_set_error(gptoss_status_invalid_argument,
                    "encode %s: args[%zu] has unknown kind %d", name, i, (int) arg->kind);
        }
        if (bound_buffers & bit) {
            return gptoss_set_error(gptoss_status_invalid_argument, "encode %s: buffer(%u) is bound twice", name, arg->index);
        }
        bound_buffers |= bit;
    }
    if (threadgroup_bytes > device->info.max_threadgroup_memory) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "encode %s: %" PRIu64 " bytes of threadgroup memory (%u static + bound) exceed the device maximum of %u",
            name, threadgroup_bytes, function->info.static_threadgroup_memory, device->info.max_threadgroup_memory);
    }
    const uint64_t missing_buffers = function->declared_buffer_mask & ~bound_buffers;
    if (missing_buffers != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "encode %s: the kernel's [[buffer(%d)]] argument is not bound", name, __builtin_ctzll(missing_buffers));
    }
    const uint64_t missing_threadgroup = function->declared_threadgroup_mask & ~bound_threadgroup;
    if (missing_threadgroup != 0) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "encode %s: the kernel's [[threadgroup(%d)]] argument is not bound", name, __builtin_ctzll(missing_threadgroup));
    }
    return gptoss_status_success;
}

enum gptoss_status gptoss_command_buffer_encode(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_dispatch* dispatch)
{
    if (command_buffer == NULL || dispatch == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_encode: %s is NULL",
                                command_buffer == NULL ? "command_buffer" : "dispatch");
    }
    if (command_buffer->state != gptoss_command_buffer_state_recording) {
        return gptoss_set_error(gptoss_status_invalid_state, "gptoss_command_buffer_encode: the command buffer was already committed");
    }
    enum gptoss_status status = validate_dispatch(command_buffer, dispatch);
    if (status != gptoss_status_success) {
        return status;
    }
    if (command_buffer->num_dispatches == command_buffer->capacity) {
        const size_t capacity = command_buffer->capacity == 0 ? 16 : command_buffer->capacity * 2;
        struct gptoss_recorded_dispatch* grown = realloc(command_buffer->dispatches, capacity * sizeof(*grown));
        if (grown == NULL) {
            return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_command_buffer_encode: out of memory");
        }
        command_buffer->dispatches = grown;
        command_buffer->capacity = capacity;
    }
    /* One allocation holds the argument records followed by copies of every setBytes payload. */
    size_t bytes_total = 0;
    for (size_t i = 0; i < dispatch->num_args; i++) {
        if (dispatch->args[i].kind == gptoss_kernel_arg_bytes) {
            bytes_total += (dispatch->args[i].size + 15) & ~(size_t) 15;
        }
    }
    const size_t args_size = (dispatch->num_args * sizeof(struct gptoss_kernel_arg) + 15) & ~(size_t) 15;
    char* storage = malloc(args_size + bytes_total + 1);
    if (storage == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_command_buffer_encode: out of memory");
    }
    struct gptoss_kernel_arg* args = (struct gptoss_kernel_arg*) storage;
    char* bytes_cursor = storage + args_size;
    for (size_t i = 0; i < dispatch->num_args; i++) {
        args[i] = dispatch->args[i];
        if (args[i].kind == gptoss_kernel_arg_bytes) {
            memcpy(bytes_cursor, dispatch->args[i].bytes, args[i].size);
            args[i].bytes = bytes_cursor;
            bytes_cursor += (args[i].size + 15) & ~(size_t) 15;
        }
    }
    struct gptoss_recorded_dispatch* recorded = &command_buffer->dispatches[command_buffer->num_dispatches++];
    recorded->function = dispatch->function;
    memcpy(recorded->threadgroups, dispatch->threadgroups, sizeof(recorded->threadgroups));
    memcpy(recorded->threads_per_threadgroup, dispatch->threads_per_threadgroup, sizeof(recorded->threads_per_threadgroup));
    recorded->num_args = dispatch->num_args;
    recorded->args = args;
    return gptoss_status_success;
}

void gptoss_command_buffer_set_abort_flag(
    struct gptoss_command_buffer* command_buffer, const volatile uint32_t* abort_flag)
{
    if (command_buffer != NULL) {
        command_buffer->abort_flag = abort_flag;
    }
}

static uint64_t dispatch_bound_bytes(const struct gptoss_recorded_dispatch* dispatch) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < dispatch->num_args; i++) {
        if (dispatch->args[i].kind == gptoss_kernel_arg_buffer) {
            bytes += dispatch->args[i].buffer->size - dispatch->args[i].offset;
        }
    }
    return bytes;
}

static void trace_dispatch(FILE* file, const struct gptoss_recorded_dispatch* dispatch, uint64_t bound_bytes) {
    /* Kernel names are MSL identifiers: no JSON escaping needed. */
    fprintf(file, "{\"kernel\": \"%s\", \"grid\": [%u, %u, %u], \"threadgroup\": [%u, %u, %u], \"buffer_bytes\": %" PRIu64 ", \"args\": [",
        dispatch->function->name, dispatch->threadgroups[0], dispatch->threadgroups[1], dispatch->threadgroups[2],
        dispatch->threads_per_threadgroup[0], dispatch->threads_per_threadgroup[1], dispatch->threads_per_threadgroup[2],
        bound_bytes);
    for (size_t i = 0; i < dispatch->num_args; i++) {
        const struct gptoss_kernel_arg* arg = &dispatch->args[i];
        const char* separator = i == 0 ? "" : ", ";
        switch (arg->kind) {
            case gptoss_kernel_arg_buffer:
                fprintf(file, "%s{\"buffer\": %u, \"offset\": %zu, \"size\": %zu}", separator, arg->index, arg->offset,
                        arg->buffer->size - arg->offset);
                break;
            case gptoss_kernel_arg_bytes:
                fprintf(file, "%s{\"bytes\": %u, \"size\": %zu}", separator, arg->index, arg->size);
                break;
            case gptoss_kernel_arg_threadgroup_memory:
                fprintf(file, "%s{\"threadgroup\": %u, \"size\": %zu}", separator, arg->index, arg->size);
                break;
        }
    }
    fputs("]}\n", file);
}

enum gptoss_status gptoss_command_buffer_commit(struct gptoss_command_buffer* command_buffer) {
    if (command_buffer == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_commit: command_buffer is NULL");
    }
    if (command_buffer->state != gptoss_command_buffer_state_recording) {
        return gptoss_set_error(gptoss_status_invalid_state, "gptoss_command_buffer_commit: the command buffer was already committed");
    }
    struct gptoss_device* device = command_buffer->device;
    uint64_t bound_bytes_total = 0;
    for (size_t i = 0; i < command_buffer->num_dispatches; i++) {
        const uint64_t bound_bytes = dispatch_bound_bytes(&command_buffer->dispatches[i]);
        bound_bytes_total += bound_bytes;
        if (device->trace_file != NULL) {
            trace_dispatch(device->trace_file, &command_buffer->dispatches[i], bound_bytes);
        }
    }
    if (device->trace_file != NULL) {
        fflush(device->trace_file);
    }
    __atomic_add_fetch(&device->counters.command_buffers, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&device->counters.dispatches, (uint64_t) command_buffer->num_dispatches, __ATOMIC_RELAXED);
    __atomic_add_fetch(&device->counters.bound_buffer_bytes, bound_bytes_total, __ATOMIC_RELAXED);
    command_buffer->state = gptoss_command_buffer_state_committed;
    return device->ops->command_buffer_commit(command_buffer);
}

enum gptoss_status gptoss_command_buffer_wait(struct gptoss_command_buffer* command_buffer) {
    if (command_buffer == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_command_buffer_wait: command_buffer is NULL");
    }
    if (command_buffer->state == gptoss_command_buffer_state_recording) {
        return gptoss_set_error(gptoss_status_invalid_state, "gptoss_command_buffer_wait: the command buffer was not committed");
    }
    return command_buffer->device->ops->command_buffer_wait(command_buffer);
}

enum gptoss_status gptoss_command_buffer_release(struct gptoss_command_buffer* command_buffer) {
    if (command_buffer == NULL) {
        return gptoss_status_success;
    }
    struct gptoss_device* device = command_buffer->device;
    if (command_buffer->impl != NULL) {
        device->ops->command_buffer_release(command_buffer);
    }
    for (size_t i = 0; i < command_buffer->num_dispatches; i++) {
        free(command_buffer->dispatches[i].args);
    }
    free(command_buffer->dispatches);
    free(command_buffer);
    gptoss_device_release(device);
    return gptoss_status_success;
}

void gptoss_device_get_trace_counters(const struct gptoss_device* device, struct gptoss_trace_counters* counters_out) {
    counters_out->dispatches = __atomic_load_n(&device->counters.dispatches, __ATOMIC_RELAXED);
    counters_out->command_buffers = __atomic_load_n(&device->counters.command_buffers, __ATOMIC_RELAXED);
    counters_out->bound_buffer_bytes = __atomic_load_n(&device->counters.bound_buffer_bytes, __ATOMIC_RELAXED);
}

void gptoss_device_reset_trace_counters(struct gptoss_device* device) {
    __atomic_store_n(&device->counters.dispatches, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&device->counters.command_buffers, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&device->counters.bound_buffer_bytes, 0, __ATOMIC_RELAXED);
}
