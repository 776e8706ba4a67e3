// Dense bf16 projections of gpt-oss: decode mat-vec (optionally with fused RMSNorm, bias, residual
// add), the fused decode QKV kernel (RMSNorm + QKV + bias + YaRN RoPE + KV-cache write), the prefill
// GEMM on simdgroup_matrix tiles, and the prefill RoPE + KV-write kernel that follows the QKV GEMM.
//
// Weights are bf16 row-major [out][in] read in place; rows are 16-byte aligned (in % 8 == 0), so a
// lane reads 8 weights per load. A bf16 is the top half of a float: (bits << 16) is exact.
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

#define HEAD_DIM 64

// Even (0, 2, 4, 6) and odd (1, 3, 5, 7) elements of 8 packed bf16 values as floats.
static inline float4 bf16_even(uint4 packed) { return as_type<float4>(packed << 16); }
static inline float4 bf16_odd(uint4 packed) { return as_type<float4>(packed & 0xFFFF0000u); }
static inline float bf16_to_float(ushort bits) { return as_type<float>(uint(bits) << 16); }

// acc[r][t]: dot product of output row row0 + r with token t, summed over the SIMD group.
struct dense_partial {
    float4 acc[GPTOSS_MATVEC_ROWS];
};

// GPTOSS_MATVEC_ROWS rows x up to GPTOSS_MATVEC_TOKENS tokens, one SIMD group. Lanes stride over the
// row in 16-byte chunks of 8 weights; each weight chunk is used for every token before the next load.
// x: token 0 of the group, rows of 2 * chunks float4; gain (if use_gain): bf16 [chunks * 8], multiplied
// into x (the RMSNorm's per-token 1/rms is applied by the caller after the reduction).
// Rows past `rows` re-read the last row (results discarded), so every lane reaches simd_sum.
static inline dense_partial dense_rows_dot(
    const device uint4* weight, uint row0, uint rows, uint chunks,
    const device float4* x, uint tokens, const device uint4* gain, bool use_gain, uint lane)
{
    dense_partial p;
    for (uint r = 0; r < GPTOSS_MATVEC_ROWS; r++) {
        p.acc[r] = 0.0f;
    }
    for (uint c = lane; c < chunks; c += 32) {
        float4 gain_even = 1.0f, gain_odd = 1.0f;
        if (use_gain) {
            const uint4 g = gain[c];
            gain_even = bf16_even(g);
            gain_odd = bf16_odd(g);
        }
        float4 x_even[GPTOSS_MATVEC_TOKENS], x_odd[GPTOSS_MATVEC_TOKENS];
        for (uint t = 0; t < GPTOSS_MATVEC_TOKENS; t++) {
            x_even[t] = 0.0f;
            x_odd[t] = 0.0f;
            if (t < tokens) {
                const float4 a = x[ulong(t) * 2 * chunks + 2 * c];
                const float4 b = x[ulong(t) * 2 * chunks + 2 * c + 1];
                x_even[t] = float4(a.x, a.z, b.x, b.z) * gain_even;
                x_odd[t] = float4(a.y, a.w, b.y, b.w) * gain_odd;
            }
        }
        for (uint r = 0; r < GPTOSS_MATVEC_ROWS; r++) {
            const uint row = min(row0 + r, rows - 1);
            const uint4 w = weight[ulong(row) * chunks + c];
            const float4 w_even = bf16_even(w), w_odd = bf16_odd(w);
            for (uint t = 0; t < GPTOSS_MATVEC_TOKENS; t++) {
                p.acc[r][t] += dot(w_even, x_even[t]) + dot(w_odd, x_odd[t]);
            }
        }
    }
    for (uint r = 0; r < GPTOSS_MATVEC_ROWS; r++) {
        p.acc[r] = simd_sum(p.acc[r]);
    }
    return p;
}

// inv_rms[t] = 1 / sqrt(mean(x[t]^2) + eps) for the threadgroup's tokens (SIMD group t computes token
// t; needs GPTOSS_MATVEC_SIMDGROUPS >= GPTOSS_MATVEC_TOKENS), then a threadgroup barrier.
static inline void tokens_inv_rms(
    const device float4* x, uint vecs, uint tokens, float epsilon, threadgroup float* inv_rms, uint sg, uint lane)
{
    if (sg < tokens) {
        float sum_sq = 0.0f;
        for (uint i = lane; i < vecs; i += 32) {
            const float4 v = x[ulong(sg) * vecs + i];
            sum_sq += dot(v, v);
        }
        sum_sq = simd_sum(sum_sq);
        if (lane == 0) {
            inv_rms[sg] = rsqrt(sum_sq / float(vecs * 4) + epsilon);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
}

// out[t, n] (+)= (RMSNorm(x[t]) * gain or x[t]) . w[n] (+ bias[n]).
// Grid: (ceil(N / (ROWS * SIMDGROUPS)), ceil(T / TOKENS)) threadgroups of 32 * SIMDGROUPS threads.
[[max_total_threads_per_threadgroup(256)]]
kernel void gptoss_matvec_bf16(
    constant gptoss_matvec_args& args [[buffer(0)]],
    const device float4* x [[buffer(1)]],
    const device uint4* weight [[buffer(2)]],
    const device ushort* bias [[buffer(3)]],
    const device uint4* gain [[buffer(4)]],
    device float* out [[buffer(5)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup float inv_rms[GPTOSS_MATVEC_TOKENS];
    const uint t0 = tg.y * GPTOSS_MATVEC_TOKENS;
    const uint tokens = min(uint(GPTOSS_MATVEC_TOKENS), args.num_tokens - t0);
    const uint chunks = args.k / 8;
    const device float4* x_group = x + ulong(t0) * (args.k / 4);
    const bool norm = (args.flags & GPTOSS_DENSE_FLAG_RMSNORM) != 0;
    if (norm) {
        tokens_inv_rms(x_group, args.k / 4, tokens, args.epsilon, (threadgroup float*) inv_rms, sg, lane);
    }
    const uint row0 = (tg.x * GPTOSS_MATVEC_SIMDGROUPS + sg) * GPTOSS_MATVEC_ROWS;
    const dense_partial p = dense_rows_dot(weight, row0, args.n, chunks, x_group, tokens, gain, norm, lane);
    if (lane < GPTOSS_MATVEC_ROWS * GPTOSS_MATVEC_TOKENS) {
        const uint r = lane / GPTOSS_MATVEC_TOKENS, t = lane % GPTOSS_MATVEC_TOKENS;
        const uint row = row0 + r;
        if (t < tokens && row < args.n) {
            float value = p.acc[r][t];
            if (norm) {
                value *= inv_rms[t];
            }
            if ((args.flags & GPTOSS_DENSE_FLAG_BIAS) != 0) {
                value += bf16_to_float(bias[row]);
            }
            device float* dst = out + ulong(t0 + t) * args.n + row;
            if ((args.flags & GPTOSS_DENSE_FLAG_ADD_RESIDUAL) != 0) {
                value += *dst;
            }
            *dst = value;
        }
    }
}

// YaRN RoPE of one interleaved pair (x_2i, x_2i+1) at an absolute position, as the reference model:
// angle rounded to float, cos/sin evaluated accurately (angles reach ~1e5 rad), both times the multiplier.
static inline float2 rope_rotate(float2 pair, uint position, uint i, constant gptoss_qkv_args& args)
{
    const float angle = float(position) * args.inv_freq[i];
    const float c = precise::cos(angle) * args.yarn_multiplier;
    const float s = precise::sin(angle) * args.yarn_multiplier;
    return float2(pair.x * c - pair.y * s, pair.y * c + pair.x * s);
}

// Stores the (already rotated for Q/K) value pair of qkv rows (r, r + 1) of token t: Q to q[t], K and
// V to the block's KV cache at slot position % kv_slots, layout [slots, Hkv, 64].
template <typename KV>
static inline void store_qkv_pair(
    constant gptoss_qkv_args& args, uint r, uint t, uint position, float2 v,
    device float* q, device KV* k_cache, device KV* v_cache)
{
    const uint q_rows = args.num_heads * HEAD_DIM, kv_rows = args.num_kv_heads * HEAD_DIM;
    if (r < q_rows) {
        device float* dst = q + ulong(t) * q_rows + r;
        dst[0] = v.x;
        dst[1] = v.y;
        return;
    }
    const ulong slot_base = ulong(position % args.kv_slots) * kv_rows;
    device KV* cache = r < q_rows + kv_rows ? k_cache : v_cache;
    const uint within = r < q_rows + kv_rows ? r - q_rows : r - q_rows - kv_rows;  // head * 64 + d
    cache[slot_base + within] = KV(v.x);
    cache[slot_base + within + 1] = KV(v.y);
}

// Decode QKV: RMSNorm(residual) * gain -> W_qkv [(Hq + 2 Hkv) 64, D] + bias -> RoPE on Q and K ->
// q [T, Hq 64] f32, K and V into the cache. Geometry as gptoss_matvec_bf16 with N = (Hq + 2 Hkv) 64;
// a SIMD group's 4 rows hold two whole RoPE pairs of one head.
template <typename KV>
static inline void qkv_rope_kv_decode(
    constant gptoss_qkv_args& args, const device float4* residual, const device uint4* gain,
    const device uint4* weight, const device ushort* bias, device float* q, device KV* k_cache,
    device KV* v_cache, threadgroup float* inv_rms, uint2 tg, uint sg, uint lane)
{
    const uint rows = (args.num_heads + 2 * args.num_kv_heads) * HEAD_DIM;
    const uint t0 = tg.y * GPTOSS_MATVEC_TOKENS;
    const uint tokens = min(uint(GPTOSS_MATVEC_TOKENS), args.num_tokens - t0);
    const device float4* x_group = residual + ulong(t0) * (args.dim / 4);
    tokens_inv_rms(x_group, args.dim / 4, tokens, args.epsilon, inv_rms, sg, lane);
    const uint row0 = (tg.x * GPTOSS_MATVEC_SIMDGROUPS + sg) * GPTOSS_MATVEC_ROWS;
    const dense_partial p = dense_rows_dot(weight, row0, rows, args.dim / 8, x_group, tokens, gain, true, lane);
    if (lane < (GPTOSS_MATVEC_ROWS / 2) * GPTOSS_MATVEC_TOKENS) {
        const uint pair = lane / GPTOSS_MATVEC_TOKENS, t = lane % GPTOSS_MATVEC_TOKENS;
        const uint r = row0 + 2 * pair;
        if (t < tokens && r < rows) {
            float2 v = float2(p.acc[2 * pair][t], p.acc[2 * pair + 1][t]) * inv_rms[t];
            v += float2(bf16_to_float(bias[r]), bf16_to_float(bias[r + 1]));
            const uint position = args.position + t0 + t;
            if (r < (args.num_heads + args.num_kv_heads) * HEAD_DIM) {
                v = rope_rotate(v, position, (r % HEAD_DIM) / 2, args);
            }
            store_qkv_pair(args, r, t0 + t, position, v, q, k_cache, v_cache);
        }
    }
}

[[max_total_threads_per_threadgroup(256)]]
kernel void gptoss_qkv_rope_kv16(
    constant gptoss_qkv_args& args [[buffer(0)]],
    const device float4* residual [[buffer(1)]],
    const device uint4* gain [[buffer(2)]],
    const device uint4* weight [[buffer(3)]],
    const device ushort* bias [[buffer(4)]],
    device float* q [[buffer(5)]],
    device half* k_cache [[buffer(6)]],
    device half* v_cache [[buffer(7)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup float inv_rms[GPTOSS_MATVEC_TOKENS];
    qkv_rope_kv_decode<half>(args, residual, gain, weight, bias, q, k_cache, v_cache,
                             (threadgroup float*) inv_rms, tg, sg, lane);
}

[[max_total_threads_per_threadgroup(256)]]
kernel void gptoss_qkv_rope_kv32(
    constant gptoss_qkv_args& args [[buffer(0)]],
    const device float4* residual [[buffer(1)]],
    const device uint4* gain [[buffer(2)]],
    const device uint4* weight [[buffer(3)]],
    const device ushort* bias [[buffer(4)]],
    device float* q [[buffer(5)]],
    device float* k_cache [[buffer(6)]],
    device float* v_cache [[buffer(7)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup float inv_rms[GPTOSS_MATVEC_TOKENS];
    qkv_rope_kv_decode<float>(args, residual, gain, weight, bias, q, k_cache, v_cache,
                              (threadgroup float*) inv_rms, tg, sg, lane);
}

// Prefill RoPE + KV write: qkv [T, (Hq + 2 Hkv) 64] f32 (the QKV GEMM's output, bias included) ->
// q [T, Hq 64] rotated, K rotated and V into the cache. Grid: (T, Hq + 2 Hkv) threadgroups of 32
// threads, one thread per pair of a head.
template <typename KV>
static inline void rope_kv_prefill(
    constant gptoss_qkv_args& args, const device float2* qkv, device float* q, device KV* k_cache,
    device KV* v_cache, uint2 tg, uint lane)
{
    const uint t = tg.x, head = tg.y;
    if (t >= args.num_tokens || head >= args.num_heads + 2 * args.num_kv_heads) {
        return;
    }
    const uint pairs_per_token = (args.num_heads + 2 * args.num_kv_heads) * (HEAD_DIM / 2);
    const uint r = head * HEAD_DIM + 2 * lane;
    float2 v = qkv[ulong(t) * pairs_per_token + r / 2];
    const uint position = args.position + t;
    if (head < args.num_heads + args.num_kv_heads) {
        v = rope_rotate(v, position, lane, args);
    }
    store_qkv_pair(args, r, t, position, v, q, k_cache, v_cache);
}

[[max_total_threads_per_threadgroup(32)]]
kernel void gptoss_rope_kv16(
    constant gptoss_qkv_args& args [[buffer(0)]],
    const device float2* qkv [[buffer(1)]],
    device float* q [[buffer(2)]],
    device half* k_cache [[buffer(3)]],
    device half* v_cache [[buffer(4)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_threadgroup]])
{
    rope_kv_prefill<half>(args, qkv, q, k_cache, v_cache, tg, lane);
}

[[max_total_threads_per_threadgroup(32)]]
kernel void gptoss_rope_kv32(
    constant gptoss_qkv_args& args [[buffer(0)]],
    const device float2* qkv [[buffer(1)]],
    device float* q [[buffer(2)]],
    device float* k_cache [[buffer(3)]],
    device float* v_cache [[buffer(4)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_threadgroup]])
{
    rope_kv_prefill<float>(args, qkv, q, k_cache, v_cache, tg, lane);
}

// Prefill GEMM: out[t, n] (+)= sum_k x[t, k] w[n, k] (+ bias[n]), x f32 [T, K], w bf16 [N, K].
// Threadgroup tile BM x BN, 4 SIMD groups in a 2 x 2 arrangement, each owning 16 x 32 outputs (2 x 4
// accumulators of 8 x 8). Per BK step x and w are staged in threadgroup memory as float (w transposed
// to [k][n] so both operands load as plain row-major 8 x 8 tiles); out-of-range rows, columns and k
// are zero-filled, so any T, N and K % 8 == 0 work. The result goes through threadgroup memory for a
// guarded epilogue (bias, residual add).
// Grid: (ceil(N / BN), ceil(T / BM)) threadgroups of GPTOSS_GEMM_THREADS threads.
[[max_total_threads_per_threadgroup(GPTOSS_GEMM_THREADS)]]
kernel void gptoss_gemm_bf16(
    constant gptoss_gemm_args& args [[buffer(0)]],
    const device float4* x [[buffer(1)]],
    const device uint4* weight [[buffer(2)]],
    const device ushort* bias [[buffer(3)]],
    device float* out [[buffer(4)]],
    uint2 tg [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sg [[simdgroup_index_in_threadgroup]])
{
    threadgroup float a_tile[GPTOSS_GEMM_BM * GPTOSS_GEMM_BK];
    threadgroup float b_tile[GPTOSS_GEMM_BK * GPTOSS_GEMM_BN];
    threadgroup float c_tile[GPTOSS_GEMM_BM * GPTOSS_GEMM_BN];
    const uint m0 = tg.y * GPTOSS_GEMM_BM, n0 = tg.x * GPTOSS_GEMM_BN;
    const uint sg_row = (sg / 2) * 16, sg_col = (sg % 2) * 32;
    const uint x_vecs = args.k / 4, w_chunks = args.k / 8;

    simdgroup_float8x8 acc[2][4];
    for (uint i = 0; i < 2; i++) {
        for (uint j = 0; j < 4; j++) {
            acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
        }
    }
    for (uint k0 = 0; k0 < args.k; k0 += GPTOSS_GEMM_BK) {
        for (uint i = tid; i < GPTOSS_GEMM_BM * GPTOSS_GEMM_BK / 4; i += GPTOSS_GEMM_THREADS) {
            const uint m = i / (GPTOSS_GEMM_BK / 4), kq = i % (GPTOSS_GEMM_BK / 4);
            const uint row = m0 + m, k = k0 + 4 * kq;
            float4 v = 0.0f;
            if (row < args.num_tokens && k < args.k) {
                v = x[ulong(row) * x_vecs + k / 4];
            }
            for (uint e = 0; e < 4; e++) {
                a_tile[m * GPTOSS_GEMM_BK + 4 * kq + e] = v[e];
            }
        }
        for (uint i = tid; i < GPTOSS_GEMM_BN * GPTOSS_GEMM_BK / 8; i += GPTOSS_GEMM_THREADS) {
            const uint nn = i / (GPTOSS_GEMM_BK / 8), kc = i % (GPTOSS_GEMM_BK / 8);
            const uint col = n0 + nn, k = k0 + 8 * kc;
            uint4 packed = 0;
            if (col < args.n && k < args.k) {
                packed = weight[ulong(col) * w_chunks + k / 8];
            }
            const float4 even = bf16_even(packed), odd = bf16_odd(packed);
            for (uint e = 0; e < 4; e++) {
                b_tile[(8 * kc + 2 * e) * GPTOSS_GEMM_BN + nn] = even[e];
                b_tile[(8 * kc + 2 * e + 1) * GPTOSS_GEMM_BN + nn] = odd[e];
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint kk = 0; kk < GPTOSS_GEMM_BK; kk += 8) {
            simdgroup_float8x8 a[2], b[4];
            for (uint i = 0; i < 2; i++) {
                simdgroup_load(a[i], (threadgroup const float*) a_tile, GPTOSS_GEMM_BK, ulong2(kk, sg_row + 8 * i));
            }
            for (uint j = 0; j < 4; j++) {
                simdgroup_load(b[j], (threadgroup const float*) b_tile, GPTOSS_GEMM_BN, ulong2(sg_col + 8 * j, kk));
            }
            for (uint i = 0; i < 2; i++) {
                for (uint j = 0; j < 4; j++) {
                    simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
                }
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (uint i = 0; i < 2; i++) {
        for (uint j = 0; j < 4; j++) {
            simdgroup_store(acc[i][j], (threadgroup float*) c_tile, GPTOSS_GEMM_BN,
                            ulong2(sg_col + 8 * j, sg_row + 8 * i));
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint i = tid; i < GPTOSS_GEMM_BM * GPTOSS_GEMM_BN; i += GPTOSS_GEMM_THREADS) {
        const uint row = m0 + i / GPTOSS_GEMM_BN, col = n0 + i % GPTOSS_GEMM_BN;
        if (row < args.num_tokens && col < args.n) {
            float value = c_tile[i];
            if ((args.flags & GPTOSS_DENSE_FLAG_BIAS) != 0) {
                value += bf16_to_float(bias[col]);
            }
            device float* dst = out + ulong(row) * args.n + col;
            if ((args.flags & GPTOSS_DENSE_FLAG_ADD_RESIDUAL) != 0) {
                value += *dst;
            }
            *dst = value;
        }
    }
}
