// Attention of gpt-oss: learned sinks, GQA (8 query heads per KV head), sliding window or full causal.
//
// q [T, Hq * 64] f32 (rotated, pre-scaled: no 1/sqrt(d) here), K and V caches [slots, Hkv, 64] (fp16,
// or fp32 in the exact-parity mode; position p lives in slot p % slots), sinks bf16 [Hq], output
// attn [T, Hq * 64] f32. A query at position p sees keys lo(p)..p with lo(p) = max(0, p - W + 1) on
// windowed blocks and 0 on full ones.
//
// Softmax is online and fused with the sink: the running max starts at the sink logit and the sink
// adds exp(sink - max) to the running sum exactly once (the first SIMD group of the first split
// starts its sum at 1), so the sink takes probability mass without a value vector and every exp()
// argument is <= 0 (stable for any context length).
//
// Work split (both kernels): one threadgroup works for ONE KV head, so each key and value row is
// read from device memory once for all 8 query heads that share it (GQA reuse).
//   QK: lane l of a SIMD group scores key c + l of a 32-key chunk against the 8 query heads (q sits
//       in threadgroup memory, read as broadcasts), giving 8 scores per lane.
//   PV: the 32 probabilities x 8 heads go to threadgroup memory; lane l then owns output dims 2l,
//       2l+1 of the 8 heads and streams the value rows with coalesced 4- or 8-byte loads.
// Decode (gptoss_attention_decode_*): threadgroup = (KV head, token, split); its 4 SIMD groups take
//   interleaved 32-key chunks of the split's key range and merge their (max, sum, acc) in
//   threadgroup memory. With several splits, partials go to a scratch buffer and
//   gptoss_attention_combine merges them (split-K for long contexts).
// Prefill (gptoss_attention_prefill_*): threadgroup = (KV head, 4 consecutive tokens); the K/V chunk
//   is staged once in threadgroup memory and used by 4 tokens x 8 heads = 32 query rows; SIMD group
//   s owns token s of the tile over its whole key range, with the causal/window mask per query.
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

#define ATTN_HEAD_DIM 64
#define ATTN_GROUP 8           // query heads per KV head
#define ATTN_CHUNK 32          // keys per SIMD-group step (one per lane)
#define ATTN_DECODE_SIMDGROUPS 4
#define ATTN_DECODE_THREADS 128
#define ATTN_PREFILL_TOKENS 4  // tokens per prefill threadgroup (one SIMD group each)
#define ATTN_PREFILL_THREADS 128

// First key position a query at `pos` sees.
inline uint attention_first_key(uint pos, uint window) {
    return (window != 0 && pos >= window) ? pos + 1 - window : 0;
}

// ---------------------------------------------------------------------------------------------------
// Decode.
// ---------------------------------------------------------------------------------------------------

template <typename KV, typename KV2, typename KV4>
inline void attention_decode_body(
    constant gptoss_attention_args& args,
    const device float* q,
    const device KV* k_cache,
    const device KV* v_cache,
    const device bfloat* sinks,
    device float* out,
    device float* partials,
    threadgroup float4* q_tg,    // [8 heads][16] float4
    threadgroup float* p_tg,     // [simdgroups][8 heads][32 keys]
    threadgroup float2* acc_tg,  // [simdgroups][8 heads][32 lanes] float2
    threadgroup float* ml_tg,    // [simdgroups][8 heads][2]: max, sum
    uint3 tg, uint sg, uint lane, uint tid)
{
    const uint kv_head = tg.x, token = tg.y, split = tg.z;
    const uint q_head0 = kv_head * ATTN_GROUP;
    const uint q_row = args.num_q_heads * ATTN_HEAD_DIM;
    const uint kv_row = args.num_kv_heads * ATTN_HEAD_DIM;
    const uint pos = args.first_position + token;
    const uint lo = attention_first_key(pos, args.window);
    const uint end = pos + 1;
    const uint split_begin = min(end, lo + split * args.keys_per_split);
    const uint split_end = min(end, split_begin + args.keys_per_split);

    const device float4* q4 = (const device float4*) (q + token * q_row + q_head0 * ATTN_HEAD_DIM);
    for (uint i = tid; i < ATTN_GROUP * ATTN_HEAD_DIM / 4; i += ATTN_DECODE_THREADS) {
        q_tg[i] = q4[i];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    float m[ATTN_GROUP], l[ATTN_GROUP];
    float2 acc[ATTN_GROUP];
    const bool owns_sink = split == 0 && sg == 0 && lane == 0;
    for (uint h = 0; h < ATTN_GROUP; h++) {
        m[h] = float(sinks[q_head0 + h]);
        l[h] = owns_sink ? 1.0f : 0.0f;   // the sink's exp(sink - max) with max = sink
        acc[h] = float2(0.0f);
    }
    threadgroup float* p_sg = p_tg + sg * (ATTN_GROUP * ATTN_CHUNK);
    const device KV* k_head = k_cache + kv_head * ATTN_HEAD_DIM;
    const device KV* v_head = v_cache + kv_head * ATTN_HEAD_DIM;

    for (uint c = split_begin + sg * ATTN_CHUNK; c < split_end; c += ATTN_DECODE_SIMDGROUPS * ATTN_CHUNK) {
        const uint key = c + lane;
        const bool valid = key < split_end;
        float s[ATTN_GROUP];
        for (uint h = 0; h < ATTN_GROUP; h++) {
            s[h] = 0.0f;
        }
        if (valid) {
            const device KV4* k4 = (const device KV4*) (k_head + (key % args.num_slots) * kv_row);
            for (uint d4 = 0; d4 < ATTN_HEAD_DIM / 4; d4++) {
                const float4 kv = float4(k4[d4]);
                for (uint h = 0; h < ATTN_GROUP; h++) {
                    s[h] += dot(q_tg[h * (ATTN_HEAD_DIM / 4) + d4], kv);
                }
            }
        }
        for (uint h = 0; h < ATTN_GROUP; h++) {
            const float chunk_max = simd_max(valid ? s[h] : -INFINITY);
            const float new_max = max(m[h], chunk_max);
            const float rescale = exp(m[h] - new_max);
            const float p = valid ? exp(s[h] - new_max) : 0.0f;
            l[h] = l[h] * rescale + p;
            acc[h] *= rescale;
            m[h] = new_max;
            p_sg[h * ATTN_CHUNK + lane] = p;
        }
        simdgroup_barrier(mem_flags::mem_threadgroup);
        const uint n = min(uint(ATTN_CHUNK), split_end - c);
        for (uint i = 0; i < n; i++) {
            const device KV2* v2 = (const device KV2*) (v_head + ((c + i) % args.num_slots) * kv_row);
            const float2 v = float2(v2[lane]);
            for (uint h = 0; h < ATTN_GROUP; h++) {
                acc[h] += p_sg[h * ATTN_CHUNK + i] * v;
            }
        }
        simdgroup_barrier(mem_flags::mem_threadgroup);  // p_sg is rewritten by the next chunk
    }

    // Merge the SIMD groups: max M, sum L = sum_s l_s e^(m_s - M), acc = sum_s acc_s e^(m_s - M).
    for (uint h = 0; h < ATTN_GROUP; h++) {
        const float sum = simd_sum(l[h]);
        if (lane == 0) {
            ml_tg[(sg * ATTN_GROUP + h) * 2] = m[h];
            ml_tg[(sg * ATTN_GROUP + h) * 2 + 1] = sum;
        }
        acc_tg[(sg * ATTN_GROUP + h) * 32 + lane] = acc[h];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const threadgroup float* acc_flat = (const threadgroup float*) acc_tg;
    for (uint i = tid; i < ATTN_GROUP * ATTN_HEAD_DIM; i += ATTN_DECODE_THREADS) {
        const uint h = i / ATTN_HEAD_DIM, d = i % ATTN_HEAD_DIM;
        float total_max = ml_tg[h * 2];
        for (uint s = 1; s < ATTN_DECODE_SIMDGROUPS; s++) {
            total_max = max(total_max, ml_tg[(s * ATTN_GROUP + h) * 2]);
        }
        float total_sum = 0.0f, total_acc = 0.0f;
        for (uint s = 0; s < ATTN_DECODE_SIMDGROUPS; s++) {
            const float w = exp(ml_tg[(s * ATTN_GROUP + h) * 2] - total_max);
            total_sum += ml_tg[(s * ATTN_GROUP + h) * 2 + 1] * w;
            total_acc += acc_flat[(s * ATTN_GROUP + h) * ATTN_HEAD_DIM + d] * w;
        }
        const uint q_head = q_head0 + h;
        if (args.num_splits == 1) {
            // total_sum >= 1: the term that attains total_max (sink or key) contributed exp(0).
            out[token * q_row + q_head * ATTN_HEAD_DIM + d] = total_acc / total_sum;
        } else {
            const uint partial = (token * args.num_q_heads + q_head) * args.num_splits + split;
            partials[partial * ATTN_HEAD_DIM + d] = total_acc;
            if (d == 0) {
                const uint ml_base = args.num_tokens * args.num_q_heads * args.num_splits * ATTN_HEAD_DIM;
                partials[ml_base + partial * 2] = total_max;
                partials[ml_base + partial * 2 + 1] = total_sum;
            }
        }
    }
}

// Threadgroups: (Hkv, T, num_splits) x 128 threads. Buffers: 0 args, 1 q, 2 K cache, 3 V cache,
// 4 sinks, 5 out (written when num_splits == 1), 6 partials (written when num_splits > 1).
// Fixed size: ATTN_DECODE_SIMDGROUPS (4) SIMD groups are baked into the threadgroup arrays.
[[max_total_threads_per_threadgroup(ATTN_DECODE_THREADS)]]
kernel void gptoss_attention_decode_f16(
    constant gptoss_attention_args& args [[buffer(0)]],
    const device float* q [[buffer(1)]],
    const device half* k_cache [[buffer(2)]],
    const device half* v_cache [[buffer(3)]],
    const device bfloat* sinks [[buffer(4)]],
    device float* out [[buffer(5)]],
    device float* partials [[buffer(6)]],
    uint3 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float4 q_tg[ATTN_GROUP * ATTN_HEAD_DIM / 4];
    threadgroup float p_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * ATTN_CHUNK];
    threadgroup float2 acc_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * 32];
    threadgroup float ml_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * 2];
    attention_decode_body<half, half2, half4>(args, q, k_cache, v_cache, sinks, out, partials,
                                              q_tg, p_tg, acc_tg, ml_tg, tg, sg, lane, tid);
}

// Fixed size: ATTN_DECODE_SIMDGROUPS (4) SIMD groups are baked into the threadgroup arrays.
[[max_total_threads_per_threadgroup(ATTN_DECODE_THREADS)]]
kernel void gptoss_attention_decode_f32(
    constant gptoss_attention_args& args [[buffer(0)]],
    const device float* q [[buffer(1)]],
    const device float* k_cache [[buffer(2)]],
    const device float* v_cache [[buffer(3)]],
    const device bfloat* sinks [[buffer(4)]],
    device float* out [[buffer(5)]],
    device float* partials [[buffer(6)]],
    uint3 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float4 q_tg[ATTN_GROUP * ATTN_HEAD_DIM / 4];
    threadgroup float p_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * ATTN_CHUNK];
    threadgroup float2 acc_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * 32];
    threadgroup float ml_tg[ATTN_DECODE_SIMDGROUPS * ATTN_GROUP * 2];
    attention_decode_body<float, float2, float4>(args, q, k_cache, v_cache, sinks, out, partials,
                                                 q_tg, p_tg, acc_tg, ml_tg, tg, sg, lane, tid);
}

// Merges the num_splits partials of each (token, query head): threadgroups (Hq, T) x 64 threads,
// thread d writes output dim d. Buffers: 0 args, 1 partials, 2 out.
// Fixed size: one thread per head dimension.
[[max_total_threads_per_threadgroup(ATTN_HEAD_DIM)]]
kernel void gptoss_attention_combine(
    constant gptoss_attention_args& args [[buffer(0)]],
    const device float* partials [[buffer(1)]],
    device float* out [[buffer(2)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint d [[thread_index_in_threadgroup]])
{
    const uint q_head = tg.x, token = tg.y;
    const uint first = (token * args.num_q_heads + q_head) * args.num_splits;
    const device float* ml = partials + args.num_tokens * args.num_q_heads * args.num_splits * ATTN_HEAD_DIM;
    float total_max = ml[first * 2];
    for (uint s = 1; s < args.num_splits; s++) {
        total_max = max(total_max, ml[(first + s) * 2]);
    }
    float total_sum = 0.0f, total_acc = 0.0f;
    for (uint s = 0; s < args.num_splits; s++) {
        const float w = exp(ml[(first + s) * 2] - total_max);
        total_sum += ml[(first + s) * 2 + 1] * w;
        total_acc += partials[(first + s) * ATTN_HEAD_DIM + d] * w;
    }
    out[(token * args.num_q_heads + q_head) * ATTN_HEAD_DIM + d] = total_acc / total_sum;
}

// ---------------------------------------------------------------------------------------------------
// Prefill.
// ---------------------------------------------------------------------------------------------------

template <typename KV, typename KV2, typename KV4>
inline void attention_prefill_body(
    constant gptoss_attention_args& args,
    const device float* q,
    const device KV* k_cache,
    const device KV* v_cache,
    const device bfloat* sinks,
    device float* out,
    threadgroup float4* q_tg,  // [4 tokens][8 heads][16] float4
    threadgroup float* p_tg,   // [4 tokens][8 heads][32 keys]
    threadgroup KV4* k_tg,     // [32 keys][16] KV4
    threadgroup KV2* v_tg,     // [32 keys][32] KV2
    uint2 tg, uint sg, uint lane, uint tid)
{
    const uint kv_head = tg.x;
    const uint token0 = tg.y * ATTN_PREFILL_TOKENS;
    const uint last_token = min(token0 + ATTN_PREFILL_TOKENS, args.num_tokens) - 1;
    const uint q_head0 = kv_head * ATTN_GROUP;
    const uint q_row = args.num_q_heads * ATTN_HEAD_DIM;
    const uint kv_row = args.num_kv_heads * ATTN_HEAD_DIM;
    // Keys the tile needs: from the first token's first key to the last token's position.
    const uint tile_begin = attention_first_key(args.first_position + token0, args.window);
    const uint tile_end = args.first_position + last_token + 1;

    const uint token = token0 + sg;
    const bool active = token < args.num_tokens;       // uniform over the SIMD group
    const uint pos = args.first_position + token;
    const uint lo = active ? attention_first_key(pos, args.window) : 0;
    const uint end = active ? pos + 1 : 0;

    for (uint i = tid; i < ATTN_PREFILL_TOKENS * ATTN_GROUP * ATTN_HEAD_DIM / 4; i += ATTN_PREFILL_THREADS) {
        const uint t = token0 + i / (ATTN_GROUP * ATTN_HEAD_DIM / 4);
        const uint j = i % (ATTN_GROUP * ATTN_HEAD_DIM / 4);
        q_tg[i] = t < args.num_tokens ? ((const device float4*) (q + t * q_row + q_head0 * ATTN_HEAD_DIM))[j]
                                      : float4(0.0f);
    }

    float m[ATTN_GROUP], l[ATTN_GROUP];
    float2 acc[ATTN_GROUP];
    for (uint h = 0; h < ATTN_GROUP; h++) {
        m[h] = float(sinks[q_head0 + h]);
        l[h] = lane == 0 ? 1.0f : 0.0f;   // the sink's exp(sink - max) with max = sink, counted once
        acc[h] = float2(0.0f);
    }
    const threadgroup float4* q_sg = q_tg + sg * (ATTN_GROUP * ATTN_HEAD_DIM / 4);
    threadgroup float* p_sg = p_tg + sg * (ATTN_GROUP * ATTN_CHUNK);

    for (uint c = tile_begin; c < tile_end; c += ATTN_CHUNK) {
        // Stage keys c..c+31 (zeros past tile_end so nothing uninitialised is ever read).
        threadgroup_barrier(mem_flags::mem_threadgroup);  // previous chunk fully consumed
        for (uint i = tid; i < ATTN_CHUNK * ATTN_HEAD_DIM / 4; i += ATTN_PREFILL_THREADS) {
            const uint key = c + i / (ATTN_HEAD_DIM / 4);
            const uint d4 = i % (ATTN_HEAD_DIM / 4);
            if (key < tile_end) {
                const uint offset = (key % args.num_slots) * kv_row + kv_head * ATTN_HEAD_DIM;
                k_tg[i] = ((const device KV4*) (k_cache + offset))[d4];
                const KV4 v = ((const device KV4*) (v_cache + offset))[d4];
                v_tg[2 * i] = v.xy;
                v_tg[2 * i + 1] = v.zw;
            } else {
                k_tg[i] = KV4(0);
                v_tg[2 * i] = KV2(0);
                v_tg[2 * i + 1] = KV2(0);
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);

        const uint chunk_lo = max(c, lo);
        const uint chunk_hi = min(c + ATTN_CHUNK, end);
        if (chunk_lo < chunk_hi) {   // uniform over the SIMD group
            const uint key = c + lane;
            const bool valid = key >= lo && key < end;
            float s[ATTN_GROUP];
            for (uint h = 0; h < ATTN_GROUP; h++) {
                s[h] = 0.0f;
            }
            for (uint d4 = 0; d4 < ATTN_HEAD_DIM / 4; d4++) {
                const float4 kv = float4(k_tg[lane * (ATTN_HEAD_DIM / 4) + d4]);
                for (uint h = 0; h < ATTN_GROUP; h++) {
                    s[h] += dot(q_sg[h * (ATTN_HEAD_DIM / 4) + d4], kv);
                }
            }
            for (uint h = 0; h < ATTN_GROUP; h++) {
                const float chunk_max = simd_max(valid ? s[h] : -INFINITY);
                const float new_max = max(m[h], chunk_max);
                const float rescale = exp(m[h] - new_max);
                const float p = valid ? exp(s[h] - new_max) : 0.0f;
                l[h] = l[h] * rescale + p;
                acc[h] *= rescale;
                m[h] = new_max;
                p_sg[h * ATTN_CHUNK + lane] = p;
            }
            simdgroup_barrier(mem_flags::mem_threadgroup);
            for (uint i = chunk_lo - c; i < chunk_hi - c; i++) {
                const float2 v = float2(v_tg[i * (ATTN_HEAD_DIM / 2) + lane]);
                for (uint h = 0; h < ATTN_GROUP; h++) {
                    acc[h] += p_sg[h * ATTN_CHUNK + i] * v;
                }
            }
            simdgroup_barrier(mem_flags::mem_threadgroup);
        }
    }

    for (uint h = 0; h < ATTN_GROUP; h++) {
        const float sum = simd_sum(l[h]);   // >= 1: the term attaining the max contributed exp(0)
        if (active) {
            ((device float2*) (out + token * q_row + (q_head0 + h) * ATTN_HEAD_DIM))[lane] = acc[h] / sum;
        }
    }
}

// Threadgroups: (Hkv, ceil(T / 4)) x 128 threads. Buffers: 0 args, 1 q, 2 K cache, 3 V cache, 4 sinks, 5 out.
// Fixed size: one SIMD group per token of the 4-token tile.
[[max_total_threads_per_threadgroup(ATTN_PREFILL_THREADS)]]
kernel void gptoss_attention_prefill_f16(
    constant gptoss_attention_args& args [[buffer(0)]],
    const device float* q [[buffer(1)]],
    const device half* k_cache [[buffer(2)]],
    const device half* v_cache [[buffer(3)]],
    const device bfloat* sinks [[buffer(4)]],
    device float* out [[buffer(5)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float4 q_tg[ATTN_PREFILL_TOKENS * ATTN_GROUP * ATTN_HEAD_DIM / 4];
    threadgroup float p_tg[ATTN_PREFILL_TOKENS * ATTN_GROUP * ATTN_CHUNK];
    threadgroup half4 k_tg[ATTN_CHUNK * ATTN_HEAD_DIM / 4];
    threadgroup half2 v_tg[ATTN_CHUNK * ATTN_HEAD_DIM / 2];
    attention_prefill_body<half, half2, half4>(args, q, k_cache, v_cache, sinks, out,
                                               q_tg, p_tg, k_tg, v_tg, tg, sg, lane, tid);
}

// Fixed size: one SIMD group per token of the 4-token tile.
[[max_total_threads_per_threadgroup(ATTN_PREFILL_THREADS)]]
kernel void gptoss_attention_prefill_f32(
    constant gptoss_attention_args& args [[buffer(0)]],
    const device float* q [[buffer(1)]],
    const device float* k_cache [[buffer(2)]],
    const device float* v_cache [[buffer(3)]],
    const device bfloat* sinks [[buffer(4)]],
    device float* out [[buffer(5)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float4 q_tg[ATTN_PREFILL_TOKENS * ATTN_GROUP * ATTN_HEAD_DIM / 4];
    threadgroup float p_tg[ATTN_PREFILL_TOKENS * ATTN_GROUP * ATTN_CHUNK];
    threadgroup float4 k_tg[ATTN_CHUNK * ATTN_HEAD_DIM / 4];
    threadgroup float2 v_tg[ATTN_CHUNK * ATTN_HEAD_DIM / 2];
    attention_prefill_body<float, float2, float4>(args, q, k_cache, v_cache, sinks, out,
                                                  q_tg, p_tg, k_tg, v_tg, tg, sg, lane, tid);
}
