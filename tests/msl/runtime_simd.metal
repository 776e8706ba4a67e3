// Runtime tests: SIMD-group functions and divergence detection.
#include <metal_stdlib>
using namespace metal;

// Integer reductions and scans: out[k * n + gid] for 11 results per thread.
kernel void runtime_simd_int(
    const device int* in [[buffer(0)]],
    device int* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]],
    uint n [[threads_per_grid]])
{
    const int x = in[gid];
    out[0 * n + gid] = simd_sum(x);
    out[1 * n + gid] = simd_product(x % 3 == 0 ? 2 : 1);
    out[2 * n + gid] = simd_min(x);
    out[3 * n + gid] = simd_max(x);
    out[4 * n + gid] = simd_and(x);
    out[5 * n + gid] = simd_or(x);
    out[6 * n + gid] = simd_xor(x);
    out[7 * n + gid] = simd_prefix_inclusive_sum(x);
    out[8 * n + gid] = simd_prefix_exclusive_sum(x);
    out[9 * n + gid] = simd_prefix_inclusive_product(x % 3 == 0 ? 2 : 1);
    out[10 * n + gid] = simd_prefix_exclusive_product(x % 3 == 0 ? 2 : 1);
}

// Shuffles, broadcasts and votes: out[k * n + gid] for 10 results per thread.
kernel void runtime_simd_shuffle(
    const device float* in [[buffer(0)]],
    device float* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]],
    uint n [[threads_per_grid]],
    ushort lane [[thread_index_in_simdgroup]])
{
    const float x = in[gid];
    out[0 * n + gid] = simd_shuffle(x, ushort((lane * 7) % 32));
    out[1 * n + gid] = simd_shuffle_xor(x, ushort(5));
    out[2 * n + gid] = simd_shuffle_up(x, ushort(3));
    out[3 * n + gid] = simd_shuffle_down(x, ushort(3));
    out[4 * n + gid] = simd_broadcast(x, ushort(9));
    out[5 * n + gid] = simd_broadcast_first(x);
    out[6 * n + gid] = float(uint(ulong(simd_ballot(x > 0.0f)) & 0xFFFFFFFFu));
    out[7 * n + gid] = simd_all(x > -100.0f) ? 1.0f : 0.0f;
    out[8 * n + gid] = simd_any(x > 100.0f) ? 1.0f : 0.0f;
    out[9 * n + gid] = simd_is_first() ? 1.0f : 0.0f;
}

// Float and vector reductions (float4 lanes reduce component-wise).
kernel void runtime_simd_vector(
    const device float4* in [[buffer(0)]],
    device float4* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]],
    uint n [[threads_per_grid]])
{
    const float4 x = in[gid];
    out[0 * n + gid] = simd_sum(x);
    out[1 * n + gid] = simd_max(x);
    out[2 * n + gid] = simd_min(x);
    out[3 * n + gid] = simd_prefix_exclusive_sum(x);
    out[4 * n + gid] = simd_shuffle_down(x, ushort(1));
}

// Threadgroups of 40 threads: the second SIMD group has 8 lanes.
kernel void runtime_simd_partial(
    const device int* in [[buffer(0)]],
    device int* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    out[gid] = simd_sum(in[gid]);
    simdgroup_barrier(mem_flags::mem_none);
}

// Lanes 8..31 return while lanes 0..7 call simd_sum.
kernel void runtime_simd_returned(
    device int* out [[buffer(0)]],
    uint lane [[thread_index_in_simdgroup]])
{
    if (lane >= 8) {
        return;
    }
    out[lane] = simd_sum(int(lane));
}

// Even lanes call simd_sum, odd lanes simd_max: different collectives.
kernel void runtime_simd_mismatch(
    device int* out [[buffer(0)]],
    uint lane [[thread_index_in_simdgroup]])
{
    int r;
    if (lane % 2 == 0) {
        r = simd_sum(int(lane));
    } else {
        r = simd_max(int(lane));
    }
    out[lane] = r;
}

// Half the threads wait at a barrier while the other half wait at a collective.
kernel void runtime_barrier_vs_simd(
    device int* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    if (tid < 32) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    } else {
        out[tid] = simd_sum(int(tid));
    }
}

// bf16 matrix-vector product: one SIMD group per row, simd_sum (the layer's hot pattern).
// weights: rows x cols bfloat (cols a multiple of 4), x: cols floats, y: rows floats.
struct runtime_matvec_args {
    uint rows;
    uint cols;
};

kernel void runtime_matvec_bf16(
    constant runtime_matvec_args& args [[buffer(0)]],
    const device bfloat4* weights [[buffer(1)]],
    const device float4* x [[buffer(2)]],
    device float* y [[buffer(3)]],
    uint group [[threadgroup_position_in_grid]],
    uint simd_group [[simdgroup_index_in_threadgroup]],
    uint simdgroups [[simdgroups_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]])
{
    const uint row = group * simdgroups + simd_group;
    if (row >= args.rows) {
        return;  // the whole SIMD group leaves together
    }
    const uint cols4 = args.cols / 4;
    const device bfloat4* w = weights + row * cols4;
    float sum = 0.0f;
    for (uint i = lane; i < cols4; i += 32) {
        sum += dot(float4(w[i]), x[i]);
    }
    sum = simd_sum(sum);
    if (lane == 0) {
        y[row] = sum;
    }
}

// Cost of scheduling: `iterations` SIMD-group barriers (each switches every lane but one) and as
// many threadgroup barriers.
kernel void runtime_sync_loop(
    constant uint& iterations [[buffer(0)]],
    device uint* out [[buffer(1)]],
    uint tid [[thread_index_in_threadgroup]])
{
    for (uint i = 0; i < iterations; i++) {
        simdgroup_barrier(mem_flags::mem_none);
    }
    for (uint i = 0; i < iterations; i++) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    out[tid] = iterations;
}

// Lanes 0..15 wait at a barrier while lanes 16..31 of the same SIMD group wait at simd_sum:
// neither can ever complete.
kernel void runtime_deadlock(
    device int* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    if (tid < 16) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    } else {
        out[tid] = simd_sum(int(tid));
    }
}
