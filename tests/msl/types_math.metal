// Type-library test kernels (tests/test_msl_types_kernels.py): math functions in kernels.
#include <metal_stdlib>
using namespace metal;

kernel void types_math_float(
    const device float* in [[buffer(0)]],
    device float4* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const float x = in[gid];
    float c;
    const float s = metal::precise::sincos(x, c);
    out[gid] = float4(metal::exp(x * 0.1f), s, c, metal::fast::rsqrt(metal::abs(x) + 1.0f));
}

kernel void types_math_half(
    const device half* in [[buffer(0)]],
    device half2* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const half x = in[gid];
    out[gid] = half2(metal::sqrt(metal::abs(x)), metal::tanh(x));
}

kernel void types_math_int(
    const device uint* in [[buffer(0)]],
    device uint4* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const uint x = in[gid];
    out[gid] = uint4(metal::clz(x), metal::popcount(x), metal::subsat(x, 1000u), metal::extract_bits(x, 4u, 8u));
}
