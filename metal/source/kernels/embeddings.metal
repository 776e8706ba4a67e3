// Embedding lookup: tokens (u32) -> residual rows (f32) from the bf16 table [V, D].
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

// One threadgroup per token; each thread converts 8 bf16 values (one 16-byte load) per step.
// An id >= vocab_size yields a zero row: the host validates ids, the kernel only never reads out of bounds.
kernel void gptoss_embeddings_bf16(
    constant gptoss_embeddings_args& args [[buffer(0)]],
    const device uint* tokens [[buffer(1)]],
    const device uint4* embedding [[buffer(2)]],
    device float4* residual [[buffer(3)]],
    uint token [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint threads [[threads_per_threadgroup]])
{
    if (token >= args.num_tokens) {
        return;
    }
    const uint id = tokens[token];
    const uint chunks = args.dim / 8;
    device float4* out = residual + ulong(token) * (args.dim / 4);
    const bool valid = id < args.vocab_size;
    const device uint4* row = embedding + ulong(valid ? id : 0) * chunks;
    for (uint c = tid; c < chunks; c += threads) {
        float4 lo = 0.0f, hi = 0.0f;
        if (valid) {
            const uint4 packed = row[c];
            const float4 even = as_type<float4>(packed << 16);           // elements 0, 2, 4, 6
            const float4 odd = as_type<float4>(packed & 0xFFFF0000u);    // elements 1, 3, 5, 7
            lo = float4(even.x, odd.x, even.y, odd.y);
            hi = float4(even.z, odd.z, even.w, odd.w);
        }
        out[2 * c] = lo;
        out[2 * c + 1] = hi;
    }
}
