// Router of the MoE layer: RMSNorm(residual)·mlp_gain, router logits, top-k experts, softmax over them.
// Launch wrapper and dispatch geometry: launch-routing.c / internal/kernels-moe.h.
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

#define GPTOSS_ROUTER_MAX_EXPERTS 256
#define GPTOSS_ROUTER_MAX_ACTIVE 8
#define GPTOSS_ROUTER_NO_EXPERT 0xFFFFFFFFu

// Two bf16 packed in a 32-bit word (element 0 in the low half) widened exactly to float.
static inline float2 router_bf16x2_to_float2(uint w) {
    return float2(as_type<float>(w << 16), as_type<float>(w & 0xFFFF0000u));
}

// One threadgroup per token. x_shared holds the normalised token (D floats) so the E router rows are
// dotted with it from threadgroup memory; each SIMD group owns router rows sg, sg + num_sg, ...
kernel void gptoss_router(
    constant gptoss_router_args& args [[buffer(0)]],
    const device float4* residual [[buffer(1)]],       // [T, D] f32
    const device uint4* mlp_gain [[buffer(2)]],        // [D] bf16, 8 per uint4
    const device uint4* gate_weight [[buffer(3)]],     // [E, D] bf16, row-major
    const device ushort* gate_bias [[buffer(4)]],      // [E] bf16
    device float4* x_norm [[buffer(5)]],               // [T, D] f32 out
    device uint* expert_ids [[buffer(6)]],             // [T, k] u32 out
    device float* expert_weights [[buffer(7)]],        // [T, k] f32 out
    threadgroup float4* x_shared [[threadgroup(0)]],   // D / 4 float4
    uint token [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint threads [[threads_per_threadgroup]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint num_sg [[simdgroups_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup float sumsq_partial[32];
    threadgroup float logits[GPTOSS_ROUTER_MAX_EXPERTS];
    threadgroup float selected_logits[GPTOSS_ROUTER_MAX_ACTIVE];
    if (token >= args.num_tokens) {
        return;  // whole threadgroup: no barrier is left waiting
    }
    const uint D = args.embedding_dim;
    const uint E = args.num_experts;
    const uint k = args.num_active;
    const uint chunks = D / 8;  // 8-element chunks (one uint4 of bf16, two float4 of f32)
    const device float4* x = residual + (ulong) token * (D / 4);

    // Mean square of the residual row.
    float sumsq = 0.0f;
    for (uint c = tid; c < D / 4; c += threads) {
        const float4 v = x[c];
        sumsq += dot(v, v);
    }
    sumsq = simd_sum(sumsq);
    if (lane == 0) {
        sumsq_partial[sg] = sumsq;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    float total = 0.0f;
    for (uint i = 0; i < num_sg; i++) {
        total += sumsq_partial[i];  // same order in every thread: every thread gets the same scale
    }
    const float scale = 1.0f / sqrt(total / float(D) + args.epsilon);

    // x_norm = x * scale * gain, kept in threadgroup memory and written out as the MoE input.
    device float4* out = x_norm + (ulong) token * (D / 4);
    for (uint c = tid; c < chunks; c += threads) {
        const uint4 g = mlp_gain[c];
        const float4 g_lo = float4(router_bf16x2_to_float2(g.x), router_bf16x2_to_float2(g.y));
        const float4 g_hi = float4(router_bf16x2_to_float2(g.z), router_bf16x2_to_float2(g.w));
        const float4 lo = x[2 * c] * scale * g_lo;
        const float4 hi = x[2 * c + 1] * scale * g_hi;
        x_shared[2 * c] = lo;
        x_shared[2 * c + 1] = hi;
        out[2 * c] = lo;
        out[2 * c + 1] = hi;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Router logits: a SIMD group per row, lanes stride over 16-byte chunks of the bf16 row.
    for (uint e = sg; e < E; e += num_sg) {
        const device uint4* row = gate_weight + (ulong) e * chunks;
        float acc = 0.0f;
        for (uint c = lane; c < chunks; c += 32) {
            const uint4 w = row[c];
            const float4 w_lo = float4(router_bf16x2_to_float2(w.x), router_bf16x2_to_float2(w.y));
            const float4 w_hi = float4(router_bf16x2_to_float2(w.z), router_bf16x2_to_float2(w.w));
            acc += dot(w_lo, x_shared[2 * c]) + dot(w_hi, x_shared[2 * c + 1]);
        }
        acc = simd_sum(acc);
        if (lane == 0) {
            logits[e] = acc + as_type<float>(uint(gate_bias[e]) << 16);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    // Top-k by SIMD group 0: lane l owns logits l, l + 32, ...; each round takes the largest remaining
    // logit, ties to the lowest expert index (the reference's stable sort), so ids come out in
    // descending logit order.
    if (sg == 0) {
        uint taken = 0;  // bit j: this lane's expert lane + 32 j is selected
        for (uint r = 0; r < k; r++) {
            float best = -INFINITY;
            uint best_expert = GPTOSS_ROUTER_NO_EXPERT;
            for (uint j = 0, e = lane; e < E; j++, e += 32) {
                const float v = logits[e];
                if ((taken & (1u << j)) == 0 && (best_expert == GPTOSS_ROUTER_NO_EXPERT || v > best)) {
                    best = v;
                    best_expert = e;
                }
            }
            const float round_max = simd_max(best);
            const uint winner = simd_min(
                (best_expert != GPTOSS_ROUTER_NO_EXPERT && best == round_max) ? best_expert : GPTOSS_ROUTER_NO_EXPERT);
            if (winner != GPTOSS_ROUTER_NO_EXPERT && winner % 32 == lane) {
                taken |= 1u << (winner / 32);
            }
            if (lane == 0) {
                expert_ids[(ulong) token * k + r] = winner;
                selected_logits[r] = round_max;
            }
        }
        if (lane == 0) {
            // Softmax over the k selected logits; selected_logits[0] is their maximum.
            float denominator = 0.0f;
            for (uint r = 0; r < k; r++) {
                denominator += exp(selected_logits[r] - selected_logits[0]);
            }
            for (uint r = 0; r < k; r++) {
                expert_weights[(ulong) token * k + r] = exp(selected_logits[r] - selected_logits[0]) / denominator;
            }
        }
    }
}
