// Batched RMSNorm for prefill: out[t] = in[t] / sqrt(mean(in[t]^2) + eps) * gain (bf16 gain).
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

// One SIMD group (32 threads) per token row; lanes stride over the row in float4 steps.
// Fixed size: one SIMD group per token row.
[[max_total_threads_per_threadgroup(32)]]
kernel void gptoss_rmsnorm(
    constant gptoss_rmsnorm_args& args [[buffer(0)]],
    const device float4* input [[buffer(1)]],
    const device ushort4* gain [[buffer(2)]],
    device float4* output [[buffer(3)]],
    uint token [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]])
{
    const uint vecs = args.dim / 4;
    const ulong base = ulong(min(token, args.num_tokens - 1)) * vecs;
    float sum_sq = 0.0f;
    for (uint i = lane; i < vecs; i += 32) {
        const float4 v = input[base + i];
        sum_sq += dot(v, v);
    }
    sum_sq = simd_sum(sum_sq);
    if (token >= args.num_tokens) {
        return;
    }
    const float inv_rms = rsqrt(sum_sq / float(args.dim) + args.epsilon);
    for (uint i = lane; i < vecs; i += 32) {
        const float4 g = as_type<float4>(uint4(gain[i]) << 16);
        output[base + i] = input[base + i] * inv_rms * g;
    }
}
