// MoE expert kernels: MXFP4 mlp1 + clamped SwiGLU and mlp2 + weighted residual accumulation, for decode
// (mat-vec of the k routed experts) and prefill (tokens grouped by expert, simdgroup_matrix GEMMs).
// Launch wrappers and dispatch geometry: launch-moe.c / internal/kernels-moe.h.
//
// MXFP4 in model.bin: 32 values per block, 16 bytes (value 2i = low nibble of byte i, 2i+1 = high
// nibble) and one stored scale byte s' = s + 14, where the checkpoint's E8M0 byte s means 2^(s-127).
// Dequantisation: a nibble's sign bit goes to the fp16 sign and its 3 magnitude bits to the low two
// exponent bits and the top mantissa bit of an fp16, which then holds exactly e2m1 · 2^-14 (code 1,
// the e2m1 subnormal 0.5, becomes the fp16 subnormal 2^-15). The scale float with exponent field s'
// is 2^(s'-127) = 2^(s-113), so fp16 value · scale = e2m1 · 2^(s-127): exact, no table, no ldexp.
#include <metal_stdlib>
#include <internal/kernel-args.h>
using namespace metal;

#define GPTOSS_MOE_NO_EXPERT 0xFFFFFFFFu

// Prefill tiles: 32 (token, slot) rows x 32 outputs per threadgroup, K in steps of one MXFP4 block.
#define GPTOSS_MOE_TILE_ROWS 32
#define GPTOSS_MOE_TILE_K 32
#define GPTOSS_MOE_TILE_ACT 32            // mlp1: 32 activations = 64 interleaved gate/linear rows
#define GPTOSS_MOE_TILE_OUT 32            // mlp2: 32 output features
#define GPTOSS_MOE_PREFILL_THREADS 128    // 4 SIMD groups, 8 tile rows each
#define GPTOSS_MOE_MAX_EXPERTS 256

// The 8 nibbles of one little-endian 32-bit word of a block (values 8q..8q+7 for word q) as floats
// scaled by 2^-14: lo = values 0..3, hi = values 4..7 of the word.
static inline void mxfp4_decode_word(uint w, thread float4& lo, thread float4& hi) {
    // Nibble n of the word is value n; masking nibbles n and n+4 at once yields an fp16 pair.
    const uint n04 = w & 0x000F000Fu;
    const uint n15 = (w >> 4) & 0x000F000Fu;
    const uint n26 = (w >> 8) & 0x000F000Fu;
    const uint n37 = (w >> 12) & 0x000F000Fu;
    const half2 h04 = as_type<half2>(((n04 & 0x00070007u) << 9) | ((n04 & 0x00080008u) << 12));
    const half2 h15 = as_type<half2>(((n15 & 0x00070007u) << 9) | ((n15 & 0x00080008u) << 12));
    const half2 h26 = as_type<half2>(((n26 & 0x00070007u) << 9) | ((n26 & 0x00080008u) << 12));
    const half2 h37 = as_type<half2>(((n37 & 0x00070007u) << 9) | ((n37 & 0x00080008u) << 12));
    lo = float4(float(h04.x), float(h15.x), float(h26.x), float(h37.x));
    hi = float4(float(h04.y), float(h15.y), float(h26.y), float(h37.y));
}

// 2^(s'-127) for a stored scale byte s' (>= 1: a normal float).
static inline float mxfp4_scale(uchar stored) {
    return as_type<float>(uint(stored) << 23);
}

// Dot product of one MXFP4 block (16 bytes) with 32 floats (8 float4), without the block scale.
static inline float mxfp4_block_dot(uint4 block, const device float4* x) {
    float sum = 0.0f;
    for (uint q = 0; q < 4; q++) {
        float4 lo, hi;
        mxfp4_decode_word(block[q], lo, hi);
        sum += dot(lo, x[2 * q]) + dot(hi, x[2 * q + 1]);
    }
    return sum;
}

static inline float bf16_to_float(ushort bits) {
    return as_type<float>(uint(bits) << 16);
}

static inline float clamped_swiglu(float gate, float linear, float limit) {
    const float glu = min(gate, limit);
    const float lin = clamp(linear, -limit, limit);
    return glu / (1.0f + exp(-1.702f * glu)) * (lin + 1.0f);
}

// ---------------------------------------------------------------------------------------------------
// Decode

// act[t, slot, j] = SwiGLU of rows 2j (gate) and 2j+1 (linear) of expert_ids[t, slot]'s mlp1 · x_norm[t].
// A SIMD group per activation j (both rows, sharing the x loads); lanes stride over 32-value blocks.
kernel void gptoss_moe_mlp1_swiglu_decode(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device float4* x_norm [[buffer(1)]],      // [T, D]
    const device uint* expert_ids [[buffer(2)]],    // [T, k]
    const device uchar* weights [[buffer(3)]],      // the block's MoE section
    device float* act [[buffer(4)]],                // [T, k, I]
    uint3 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint num_sg [[simdgroups_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    const uint j = tg.x * num_sg + sg;
    const uint slot = tg.y;
    const uint token = tg.z;
    if (j >= args.mlp_dim || token >= args.num_tokens) {
        return;  // whole SIMD group
    }
    const uint pair = token * args.num_active + slot;
    const uint expert = expert_ids[pair];
    device float* out = act + (ulong) pair * args.mlp_dim + j;
    if (expert >= args.num_experts) {
        if (lane == 0) {
            *out = 0.0f;  // never produced by the router; keeps reads in bounds
        }
        return;
    }
    const uint blocks_per_row = args.embedding_dim / 32;
    const device uchar* base = weights + (ulong) expert * args.expert_size;
    const ulong gate_row = 2ul * j * blocks_per_row;  // in blocks
    const device uint4* gate_blocks = reinterpret_cast<const device uint4*>(base + args.mlp1_blocks_offset) + gate_row;
    const device uint4* linear_blocks = gate_blocks + blocks_per_row;
    const device uchar* gate_scales = base + args.mlp1_scales_offset + gate_row;
    const device uchar* linear_scales = gate_scales + blocks_per_row;
    const device float4* x = x_norm + (ulong) token * (args.embedding_dim / 4);

    float gate = 0.0f;
    float linear = 0.0f;
    for (uint b = lane; b < blocks_per_row; b += 32) {
        const device float4* xb = x + 8 * b;
        gate += mxfp4_block_dot(gate_blocks[b], xb) * mxfp4_scale(gate_scales[b]);
        linear += mxfp4_block_dot(linear_blocks[b], xb) * mxfp4_scale(linear_scales[b]);
    }
    gate = simd_sum(gate);
    linear = simd_sum(linear);
    if (lane == 0) {
        const device ushort* bias = reinterpret_cast<const device ushort*>(base + args.mlp1_bias_offset);
        *out = clamped_swiglu(gate + bf16_to_float(bias[2 * j]), linear + bf16_to_float(bias[2 * j + 1]),
                              args.swiglu_limit);
    }
}

// residual[t, d] += sum over slots of expert_weights[t, slot] · (mlp2[e][d] · act[t, slot] + bias[e][d]).
// A SIMD group per output feature d, looping over the k slots (the sum stays in registers).
kernel void gptoss_moe_mlp2_accumulate_decode(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device float4* act [[buffer(1)]],          // [T, k, I]
    const device uint* expert_ids [[buffer(2)]],     // [T, k]
    const device float* expert_weights [[buffer(3)]],// [T, k]
    const device uchar* weights [[buffer(4)]],       // the block's MoE section
    device float* residual [[buffer(5)]],            // [T, D]
    uint2 tg [[threadgroup_position_in_grid]],
    uint sg [[simdgroup_index_in_threadgroup]],
    uint num_sg [[simdgroups_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    const uint d = tg.x * num_sg + sg;
    const uint token = tg.y;
    if (d >= args.embedding_dim || token >= args.num_tokens) {
        return;  // whole SIMD group
    }
    const uint blocks_per_row = args.mlp_dim / 32;
    float partial = 0.0f;      // this lane's share of sum_slot w_slot * dot_slot
    float bias_sum = 0.0f;     // sum_slot w_slot * bias_slot (same in every lane)
    for (uint slot = 0; slot < args.num_active; slot++) {
        const uint pair = token * args.num_active + slot;
        const uint expert = expert_ids[pair];
        if (expert >= args.num_experts) {
            continue;  // uniform across the SIMD group
        }
        const float w = expert_weights[pair];
        const device uchar* base = weights + (ulong) expert * args.expert_size;
        const ulong row = (ulong) d * blocks_per_row;
        const device uint4* blocks = reinterpret_cast<const device uint4*>(base + args.mlp2_blocks_offset) + row;
        const device uchar* scales = base + args.mlp2_scales_offset + row;
        const device float4* a = act + (ulong) pair * (args.mlp_dim / 4);
        float dot_part = 0.0f;
        for (uint b = lane; b < blocks_per_row; b += 32) {
            dot_part += mxfp4_block_dot(blocks[b], a + 8 * b) * mxfp4_scale(scales[b]);
        }
        partial += w * dot_part;
        bias_sum += w * bf16_to_float(reinterpret_cast<const device ushort*>(base + args.mlp2_bias_offset)[d]);
    }
    const float total = simd_sum(partial);
    if (lane == 0) {
        residual[(ulong) token * args.embedding_dim + d] += total + bias_sum;
    }
}

// ---------------------------------------------------------------------------------------------------
// Prefill: rows are (token, slot) pairs p = token * k + slot, grouped by expert.

// One threadgroup. plan = [expert_start[E + 1], tile_start[E + 1]] (tile_start counts 32-row tiles);
// row_pairs[expert_start[e] ..] = the pairs routed to expert e (order within an expert is arbitrary:
// every row is computed independently, so results do not depend on it).
kernel void gptoss_moe_scatter(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device uint* expert_ids [[buffer(1)]],     // [T, k]
    device uint* plan [[buffer(2)]],                 // [2 (E + 1)]
    device uint* row_pairs [[buffer(3)]],            // [T k]
    uint tid [[thread_index_in_threadgroup]],
    uint threads [[threads_per_threadgroup]])
{
    threadgroup atomic_uint counts[GPTOSS_MOE_MAX_EXPERTS];
    const uint E = args.num_experts;
    const uint pairs = args.num_tokens * args.num_active;
    for (uint e = tid; e < E; e += threads) {
        atomic_store_explicit(&counts[e], 0u, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint p = tid; p < pairs; p += threads) {
        const uint e = expert_ids[p];
        if (e < E) {
            atomic_fetch_add_explicit(&counts[e], 1u, memory_order_relaxed);
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        // Exclusive prefix sums (E <= 256: one thread is cheaper than a scan's barriers); counts
        // becomes each expert's write cursor.
        uint rows = 0;
        uint tiles = 0;
        for (uint e = 0; e < E; e++) {
            const uint n = atomic_load_explicit(&counts[e], memory_order_relaxed);
            plan[e] = rows;
            plan[E + 1 + e] = tiles;
            atomic_store_explicit(&counts[e], rows, memory_order_relaxed);
            rows += n;
            tiles += (n + GPTOSS_MOE_TILE_ROWS - 1) / GPTOSS_MOE_TILE_ROWS;
        }
        plan[E] = rows;
        plan[2 * E + 1] = tiles;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint p = tid; p < pairs; p += threads) {
        const uint e = expert_ids[p];
        if (e < E) {
            row_pairs[atomic_fetch_add_explicit(&counts[e], 1u, memory_order_relaxed)] = p;
        }
    }
}

// Which expert and rows a row tile covers: false when the tile is past the last expert's tiles.
static inline bool moe_find_tile(const device uint* plan, uint E, uint tile, thread uint& expert,
                                 thread uint& row_begin, thread uint& row_count) {
    const device uint* tile_start = plan + E + 1;
    if (tile >= tile_start[E]) {
        return false;
    }
    uint lo = 0;
    uint hi = E;  // invariant: tile_start[lo] <= tile < tile_start[hi]
    while (hi - lo > 1) {
        const uint mid = (lo + hi) / 2;
        if (tile_start[mid] <= tile) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    expert = lo;
    row_begin = plan[lo] + (tile - tile_start[lo]) * GPTOSS_MOE_TILE_ROWS;
    row_count = min((uint) GPTOSS_MOE_TILE_ROWS, plan[lo + 1] - row_begin);
    return true;
}

// Dequantises `rows` MXFP4 rows (blocks + scales, row stride blocks_per_row) at block column b into
// tile[rows][32] (floats); `parts` threads per block, each decoding 16 / parts bytes.
static inline void moe_load_weight_tile(const device uint* blocks_words, const device uchar* scales,
                                        uint blocks_per_row, uint b, uint rows, threadgroup float* tile, uint tid) {
    const uint words_per_thread = 4 * rows / GPTOSS_MOE_PREFILL_THREADS;  // 2 (64 rows) or 1 (32 rows)
    const uint parts = 4 / words_per_thread;
    const uint r = tid / parts;
    const uint first_word = (tid % parts) * words_per_thread;
    const ulong block = (ulong) r * blocks_per_row + b;
    const float scale = mxfp4_scale(scales[block]);
    for (uint q = first_word; q < first_word + words_per_thread; q++) {
        float4 lo, hi;
        mxfp4_decode_word(blocks_words[block * 4 + q], lo, hi);
        threadgroup float* dst = tile + r * GPTOSS_MOE_TILE_K + 8 * q;
        dst[0] = lo.x * scale; dst[1] = lo.y * scale; dst[2] = lo.z * scale; dst[3] = lo.w * scale;
        dst[4] = hi.x * scale; dst[5] = hi.y * scale; dst[6] = hi.z * scale; dst[7] = hi.w * scale;
    }
}

// Gathers 32 rows x 32 floats of src (row of pair p at src + p * row_stride + k0) into tile[32][32];
// rows past row_count are zero.
static inline void moe_load_input_tile(const device float* src, ulong row_stride, uint k0, uint pair_divisor,
                                       const device uint* row_pairs, uint row_begin, uint row_count,
                                       threadgroup float* tile, uint tid) {
    const uint r = tid / 4;          // 128 threads: 4 per row, 8 floats each
    const uint c = (tid % 4) * 8;
    threadgroup float* dst = tile + r * GPTOSS_MOE_TILE_K + c;
    if (r < row_count) {
        const uint src_row = row_pairs[row_begin + r] / pair_divisor;
        const device float4* s = reinterpret_cast<const device float4*>(src + src_row * row_stride + k0 + c);
        const float4 a = s[0];
        const float4 b = s[1];
        dst[0] = a.x; dst[1] = a.y; dst[2] = a.z; dst[3] = a.w;
        dst[4] = b.x; dst[5] = b.y; dst[6] = b.z; dst[7] = b.w;
    } else {
        for (uint i = 0; i < 8; i++) {
            dst[i] = 0.0f;
        }
    }
}

// Grouped GEMM for mlp1 + SwiGLU: threadgroup (x, y) computes activations 32x .. 32x + 31 of row tile y
// (see moe_find_tile); act[p, j] as in the decode kernel. Threadgroups past the last tile exit.
// Fixed size: 4 SIMD groups x 8 rows of the 32-row tile.
[[max_total_threads_per_threadgroup(GPTOSS_MOE_PREFILL_THREADS)]]
kernel void gptoss_moe_mlp1_swiglu_prefill(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device float* x_norm [[buffer(1)]],        // [T, D]
    const device uint* plan [[buffer(2)]],           // from gptoss_moe_scatter
    const device uint* row_pairs [[buffer(3)]],      // [T k]
    const device uchar* weights [[buffer(4)]],       // the block's MoE section
    device float* act [[buffer(5)]],                 // [T, k, I]
    uint2 tg [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sg [[simdgroup_index_in_threadgroup]])
{
    threadgroup float x_tile[GPTOSS_MOE_TILE_ROWS * GPTOSS_MOE_TILE_K];
    threadgroup float w_tile[2 * GPTOSS_MOE_TILE_ACT * GPTOSS_MOE_TILE_K];
    threadgroup float h_tile[GPTOSS_MOE_TILE_ROWS * 2 * GPTOSS_MOE_TILE_ACT];
    uint expert, row_begin, row_count;
    if (!moe_find_tile(plan, args.num_experts, tg.y, expert, row_begin, row_count)) {
        return;  // whole threadgroup
    }
    const uint D = args.embedding_dim;
    const uint blocks_per_row = D / 32;
    const uint act0 = tg.x * GPTOSS_MOE_TILE_ACT;
    const device uchar* base = weights + (ulong) expert * args.expert_size;
    const ulong first_row = 2ul * act0;
    const device uint* blocks_words =
        reinterpret_cast<const device uint*>(base + args.mlp1_blocks_offset) + first_row * blocks_per_row * 4;
    const device uchar* scales = base + args.mlp1_scales_offset + first_row * blocks_per_row;

    simdgroup_float8x8 acc[8];  // rows 8 sg .. 8 sg + 7, columns 8 n .. 8 n + 7 of the 32 x 64 tile
    for (uint n = 0; n < 8; n++) {
        acc[n] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
    for (uint b = 0; b < blocks_per_row; b++) {
        moe_load_input_tile(x_norm, D, 32 * b, args.num_active, row_pairs, row_begin, row_count, x_tile, tid);
        moe_load_weight_tile(blocks_words, scales, blocks_per_row, b, 2 * GPTOSS_MOE_TILE_ACT, w_tile, tid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint k8 = 0; k8 < GPTOSS_MOE_TILE_K; k8 += 8) {
            simdgroup_float8x8 a;
            simdgroup_load(a, (threadgroup const float*) x_tile, GPTOSS_MOE_TILE_K, ulong2(k8, 8 * sg));
            for (uint n = 0; n < 8; n++) {
                simdgroup_float8x8 w;  // w(k, c) = w_tile[8 n + c][k8 + k]
                simdgroup_load(w, (threadgroup const float*) w_tile, GPTOSS_MOE_TILE_K, ulong2(k8, 8 * n), true);
                simdgroup_multiply_accumulate(acc[n], a, w, acc[n]);
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (uint n = 0; n < 8; n++) {
        simdgroup_store(acc[n], (threadgroup float*) h_tile, 2 * GPTOSS_MOE_TILE_ACT, ulong2(8 * n, 8 * sg));
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const uint r = tid / 4;              // 4 threads per row, 8 activations each
    const uint j0 = (tid % 4) * 8;
    if (r < row_count) {
        const uint pair = row_pairs[row_begin + r];
        const device ushort* bias = reinterpret_cast<const device ushort*>(base + args.mlp1_bias_offset);
        device float* out = act + (ulong) pair * args.mlp_dim + act0;
        for (uint j = j0; j < j0 + 8; j++) {
            const float gate = h_tile[r * 2 * GPTOSS_MOE_TILE_ACT + 2 * j] + bf16_to_float(bias[2 * (act0 + j)]);
            const float linear =
                h_tile[r * 2 * GPTOSS_MOE_TILE_ACT + 2 * j + 1] + bf16_to_float(bias[2 * (act0 + j) + 1]);
            out[j] = clamped_swiglu(gate, linear, args.swiglu_limit);
        }
    }
}

// Grouped GEMM for mlp2: threadgroup (x, y) computes outputs 32x .. 32x + 31 of row tile y and writes
// expert_out[p, d] = expert_weights[p] · (mlp2[e][d] · act[p] + bias[e][d]).
// Fixed size: 4 SIMD groups x 8 rows of the 32-row tile.
[[max_total_threads_per_threadgroup(GPTOSS_MOE_PREFILL_THREADS)]]
kernel void gptoss_moe_mlp2_prefill(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device float* act [[buffer(1)]],           // [T, k, I]
    const device uint* plan [[buffer(2)]],
    const device uint* row_pairs [[buffer(3)]],
    const device float* expert_weights [[buffer(4)]],// [T, k]
    const device uchar* weights [[buffer(5)]],       // the block's MoE section
    device float* expert_out [[buffer(6)]],          // [T, k, D]
    uint2 tg [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sg [[simdgroup_index_in_threadgroup]])
{
    threadgroup float x_tile[GPTOSS_MOE_TILE_ROWS * GPTOSS_MOE_TILE_K];
    threadgroup float w_tile[GPTOSS_MOE_TILE_OUT * GPTOSS_MOE_TILE_K];
    threadgroup float y_tile[GPTOSS_MOE_TILE_ROWS * GPTOSS_MOE_TILE_OUT];
    uint expert, row_begin, row_count;
    if (!moe_find_tile(plan, args.num_experts, tg.y, expert, row_begin, row_count)) {
        return;  // whole threadgroup
    }
    const uint I = args.mlp_dim;
    const uint blocks_per_row = I / 32;
    const uint d0 = tg.x * GPTOSS_MOE_TILE_OUT;
    const device uchar* base = weights + (ulong) expert * args.expert_size;
    const device uint* blocks_words =
        reinterpret_cast<const device uint*>(base + args.mlp2_blocks_offset) + (ulong) d0 * blocks_per_row * 4;
    const device uchar* scales = base + args.mlp2_scales_offset + (ulong) d0 * blocks_per_row;

    simdgroup_float8x8 acc[4];
    for (uint n = 0; n < 4; n++) {
        acc[n] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
    for (uint b = 0; b < blocks_per_row; b++) {
        moe_load_input_tile(act, I, 32 * b, 1, row_pairs, row_begin, row_count, x_tile, tid);
        moe_load_weight_tile(blocks_words, scales, blocks_per_row, b, GPTOSS_MOE_TILE_OUT, w_tile, tid);
        threadgroup_barrier(mem_flags::mem_threadgroup);
        for (uint k8 = 0; k8 < GPTOSS_MOE_TILE_K; k8 += 8) {
            simdgroup_float8x8 a;
            simdgroup_load(a, (threadgroup const float*) x_tile, GPTOSS_MOE_TILE_K, ulong2(k8, 8 * sg));
            for (uint n = 0; n < 4; n++) {
                simdgroup_float8x8 w;
                simdgroup_load(w, (threadgroup const float*) w_tile, GPTOSS_MOE_TILE_K, ulong2(k8, 8 * n), true);
                simdgroup_multiply_accumulate(acc[n], a, w, acc[n]);
            }
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    for (uint n = 0; n < 4; n++) {
        simdgroup_store(acc[n], (threadgroup float*) y_tile, GPTOSS_MOE_TILE_OUT, ulong2(8 * n, 8 * sg));
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    const uint r = tid / 4;
    const uint c0 = (tid % 4) * 8;
    if (r < row_count) {
        const uint pair = row_pairs[row_begin + r];
        const float w = expert_weights[pair];
        const device ushort* bias = reinterpret_cast<const device ushort*>(base + args.mlp2_bias_offset);
        device float* out = expert_out + (ulong) pair * args.embedding_dim + d0;
        for (uint c = c0; c < c0 + 8; c++) {
            out[c] = w * (y_tile[r * GPTOSS_MOE_TILE_OUT + c] + bf16_to_float(bias[d0 + c]));
        }
    }
}

// residual[t, :] += sum over slots (in slot order) of expert_out[t, slot, :]; a thread per float4.
kernel void gptoss_moe_gather(
    constant gptoss_moe_args& args [[buffer(0)]],
    const device float4* expert_out [[buffer(1)]],   // [T, k, D]
    const device uint* expert_ids [[buffer(2)]],     // [T, k]: slots with an invalid id are skipped
    device float4* residual [[buffer(3)]],           // [T, D]
    uint2 gid [[thread_position_in_grid]])
{
    const uint quads = args.embedding_dim / 4;
    const uint c = gid.x;
    const uint token = gid.y;
    if (c >= quads || token >= args.num_tokens) {
        return;
    }
    float4 sum = residual[(ulong) token * quads + c];
    for (uint slot = 0; slot < args.num_active; slot++) {
        const uint pair = token * args.num_active + slot;
        if (expert_ids[pair] < args.num_experts) {
            sum += expert_out[(ulong) pair * quads + c];
        }
    }
    residual[(ulong) token * quads + c] = sum;
}
