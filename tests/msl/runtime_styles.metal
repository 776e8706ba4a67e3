// Runtime tests: source patterns of production kernels — header-per-feature includes, pragmas,
// attribute spacing, max_total_threads_per_threadgroup, integer round trips of device pointers
// (through ulong: MSL has no uintptr_t), reinterpret_cast to vector pointers, qualified metal:: SIMD
// functions. Metal 3.1 only: no `#pragma METAL fp math_mode` (Metal 3.2); the host sets the math mode.
#include <metal_common>
#include <metal_compute>
#include <metal_geometric>
#include <metal_math>
#include <metal_simdgroup>

#pragma METAL fp contract(off)

struct runtime_styles_args {
    uint row_stride_bytes;
    uint rows;
};

// out[row] = sum of row `row` of `matrix` (rows of 64 floats at row_stride_bytes), one SIMD group
// of 32 threads per row, reading float2 pairs.
[[max_total_threads_per_threadgroup(32)]]
kernel void runtime_styles_rowsum(
    constant runtime_styles_args& args [[ buffer(0) ]],
    const device float* matrix [[ buffer(1) ]],
    device float* out [[ buffer(2) ]],
    uint2 gid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]])
{
    const device float* row = (const device float*) ((ulong) matrix + gid.x * args.row_stride_bytes);
    const float2 pair = reinterpret_cast<const device float2*>(row)[tid];
    float sum = pair.x + pair.y;
    sum = metal::simd_sum(sum);
    if (metal::simd_is_first()) {
        out += gid.x;
        *out = sum;
    }
}
