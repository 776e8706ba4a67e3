// Type-library test kernels (tests/test_msl_types_kernels.py): swizzles, select, mixed
// scalar/vector math, packed vectors, as kernels write them.
#include <metal_stdlib>
using namespace metal;

kernel void types_vector_ops(
    const device float4* a [[buffer(0)]],
    const device float4* b [[buffer(1)]],
    device float4* out [[buffer(2)]],
    device float* out_dot [[buffer(3)]],
    uint gid [[thread_position_in_grid]])
{
    const float4 x = a[gid];
    const float4 y = b[gid];
    float4 r = metal::fma(x, 2.0f, y);
    r.xy = r.yx;
    r.zw += x.xx;
    r = select(r, -r, x < 0.0f);
    out[gid] = metal::clamp(r, -100.0f, 100.0f);
    const float2 s2 = x.xy + y.zw;
    out_dot[gid] = metal::dot(x.xyz, y.zyx) + (s2.x - s2.y);
}

// packed_float3 in and out (12-byte stride), float3 arithmetic in between.
kernel void types_packed3(
    const device packed_float3* p [[buffer(0)]],
    device packed_float3* q [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const float3 v = p[gid];
    const float3 c = metal::cross(v, float3(0.0f, 0.0f, 1.0f));
    q[gid] = c + v.zxy * 0.5f;
}

// MXFP4 -> half bit trick of the MoE kernels: integer vector ops, then as_type<half4> on a swizzle.
kernel void types_mxfp4_unpack(
    const device uint4* blocks [[buffer(0)]],
    device float4* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const uint4 wblock = blocks[gid];
    uint4 even = wblock + wblock;
    uint4 odd = wblock >> 3;
    even &= 0x1E1E1E1Eu;
    odd &= 0x1E1E1E1Eu;
    even += 0x70707070u;
    odd += 0x70707070u;
    even &= 0x8E8E8E8Eu;
    odd &= 0x8E8E8E8Eu;
    const uint4 hi = even & 0xFF00FF00u;
    const uint4 lo = (even << 8) & 0xFF00FF00u;
    out[4 * gid + 0] = static_cast<float4>(as_type<half4>(lo.xy));
    out[4 * gid + 1] = static_cast<float4>(as_type<half4>(lo.zw));
    out[4 * gid + 2] = static_cast<float4>(as_type<half4>(hi.xy));
    out[4 * gid + 3] = static_cast<float4>(as_type<half4>((odd & 0xFF00FF00u).zw));
}
