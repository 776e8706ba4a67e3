/* Helpers shared by the kernel launch wrappers; see internal/launch-common.h. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/launch-common.h"

bool gptoss_launch_span_fits(const struct gptoss_buffer* buffer, size_t offset, size_t alignment, uint64_t bytes) {
    /* bytes is compared with the room after offset, so offset + bytes is never formed (no overflow). */
    return buffer != NULL && offset % alignment == 0 && offset <= buffer->size && bytes <= buffer->size - offset;
}

uint64_t gptoss_launch_product(const uint64_t* factors, size_t num_factors) {
    uint64_t product = 1;
    for (size_t i = 0; i < num_factors; i++) {
        if (factors[i] != 0 && product > UINT64_MAX / factors[i]) {
            /* Saturate, unless a later factor is 0 (an empty tensor needs no bytes). */
            for (size_t j = i + 1; j < num_factors; j++) {
                if (factors[j] == 0) {
                    return 0;
                }
            }
            return UINT64_MAX;
        }
        product *= factors[i];
    }
    return product;
}

enum gptoss_status gptoss_launch_check_tensor(
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
    if (!gptoss_launch_span_fits(buffer, offset, alignment, bytes)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
                                "%s: %s needs %llu bytes at offset %zu but the buffer holds %zu bytes", wrapper, what,
                                (unsigned long long) bytes, offset, buffer->size);
    }
    return gptoss_status_success;
}

const char* gptoss_launch_function_name(const struct gptoss_function* function) {
    const char* name = function == NULL ? NULL : gptoss_function_get_name(function);
    return name == NULL ? "NULL" : name;
}

bool gptoss_launch_function_is(const struct gptoss_function* function, const char* name) {
    const char* actual = function == NULL ? NULL : gptoss_function_get_name(function);
    return actual != NULL && strcmp(actual, name) == 0;
}

enum gptoss_status gptoss_launch_check_function(
    const char* wrapper, const char* what, const struct gptoss_function* function, const char* expected)
{
    if (!gptoss_launch_function_is(function, expected)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s is %s, expected kernel %s", wrapper, what,
                                gptoss_launch_function_name(function), expected);
    }
    return gptoss_status_success;
}

enum gptoss_status gptoss_launch_check_target(
    const char* wrapper, const struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    const char* expected)
{
    if (command_buffer == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: command_buffer is NULL", wrapper);
    }
    return gptoss_launch_check_function(wrapper, "function", function, expected);
}

size_t gptoss_launch_kv_element_size(const struct gptoss_function* function, const char* prefix) {
    const char* name = function == NULL ? NULL : gptoss_function_get_name(function);
    const size_t n = strlen(prefix);
    if (name == NULL || strncmp(name, prefix, n) != 0) {
        return 0;
    }
    return strcmp(name + n, "16") == 0 ? 2 : strcmp(name + n, "32") == 0 ? 4 : 0;
}

enum gptoss_status gptoss_launch_check_simd(const char* wrapper, const struct gptoss_function* function) {
    if (function == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: function is NULL", wrapper);
    }
    struct gptoss_function_info info;
    gptoss_function_get_info(function, &info);
    if (info.simd_width != GPTOSS_LAUNCH_SIMD_WIDTH) {
        return gptoss_set_error(gptoss_status_unsupported_system,
            "%s: kernel %s runs with %u-lane SIMD groups on this device (threadExecutionWidth); the kernels are "
            "written for %u-lane SIMD groups", wrapper, gptoss_launch_function_name(function), info.simd_width,
            GPTOSS_LAUNCH_SIMD_WIDTH);
    }
    return gptoss_status_success;
}

enum gptoss_status gptoss_launch_threads(
    const char* wrapper, const struct gptoss_function* function, uint32_t preferred, uint32_t minimum,
    uint32_t* threads_out)
{
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_simd(wrapper, function));
    struct gptoss_function_info info;
    gptoss_function_get_info(function, &info);
    const uint32_t limit = info.max_threads_per_threadgroup / GPTOSS_LAUNCH_SIMD_WIDTH * GPTOSS_LAUNCH_SIMD_WIDTH;
    const uint32_t threads = preferred < limit ? preferred : limit;
    if (threads < minimum || threads == 0) {
        return gptoss_set_error(gptoss_status_unsupported_system,
            "%s: kernel %s needs at least %u threads per threadgroup but its pipeline allows at most %u on this device",
            wrapper, gptoss_launch_function_name(function), minimum, info.max_threads_per_threadgroup);
    }
    *threads_out = threads;
    return gptoss_status_success;
}

enum gptoss_status gptoss_launch_encode(
    const char* wrapper, struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    uint32_t groups_x, uint32_t groups_y, uint32_t groups_z, uint32_t threads,
    const void* args, size_t args_size, const struct gptoss_kernel_arg* bindings, size_t num_bindings)
{
    if (num_bindings > GPTOSS_LAUNCH_MAX_BINDINGS) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %zu bindings exceed the launch limit of %d",
                                wrapper, num_bindings, GPTOSS_LAUNCH_MAX_BINDINGS);
    }
    GPTOSS_LAUNCH_CHECK(gptoss_launch_check_simd(wrapper, function));
    struct gptoss_function_info info;
    gptoss_function_get_info(function, &info);
    if (threads > info.max_threads_per_threadgroup) {
        /* Wrappers of adaptable kernels chose threads with gptoss_launch_threads: this size is fixed. */
        return gptoss_set_error(gptoss_status_unsupported_system,
            "%s: kernel %s needs %u threads per threadgroup (fixed by the kernel) but its pipeline allows at most %u "
            "on this device", wrapper, gptoss_launch_function_name(function), threads,
            info.max_threads_per_threadgroup);
    }
    struct gptoss_kernel_arg bound[GPTOSS_LAUNCH_MAX_BINDINGS + 1];
    bound[0] = (struct gptoss_kernel_arg) {.kind = gptoss_kernel_arg_bytes, .index = 0, .bytes = args,
        .size = args_size};
    for (size_t i = 0; i < num_bindings; i++) {
        bound[i + 1] = bindings[i];
    }
    const struct gptoss_dispatch dispatch = {
        .function = function,
        .threadgroups = {groups_x, groups_y, groups_z},
        .threads_per_threadgroup = {threads, 1, 1},
        .num_args = num_bindings + 1,
        .args = bound,
    };
    return gptoss_command_buffer_encode(command_buffer, &dispatch);
}
