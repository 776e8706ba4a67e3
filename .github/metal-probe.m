/*
 * Does this Mac (a CI runner, usually a VM) have a Metal device the gpt-oss-metal kernels can use?
 *
 * GitHub's arm64 macOS runners are VMs whose MTLCreateSystemDefaultDevice may return nil or an
 * "Apple Paravirtual device" below the GPU families the kernels need (docs/metal.md, "Metal on
 * GitHub-hosted runners"). The kernels need Metal 3.1 (bfloat: macOS 14, Apple7+ GPUs), so this
 * compiles a tiny bfloat kernel from source at languageVersion 3.1, runs it and checks every value.
 *
 *   clang -fobjc-arc -mmacosx-version-min=14.0 metal-probe.m -framework Metal -framework Foundation \
 *         -framework CoreGraphics -o metal-probe && ./metal-probe
 *
 * Prints what it found; exit status 0: usable, 3: no usable Metal device (the reason on stdout).
 */
#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdio.h>

static int unusable(NSString* reason) {
    printf("metal-probe: no usable Metal device: %s\n", reason.UTF8String);
    return 3;
}

int main(void) {
    @autoreleasepool {
        id<MTLDevice> device = MTLCreateSystemDefaultDevice();
        if (device == nil) {
            return unusable(@"MTLCreateSystemDefaultDevice returned nil");
        }
        const BOOL metal3 = [device supportsFamily:MTLGPUFamilyMetal3];
        const BOOL apple7 = [device supportsFamily:MTLGPUFamilyApple7];
        printf("metal-probe: device '%s', MTLGPUFamilyMetal3 %s, MTLGPUFamilyApple7 %s, recommendedMaxWorkingSetSize %.2f GiB\n",
               device.name.UTF8String, metal3 ? "yes" : "no", apple7 ? "yes" : "no",
               (double) device.recommendedMaxWorkingSetSize / (double) (1ull << 30));
        if (!metal3 || !apple7) {
            return unusable([NSString stringWithFormat:@"'%@' lacks the Metal3/Apple7 GPU families (bfloat, Metal 3.1)", device.name]);
        }
        NSString* source =
            @"#include <metal_stdlib>\n"
             "using namespace metal;\n"
             "kernel void probe(device const float* in [[buffer(0)]], device float* out [[buffer(1)]],\n"
             "                  uint i [[thread_position_in_grid]]) {\n"
             "    bfloat x = bfloat(in[i]);\n"
             "    out[i] = float(x * bfloat(2.0f)) + float(simd_sum(1u));\n"
             "}\n";
        MTLCompileOptions* options = [MTLCompileOptions new];
        options.languageVersion = MTLLanguageVersion3_1;
        NSError* error = nil;
        id<MTLLibrary> library = [device newLibraryWithSource:source options:options error:&error];
        if (library == nil) {
            return unusable([NSString stringWithFormat:@"cannot compile a Metal 3.1 bfloat kernel: %@", error.localizedDescription]);
        }
        id<MTLComputePipelineState> pipeline =
            [device newComputePipelineStateWithFunction:[library newFunctionWithName:@"probe"] error:&error];
        if (pipeline == nil) {
            return unusable([NSString stringWithFormat:@"cannot create the pipeline: %@", error.localizedDescription]);
        }
        enum { N = 256 };
        float input[N];
        for (int i = 0; i < N; i++) {
            input[i] = (float) (i - 100);   /* small integers: exact in bfloat */
        }
        id<MTLBuffer> in = [device newBufferWithBytes:input length:sizeof(input) options:MTLResourceStorageModeShared];
        id<MTLBuffer> out = [device newBufferWithLength:sizeof(input) options:MTLResourceStorageModeShared];
        id<MTLCommandQueue> queue = [device newCommandQueue];
        id<MTLCommandBuffer> commands = [queue commandBuffer];
        id<MTLComputeCommandEncoder> encoder = [commands computeCommandEncoder];
        [encoder setComputePipelineState:pipeline];
        [encoder setBuffer:in offset:0 atIndex:0];
        [encoder setBuffer:out offset:0 atIndex:1];
        [encoder dispatchThreadgroups:MTLSizeMake(N / 64, 1, 1) threadsPerThreadgroup:MTLSizeMake(64, 1, 1)];
        [encoder endEncoding];
        [commands commit];
        [commands waitUntilCompleted];
        if (commands.status != MTLCommandBufferStatusCompleted) {
            return unusable([NSString stringWithFormat:@"the command buffer did not complete: %@", commands.error.localizedDescription]);
        }
        const float* result = out.contents;
        const float simd_width = (float) pipeline.threadExecutionWidth;
        for (int i = 0; i < N; i++) {
            const float expected = 2.0f * input[i] + simd_width;
            if (result[i] != expected) {
                return unusable([NSString stringWithFormat:@"wrong results: out[%d] = %g, expected %g (SIMD width %g)",
                                 i, result[i], expected, simd_width]);
            }
        }
        printf("metal-probe: usable: a Metal 3.1 bfloat kernel ran correctly (SIMD width %.0f)\n", simd_width);
        return 0;
    }
}
