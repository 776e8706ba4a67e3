// Runtime tests: atomics on device memory (across threadgroups and workers) and threadgroup memory.
#include <metal_stdlib>
using namespace metal;

// counters: [0] uint fetch_add, [1] int fetch_sub, [2] uint max, [3] uint min, [4] or, [5] and,
// [6] xor, [7] exchange target; fsum: float add.
kernel void runtime_atomic_device(
    const device uint* in [[buffer(0)]],
    device atomic_uint* counters [[buffer(1)]],
    device atomic_float* fsum [[buffer(2)]],
    device uint* previous [[buffer(4)]],
    uint gid [[thread_position_in_grid]])
{
    const uint x = in[gid];
    previous[gid] = atomic_fetch_add_explicit(&counters[0], 1u, memory_order_relaxed);
    atomic_fetch_sub_explicit((device atomic_int*) (counters + 1), 2, memory_order_relaxed);
    atomic_fetch_max_explicit(&counters[2], x, memory_order_relaxed);
    atomic_fetch_min_explicit(&counters[3], x, memory_order_relaxed);
    atomic_fetch_or_explicit(&counters[4], 1u << (x % 32), memory_order_relaxed);
    atomic_fetch_and_explicit(&counters[5], ~(1u << (x % 32)), memory_order_relaxed);
    atomic_fetch_xor_explicit(&counters[6], x, memory_order_relaxed);
    atomic_fetch_add_explicit(fsum, 0.5f, memory_order_relaxed);
}

// 64-bit atomic min/max (ulongs: [0] min, [1] max of (in[gid] << 32 | gid)). Only Apple9-family GPUs
// (M3 and later) have them; their compiler defines __HAVE_ATOMIC_ULONG_MIN_MAX__ (MSL spec 6.15.4),
// and so does the CPU layer, which behaves like an Apple9 GPU. On M1/M2 the kernel does not exist.
#if defined(__HAVE_ATOMIC_ULONG_MIN_MAX__)
kernel void runtime_atomic_ulong_minmax(
    const device uint* in [[buffer(0)]],
    device atomic_ulong* ulongs [[buffer(1)]],
    uint gid [[thread_position_in_grid]])
{
    const ulong wide = (ulong(in[gid]) << 32) | ulong(gid);
    atomic_min_explicit(&ulongs[0], wide, memory_order_relaxed);
    atomic_max_explicit(&ulongs[1], wide, memory_order_relaxed);
}
#endif

// Histogram of in % 16 per threadgroup in threadgroup atomics, plus load/store/exchange/CAS.
kernel void runtime_atomic_threadgroup(
    const device uint* in [[buffer(0)]],
    device uint* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint group [[threadgroup_position_in_grid]])
{
    threadgroup atomic_uint bins[16];
    threadgroup atomic_uint product;
    if (tid < 16) {
        atomic_store_explicit(&bins[tid], 0u, memory_order_relaxed);
    }
    if (tid == 0) {
        atomic_store_explicit(&product, 1u, memory_order_relaxed);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    atomic_fetch_add_explicit(&bins[in[gid] % 16], 1u, memory_order_relaxed);
    if (tid < 5) {
        // product *= 3 with a compare-exchange loop.
        uint expected = atomic_load_explicit(&product, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&product, &expected, expected * 3u,
                                                      memory_order_relaxed, memory_order_relaxed)) {
        }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid < 16) {
        out[group * 17 + tid] = atomic_exchange_explicit(&bins[tid], 0u, memory_order_relaxed);
    }
    if (tid == 16) {
        out[group * 17 + 16] = atomic_load_explicit(&product, memory_order_relaxed);
    }
}
