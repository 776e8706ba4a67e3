/*
 * The Apple Metal backend of the device interface: a thin, mechanical mapping of the ops of
 * internal/device-impl.h onto MTLDevice & co. Validation, reference counting, recorded dispatches,
 * the abort flag and the trace live in device.c; nothing here duplicates them.
 *
 * Memory management: ARC (-fobjc-arc, enforced below). Metal objects handed to C structs
 * (buffer->impl, function->impl, command buffer state) are retained with CFBridgingRetain and
 * released with CFBridgingRelease. Every op runs in an @autoreleasepool: the callers are C/Python
 * threads without a pool, and commandBuffer/computeCommandEncoder/NSError return autoreleased objects.
 *
 * Every Metal/Foundation call was checked against Apple's documentation (developer.apple.com,
 * Metal framework reference); the non-obvious requirements are noted where they are used.
 */
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gpt-oss.h>

#include "embedded-metal-library.h"
#include "internal/device-impl.h"
#include "internal/error.h"

#if !__has_feature(objc_arc)
#error "device-metal.m is written for ARC: compile it with -fobjc-arc"
#endif

/* Backend state of one gptoss_device (device->impl). */
@interface GptossMetalDevice : NSObject
@property(nonatomic, strong) id<MTLDevice> device;
/* One queue for the device. Apple: command buffers may be created from one queue on several
 * threads; one command buffer must not be encoded from two threads (each commit encodes its own). */
@property(nonatomic, strong) id<MTLCommandQueue> queue;
/* One entry per embedded library (gptoss_embedded_metal_libraries): id<MTLLibrary> once loaded, or NSNull. */
@property(nonatomic, strong) NSMutableArray* libraries;
@end

@implementation GptossMetalDevice
@end

/* Backend state of one committed command buffer (command_buffer->impl). */
struct metal_command_buffer {
    void* command_buffer;          /* CFBridgingRetain'ed id<MTLCommandBuffer>; NULL if nothing was committed */
    enum gptoss_status status;     /* cancelled before commit, or the result once waited */
    char message[256];
};

static GptossMetalDevice* device_state(const struct gptoss_device* device) {
    return (__bridge GptossMetalDevice*) device->impl;
}

static const char* describe(NSError* error) {
    return error != nil ? error.localizedDescription.UTF8String : "no error description";
}

static double gib(uint64_t bytes) {
    return (double) bytes / (double) (UINT64_C(1) << 30);
}

/* ---- Device ---- */

static void metal_device_destroy(struct gptoss_device* device) {
    @autoreleasepool {
        GptossMetalDevice* state = CFBridgingRelease(device->impl);
        (void) state;  /* released at the end of this scope */
        device->impl = NULL;
    }
}

/* ---- Buffers ---- */

static enum gptoss_status metal_buffer_create(struct gptoss_device* device, size_t size, const void* data,
                                              struct gptoss_buffer* buffer)
{
    @autoreleasepool {
        GptossMetalDevice* state = device_state(device);
        /* Never zero bytes (like the CPU layer), so contents is always a valid pointer. */
        const size_t length = size == 0 ? 16 : size;
        /* No refusal at recommendedMaxWorkingSetSize: Metal runs beyond it (paging); model.c warns
         * at load. device.c checked size against maxBufferLength. */
        /* Apple: newBufferWithLength:options: "creates a buffer the method clears with zero values";
         * newBufferWithBytes:length:options: copies length bytes. Shared storage: the CPU pointer
         * (contents) and the GPU see the same memory on Apple silicon. */
        id<MTLBuffer> mtl_buffer = data != NULL && size != 0
            ? [state.device newBufferWithBytes:data length:length options:MTLResourceStorageModeShared]
            : [state.device newBufferWithLength:length options:MTLResourceStorageModeShared];
        if (mtl_buffer == nil) {
            return gptoss_set_error(gptoss_status_insufficient_resources,
                "gptoss_buffer_create: Metal could not allocate a %zu-byte shared buffer on %s", size,
                state.device.name.UTF8String);
        }
        buffer->ptr = mtl_buffer.contents;
        buffer->impl = (void*) CFBridgingRetain(mtl_buffer);
        return gptoss_status_success;
    }
}

static enum gptoss_status metal_buffer_wrap(struct gptoss_device* device, void* ptr, size_t size,
                                            struct gptoss_buffer* buffer)
{
    @autoreleasepool {
        GptossMetalDevice* state = device_state(device);
        /* Apple, newBufferWithBytesNoCopy:length:options:deallocator: "a page-aligned pointer" and a
         * length "that results in a page-aligned region of memory". The VM page is 16 KiB on Apple
         * silicon; device.c only checks 4 KiB (common to every backend), so check the real page here. */
        const size_t page = (size_t) getpagesize();
        if (((uintptr_t) ptr) % page != 0) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_buffer_wrap: pointer %p is not aligned to the %zu-byte VM page that Metal requires", ptr, page);
        }
        if (size == 0) {
            /* Nothing of the caller's memory to share; a tiny buffer of our own keeps impl valid. */
            return metal_buffer_create(device, 0, NULL, buffer);
        }
        /* Rounding up stays inside the caller's mapping: [ptr, ptr + size) lies in mapped pages, and
         * a mapping always covers whole pages. The extra bytes are never part of buffer->size. */
        if (size > SIZE_MAX - page) {
            return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_buffer_wrap: size %zu is too large", size);
        }
        const size_t length = (size + page - 1) / page * page;
        /* device.c checked size; the page rounding must not push the MTLBuffer past the limit either. */
        if ((uint64_t) length > (uint64_t) state.device.maxBufferLength) {
            return gptoss_set_error(gptoss_status_insufficient_resources,
                "gptoss_buffer_wrap: %zu bytes (%.2f GiB, page-rounded) exceed the maximum buffer length of %.2f GiB on %s",
                length, gib(length), gib(state.device.maxBufferLength), state.device.name.UTF8String);
        }
        /* deallocator nil: the caller owns the memory and keeps it alive until the buffer is released. */
        id<MTLBuffer> mtl_buffer = [state.device newBufferWithBytesNoCopy:ptr length:length
                                                                  options:MTLResourceStorageModeShared
                                                              deallocator:nil];
        if (mtl_buffer == nil) {
            return gptoss_set_error(gptoss_status_insufficient_resources,
                "gptoss_buffer_wrap: Metal could not wrap %zu bytes at %p without copying", length, ptr);
        }
        buffer->impl = (void*) CFBridgingRetain(mtl_buffer);
        return gptoss_status_success;
    }
}

static void metal_buffer_release(struct gptoss_buffer* buffer) {
    @autoreleasepool {
        if (buffer->impl == NULL) {
            return;
        }
        CFBridgingRelease(buffer->impl);
        buffer->impl = NULL;
    }
}

/* ---- Functions ---- */

/* The embedded library defining `name`, or -1. */
static long find_library(const char* name) {
    for (size_t i = 0; i < gptoss_embedded_metal_library_count; i++) {
        for (const char* const* kernel = gptoss_embedded_metal_libraries[i].kernel_names; *kernel != NULL; kernel++) {
            if (strcmp(*kernel, name) == 0) {
                return (long) i;
            }
        }
    }
    return -1;
}

/* Loads (metallib) or compiles (source) embedded library `index` once per device; call under @synchronized(state). */
static id<MTLLibrary> load_library(GptossMetalDevice* state, size_t index, const char* kernel_name) {
    id cached = state.libraries[index];
    if (cached != [NSNull null]) {
        return cached;
    }
    const struct gptoss_embedded_metal_library* embedded = &gptoss_embedded_metal_libraries[index];
    NSError* error = nil;
    id<MTLLibrary> library = nil;
    if (embedded->kind == gptoss_embedded_metal_kind_metallib) {
        /* newLibraryWithData:error: takes dispatch_data_t. DISPATCH_DATA_DESTRUCTOR_DEFAULT copies
         * the bytes (once per library: negligible). Under ARC dispatch objects are Objective-C
         * objects: no dispatch_release. */
        dispatch_data_t data = dispatch_data_create(embedded->data, embedded->size, NULL, DISPATCH_DATA_DESTRUCTOR_DEFAULT);
        library = [state.device newLibraryWithData:data error:&error];
    } else {
        /* Apple: a library compiled from a source string has no search path for includes; the
         * generator inlined <internal/kernel-args.h>. Metal 3.1 as for the METALLIB build (bfloat). */
        NSString* source = [[NSString alloc] initWithBytes:embedded->data length:embedded->size
                                                  encoding:NSUTF8StringEncoding];
        MTLCompileOptions* options = [MTLCompileOptions new];
        if (@available(macOS 14.0, *)) {  /* always true here: gptoss_metal_device_init requires macOS 14 */
            options.languageVersion = MTLLanguageVersion3_1;
        }
        /* IEEE semantics as in the METALLIB build and on the CPU layer (docs/metal.md, "One numerical
         * contract"): Metal compiles with fast math by default, which may fold the NaN/-inf tests of
         * the sampling kernels. macOS 15 deprecates fastMathEnabled for mathMode; the 14 SDK has only
         * the former, so the SDK decides which the source may name, the running macOS which is used. */
#if defined(MAC_OS_VERSION_15_0) && __MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_15_0
        if (@available(macOS 15.0, *)) {
            options.mathMode = MTLMathModeSafe;
        } else {
            options.fastMathEnabled = NO;
        }
#else
        options.fastMathEnabled = NO;
#endif
        library = source == nil ? nil : [state.device newLibraryWithSource:source options:options error:&error];
    }
    if (library == nil) {
        gptoss_set_error(gptoss_status_device_error, "gptoss_function_create %s: cannot %s %s (sha256 %.12s): %s",
            kernel_name, embedded->kind == gptoss_embedded_metal_kind_metallib ? "load the metallib of" : "compile",
            embedded->name, embedded->sha256, describe(error));
        return nil;
    }
    state.libraries[index] = library;
    return library;
}

/*
 * The pipeline option that fills reflection.bindings. The macOS 15 SDK renamed bit 0 of
 * MTLPipelineOption from MTLPipelineOptionArgumentInfo (deprecated there) to
 * MTLPipelineOptionBindingInfo; both SDK generations mean the same bit, and the 14 SDK (Xcode 15)
 * has only the old name. Pick the name by the SDK compiled against, not by the deployment target.
 */
#if defined(MAC_OS_VERSION_15_0) && __MAC_OS_X_VERSION_MAX_ALLOWED >= MAC_OS_VERSION_15_0
#define GPTOSS_PIPELINE_OPTION_BINDING_INFO MTLPipelineOptionBindingInfo
#else
#define GPTOSS_PIPELINE_OPTION_BINDING_INFO MTLPipelineOptionArgumentInfo
#endif

/* Declared argument indices from the pipeline's reflection (bindings: macOS 13+), so that encode
 * rejects an unbound [[buffer(i)]] / [[threadgroup(i)]] on the GPU as on the CPU layer. */
static void record_declared_arguments(MTLComputePipelineReflection* reflection, struct gptoss_function* function)
    API_AVAILABLE(macos(13.0))
{
    for (id<MTLBinding> binding in reflection.bindings) {
        if (binding.index >= 64) {
            continue;
        }
        if (binding.type == MTLBindingTypeBuffer) {
            function->declared_buffer_mask |= UINT64_C(1) << binding.index;
        } else if (binding.type == MTLBindingTypeThreadgroupMemory) {
            function->declared_threadgroup_mask |= UINT64_C(1) << binding.index;
        }
    }
}

static enum gptoss_status metal_function_create(struct gptoss_device* device, struct gptoss_function* function) {
    @autoreleasepool {
        GptossMetalDevice* state = device_state(device);
        const long index = find_library(function->name);
        if (index < 0) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_function_create: no kernel named '%s' in the embedded Metal libraries", function->name);
        }
        id<MTLLibrary> library;
        @synchronized(state) {
            library = load_library(state, (size_t) index, function->name);
        }
        if (library == nil) {
            return gptoss_status_device_error;  /* message recorded by load_library */
        }
        id<MTLFunction> mtl_function = [library newFunctionWithName:@(function->name)];
        if (mtl_function == nil) {
            return gptoss_set_error(gptoss_status_invalid_argument,
                "gptoss_function_create: %s does not contain kernel '%s'",
                gptoss_embedded_metal_libraries[index].name, function->name);
        }
        NSError* error = nil;
        MTLComputePipelineReflection* reflection = nil;
        id<MTLComputePipelineState> pipeline = nil;
        if (@available(macOS 13.0, *)) {  /* always true here: gptoss_metal_device_init requires macOS 14 */
            pipeline = [state.device newComputePipelineStateWithFunction:mtl_function
                                                                 options:GPTOSS_PIPELINE_OPTION_BINDING_INFO
                                                              reflection:&reflection
                                                                   error:&error];
        }
        if (pipeline == nil) {
            return gptoss_set_error(gptoss_status_device_error,
                "gptoss_function_create: cannot create the compute pipeline of '%s': %s", function->name, describe(error));
        }
        function->info.max_threads_per_threadgroup = (uint32_t) pipeline.maxTotalThreadsPerThreadgroup;
        function->info.simd_width = (uint32_t) pipeline.threadExecutionWidth;
        function->info.static_threadgroup_memory = (uint32_t) pipeline.staticThreadgroupMemoryLength;
        if (@available(macOS 13.0, *)) {
            record_declared_arguments(reflection, function);
        }
        function->impl = (void*) CFBridgingRetain(pipeline);
        return gptoss_status_success;
    }
}

static void metal_function_release(struct gptoss_function* function) {
    @autoreleasepool {
        if (function->impl != NULL) {
            CFBridgingRelease(function->impl);
            function->impl = NULL;
        }
    }
}

/* ---- Command buffers ---- */

/* Records a failure of commit in both the thread's error and impl, so that a later wait reports it too. */
static enum gptoss_status commit_failed(struct metal_command_buffer* impl, enum gptoss_status status, const char* message) {
    impl->status = status;
    snprintf(impl->message, sizeof(impl->message), "%s", message);
    return gptoss_set_error(status, "%s", message);
}

static void encode_dispatch(id<MTLComputeCommandEncoder> encoder, const struct gptoss_recorded_dispatch* dispatch) {
    [encoder setComputePipelineState:(__bridge id<MTLComputePipelineState>) dispatch->function->impl];
    for (size_t i = 0; i < dispatch->num_args; i++) {
        const struct gptoss_kernel_arg* arg = &dispatch->args[i];
        switch (arg->kind) {
            case gptoss_kernel_arg_buffer:
                [encoder setBuffer:(__bridge id<MTLBuffer>) arg->buffer->impl offset:arg->offset atIndex:arg->index];
                break;
            case gptoss_kernel_arg_bytes:
                /* Apple: setBytes is for data under 4 KB; device.c enforces GPTOSS_MAX_BYTES_ARGUMENT. */
                [encoder setBytes:arg->bytes length:arg->size atIndex:arg->index];
                break;
            case gptoss_kernel_arg_threadgroup_memory:
                /* Apple: the length must be a multiple of 16 bytes (checked by device.c). */
                [encoder setThreadgroupMemoryLength:arg->size atIndex:arg->index];
                break;
        }
    }
    [encoder dispatchThreadgroups:MTLSizeMake(dispatch->threadgroups[0], dispatch->threadgroups[1], dispatch->threadgroups[2])
            threadsPerThreadgroup:MTLSizeMake(dispatch->threads_per_threadgroup[0], dispatch->threads_per_threadgroup[1],
                                              dispatch->threads_per_threadgroup[2])];
}

static enum gptoss_status metal_command_buffer_commit(struct gptoss_command_buffer* command_buffer) {
    @autoreleasepool {
        struct metal_command_buffer* impl = calloc(1, sizeof(struct metal_command_buffer));
        if (impl == NULL) {
            return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_command_buffer_commit: out of memory");
        }
        command_buffer->impl = impl;
        GptossMetalDevice* state = device_state(command_buffer->device);
        /* commandBuffer retains every resource it references until it completes, so a buffer
         * released while the GPU still runs stays valid. */
        id<MTLCommandBuffer> mtl_command_buffer = [state.queue commandBuffer];
        if (mtl_command_buffer == nil) {
            return commit_failed(impl, gptoss_status_insufficient_resources, "gptoss_command_buffer_commit: Metal returned no command buffer");
        }
        /* The default compute encoder dispatches serially (Apple: MTLDispatchTypeSerial): each
         * dispatch completes before the next starts, as device.h promises. */
        id<MTLComputeCommandEncoder> encoder = [mtl_command_buffer computeCommandEncoder];
        if (encoder == nil) {
            return commit_failed(impl, gptoss_status_insufficient_resources, "gptoss_command_buffer_commit: Metal returned no compute encoder");
        }
        for (size_t i = 0; i < command_buffer->num_dispatches; i++) {
            /* The abort flag is checked while encoding: once the GPU runs, the work is not interruptible. */
            if (command_buffer->abort_flag != NULL && *command_buffer->abort_flag != 0) {
                impl->status = gptoss_status_cancelled;
                snprintf(impl->message, sizeof(impl->message),
                    "command buffer cancelled through its abort flag before dispatch %zu of %zu",
                    i, command_buffer->num_dispatches);
                break;
            }
            const struct gptoss_recorded_dispatch* dispatch = &command_buffer->dispatches[i];
            if (dispatch->threadgroups[0] == 0 || dispatch->threadgroups[1] == 0 || dispatch->threadgroups[2] == 0) {
                continue;  /* an empty grid does nothing (as on the CPU layer); Metal need not see it */
            }
            encode_dispatch(encoder, dispatch);
        }
        [encoder endEncoding];
        if (impl->status == gptoss_status_cancelled) {
            return gptoss_status_success;  /* never committed: none of the encoded work runs; wait reports it */
        }
        [mtl_command_buffer commit];
        impl->command_buffer = (void*) CFBridgingRetain(mtl_command_buffer);
        return gptoss_status_success;
    }
}

static enum gptoss_status metal_command_buffer_wait(struct gptoss_command_buffer* command_buffer) {
    @autoreleasepool {
        struct metal_command_buffer* impl = command_buffer->impl;
        if (impl == NULL) {
            return gptoss_set_error(gptoss_status_invalid_state, "gptoss_command_buffer_wait: the commit failed");
        }
        if (impl->command_buffer != NULL && impl->status == gptoss_status_success) {
            /* impl->status is success only for a committed buffer: cancelled or failed commits keep theirs. */
            id<MTLCommandBuffer> mtl_command_buffer = (__bridge id<MTLCommandBuffer>) impl->command_buffer;
            [mtl_command_buffer waitUntilCompleted];
            /* Apple: status MTLCommandBufferStatusError means the GPU stopped running the commands;
             * the error property then describes why (nil otherwise). */
            if (mtl_command_buffer.status == MTLCommandBufferStatusError) {
                impl->status = gptoss_status_device_error;
                snprintf(impl->message, sizeof(impl->message), "Metal command buffer of %zu dispatches (first: %s) failed: %s",
                    command_buffer->num_dispatches,
                    command_buffer->num_dispatches != 0 ? command_buffer->dispatches[0].function->name : "none",
                    describe(mtl_command_buffer.error));
            }
        }
        command_buffer->status = impl->status;
        command_buffer->state = gptoss_command_buffer_state_completed;
        if (impl->status != gptoss_status_success) {
            return gptoss_set_error(impl->status, "%s", impl->message);
        }
        return gptoss_status_success;
    }
}

static void metal_command_buffer_release(struct gptoss_command_buffer* command_buffer) {
    @autoreleasepool {
        struct metal_command_buffer* impl = command_buffer->impl;
        if (impl->command_buffer != NULL) {
            CFBridgingRelease(impl->command_buffer);
        }
        free(impl);
        command_buffer->impl = NULL;
    }
}

static const struct gptoss_device_ops metal_ops = {
    .backend_name = "metal",
    .device_destroy = metal_device_destroy,
    .buffer_create = metal_buffer_create,
    .buffer_wrap = metal_buffer_wrap,
    .buffer_release = metal_buffer_release,
    .function_create = metal_function_create,
    .function_release = metal_function_release,
    .command_buffer_commit = metal_command_buffer_commit,
    .command_buffer_wait = metal_command_buffer_wait,
    .command_buffer_release = metal_command_buffer_release,
};

enum gptoss_status gptoss_metal_device_init(struct gptoss_device* device) {
    @autoreleasepool {
        /* The kernels use bfloat (Metal 3.1), which needs macOS 14. */
        if (@available(macOS 14.0, *)) {
        } else {
            return gptoss_set_error(gptoss_status_unsupported_system,
                "the Metal device layer needs macOS 14 or later (Metal 3.1); use GPTOSS_DEVICE=cpu");
        }
        /* Apple: on macOS, MTLCreateSystemDefaultDevice returns a device only if the process links
         * CoreGraphics (metal.cmake links it). */
        id<MTLDevice> mtl_device = MTLCreateSystemDefaultDevice();
        if (mtl_device == nil) {
            return gptoss_set_error(gptoss_status_unsupported_system,
                "MTLCreateSystemDefaultDevice returned no device: this Mac has no usable Metal GPU (use GPTOSS_DEVICE=cpu)");
        }
        id<MTLCommandQueue> queue = [mtl_device newCommandQueue];
        if (queue == nil) {
            return gptoss_set_error(gptoss_status_insufficient_resources, "Metal: newCommandQueue returned no queue on %s",
                                    mtl_device.name.UTF8String);
        }
        GptossMetalDevice* state = [GptossMetalDevice new];
        state.device = mtl_device;
        state.queue = queue;
        state.libraries = [NSMutableArray arrayWithCapacity:gptoss_embedded_metal_library_count];
        for (size_t i = 0; i < gptoss_embedded_metal_library_count; i++) {
            [state.libraries addObject:[NSNull null]];
        }

        device->ops = &metal_ops;
        device->impl = (void*) CFBridgingRetain(state);
        device->info.kind = gptoss_device_kind_metal;
        snprintf(device->info.name, sizeof(device->info.name), "%s", mtl_device.name.UTF8String);
        device->info.simd_width = 32;  /* every Apple GPU; per kernel: threadExecutionWidth */
        /* maxThreadsPerThreadgroup is per dimension; its width is the total limit (1024) on Apple GPUs. */
        device->info.max_threads_per_threadgroup = (uint32_t) mtl_device.maxThreadsPerThreadgroup.width;
        device->info.max_threadgroup_memory = (uint32_t) mtl_device.maxThreadgroupMemoryLength;
        device->info.recommended_working_set = mtl_device.recommendedMaxWorkingSetSize;
        /* The largest single MTLBuffer (created or wrapped without copying); model.c splits the
         * weights so that no region exceeds it. */
        device->info.max_buffer_length = (uint64_t) mtl_device.maxBufferLength;
        device->info.physical_memory = (uint64_t) NSProcessInfo.processInfo.physicalMemory;
        device->info.num_compute_units = 0;  /* Metal does not report the GPU core count: unknown */
        return gptoss_status_success;
    }
}
