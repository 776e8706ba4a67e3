// Type-library test kernels (tests/test_msl_types_kernels.py): half/bfloat conversions through device
// buffers, as kernels store activations and read weights.
#include <metal_stdlib>
using namespace metal;

// out_h[i] = half(in[i]); out_b[i] = bfloat(in[i]); back[i] = float(half) + float(bfloat) as float2.
kernel void types_convert_f32_to_16(
    const device float* in [[buffer(0)]],
    device half* out_h [[buffer(1)]],
    device bfloat* out_b [[buffer(2)]],
    device float2* back [[buffer(3)]],
    uint gid [[thread_position_in_grid]])
{
    const float x = in[gid];
    const half h = half(x);
    const bfloat b = static_cast<bfloat>(x);
    out_h[gid] = h;
    out_b[gid] = b;
    back[gid] = float2(static_cast<float>(h), static_cast<float>(b));
}

// Vector conversions: bfloat4 weights to float4, half4 products rounded per operation.
kernel void types_convert_vectors(
    const device bfloat4* w [[buffer(0)]],
    const device half4* h [[buffer(1)]],
    device float4* w_f32 [[buffer(2)]],
    device half4* h_sq [[buffer(3)]],
    device int4* truncated [[buffer(4)]],
    uint gid [[thread_position_in_grid]])
{
    const float4 wf = static_cast<float4>(w[gid]);
    w_f32[gid] = wf;
    const half4 hv = h[gid];
    h_sq[gid] = hv * hv + half(1);
    truncated[gid] = int4(wf * 3.0f);
}
