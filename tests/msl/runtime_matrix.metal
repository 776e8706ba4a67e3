// Runtime tests: simdgroup_matrix load / multiply-accumulate / store.
#include <metal_stdlib>
using namespace metal;

// c (M x N floats, row-major) = a (M x K) * b (K x N) + c, one SIMD group per 8x8 tile of c.
// threadgroups: (N / 8, M / 8), 32 threads each; dims = (M, N, K).
kernel void runtime_matmul_f32(
    constant uint3& dims [[buffer(0)]],
    const device float* a [[buffer(1)]],
    const device float* b [[buffer(2)]],
    device float* c [[buffer(3)]],
    uint2 tile [[threadgroup_position_in_grid]])
{
    const uint n = dims.y, k = dims.z;
    simdgroup_float8x8 acc;
    simdgroup_load(acc, c, n, ulong2(tile.x * 8, tile.y * 8));
    for (uint i = 0; i < k; i += 8) {
        simdgroup_float8x8 ma, mb;
        simdgroup_load(ma, a, k, ulong2(i, tile.y * 8));
        simdgroup_load(mb, b, n, ulong2(tile.x * 8, i));
        simdgroup_multiply_accumulate(acc, ma, mb, acc);
    }
    simdgroup_store(acc, c, n, ulong2(tile.x * 8, tile.y * 8));
}

// out = transpose(a) * b and a * b for 8x8 half inputs, through threadgroup memory; plus a filled matrix.
kernel void runtime_matmul_f16(
    const device half* a [[buffer(0)]],
    const device half* b [[buffer(1)]],
    device float* out [[buffer(2)]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup half staged[64];
    for (uint i = lane; i < 64; i += 32) {
        staged[i] = a[i];
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    simdgroup_half8x8 ma, mat, mb, product;
    simdgroup_load(ma, (threadgroup const half*) staged, 8);
    simdgroup_load(mat, a, 8, ulong2(0, 0), true);
    simdgroup_load(mb, b, 8);
    simdgroup_multiply(product, mat, mb);
    simdgroup_float8x8 result;
    threadgroup float staged_out[64];
    simdgroup_store(product, (threadgroup half*) staged, 8);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint i = lane; i < 64; i += 32) {
        out[i] = float(staged[i]);
    }
    simdgroup_multiply(product, ma, mb);
    simdgroup_store(product, (threadgroup half*) staged, 8);
    simdgroup_float8x8 filled = make_filled_simdgroup_matrix<float, 8, 8>(2.5f);
    simdgroup_store(filled, (threadgroup float*) staged_out, 8);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint i = lane; i < 64; i += 32) {
        out[64 + i] = float(staged[i]);
        out[128 + i] = staged_out[i];
    }
    (void) result;
}
