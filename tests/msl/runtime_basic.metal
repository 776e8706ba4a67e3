// Runtime tests: thread positions, buffers, constant argument structs, setBytes.
#include <metal_stdlib>
using namespace metal;

struct runtime_scale_args {
    uint count;
    float scale;
};

// out[i] = in[i] * args.scale + i, for i < args.count.
kernel void runtime_scale(
    constant runtime_scale_args& args [[buffer(0)]],
    const device float* in [[buffer(1)]],
    device float* out [[buffer(2)]],
    uint gid [[thread_position_in_grid]])
{
    if (gid < args.count) {
        out[gid] = in[gid] * args.scale + float(gid);
    }
}

// Every built-in position argument, uint3 forms: 10 values per thread at out[linear_grid_id * 16].
kernel void runtime_builtins(
    device uint* out [[buffer(0)]],
    uint3 gid [[thread_position_in_grid]],
    uint3 tid [[thread_position_in_threadgroup]],
    uint3 group [[threadgroup_position_in_grid]],
    uint3 tptg [[threads_per_threadgroup]],
    uint3 groups [[threadgroups_per_grid]],
    uint3 grid_size [[threads_per_grid]],
    uint tindex [[thread_index_in_threadgroup]],
    uint simd_group [[simdgroup_index_in_threadgroup]],
    uint simd_lane [[thread_index_in_simdgroup]],
    uint simd_groups [[simdgroups_per_threadgroup]],
    uint simd_size [[threads_per_simdgroup]])
{
    const uint linear = (gid.z * grid_size.y + gid.y) * grid_size.x + gid.x;
    device uint* o = out + linear * 16;
    o[0] = gid.x; o[1] = gid.y; o[2] = gid.z;
    o[3] = tid.x; o[4] = tid.y; o[5] = tid.z;
    o[6] = group.x; o[7] = group.y; o[8] = group.z;
    o[9] = tptg.x * 10000 + tptg.y * 100 + tptg.z;
    o[10] = groups.x * 10000 + groups.y * 100 + groups.z;
    o[11] = tindex;
    o[12] = simd_group;
    o[13] = simd_lane;
    o[14] = simd_groups;
    o[15] = simd_size;
}

// ushort and 2-component forms of the built-ins. Metal requires a kernel's position attributes to be
// all scalars or all vectors of one size (MSL spec 5.2.3.6), so the 2-component forms are here and
// the scalar ushort forms in runtime_builtins_short_scalar.
kernel void runtime_builtins_short(
    device ushort* out [[buffer(0)]],
    ushort2 gid [[thread_position_in_grid]],
    ushort2 tid [[thread_position_in_threadgroup]],
    ushort lane [[thread_index_in_simdgroup]],
    ushort2 grid_size [[threads_per_grid]])
{
    device ushort* o = out + (uint(gid.y) * grid_size.x + gid.x) * 4;
    o[0] = gid.x;
    o[1] = gid.y;
    o[2] = tid.x;
    o[3] = lane;
}

// Scalar ushort forms of the position built-ins (a 1-D dispatch): 4 values per thread.
kernel void runtime_builtins_short_scalar(
    device ushort* out [[buffer(0)]],
    ushort gid [[thread_position_in_grid]],
    ushort tid [[thread_position_in_threadgroup]],
    ushort group [[threadgroup_position_in_grid]],
    ushort tptg [[threads_per_threadgroup]],
    ushort index [[thread_index_in_threadgroup]])
{
    device ushort* o = out + uint(gid) * 4;
    o[0] = tid;
    o[1] = group;
    o[2] = tptg;
    o[3] = index;
}

// Writes one element past the end for the last thread: an out-of-bounds device write.
kernel void runtime_oob_write(
    device float* out [[buffer(0)]],
    uint gid [[thread_position_in_grid]])
{
    out[gid + 1] = 1.0f;
}

// Pointer arithmetic, casts between address-space pointer types, helper functions with device
// pointers, program-scope constant arrays, half literals.
constant float runtime_weights[4] = {0.5f, 1.0f, 2.0f, 4.0f};

static float runtime_dot4(const device float* a, constant float* w) {
    float sum = 0.0f;
    for (uint i = 0; i < 4; i++) {
        sum += a[i] * w[i];
    }
    return sum;
}

kernel void runtime_pointers(
    const device float4* in [[buffer(0)]],
    device float* out [[buffer(1)]],
    constant float* weights [[buffer(2)]],
    uint gid [[thread_position_in_grid]])
{
    const device float* row = reinterpret_cast<const device float*>(in + gid);
    const device float* scalars = (const device float*) in;
    float4 v = in[gid];
    out[gid * 4 + 0] = runtime_dot4(row, weights);
    out[gid * 4 + 1] = v.x + v.y + v.z + v.w;
    out[gid * 4 + 2] = scalars[gid * 4 + 3] * runtime_weights[gid % 4];
    out[gid * 4 + 3] = float(half(1.5h) * 2.0h);
}
