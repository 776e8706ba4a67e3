// Runtime tests: threadgroup memory, barriers, and their faults.
#include <metal_stdlib>
using namespace metal;

// Sum of each threadgroup's 256 inputs by a barrier-synchronised tree in a threadgroup array.
kernel void runtime_tg_reduce(
    const device float* in [[buffer(0)]],
    device float* out [[buffer(1)]],
    uint gid [[thread_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint group [[threadgroup_position_in_grid]])
{
    threadgroup float partial[256];
    partial[tid] = in[gid];
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint stride = 128; stride > 0; stride /= 2) {
        if (tid < stride) {
            partial[tid] += partial[tid + stride];
        }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) {
        out[group] = partial[0];
    }
}

// Reverses each threadgroup's slice through a [[threadgroup(0)]] buffer sized by the host, and a
// 2-D threadgroup array (threads_per_threadgroup = 64).
kernel void runtime_tg_reverse(
    const device float* in [[buffer(0)]],
    device float* out [[buffer(1)]],
    threadgroup float* scratch [[threadgroup(0)]],
    uint gid [[thread_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint n [[threads_per_threadgroup]])
{
    threadgroup float tile[8][8];
    scratch[tid] = in[gid];
    tile[tid / 8][tid % 8] = in[gid] * 2.0f;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const uint mirrored = n - 1 - tid;
    out[gid] = scratch[mirrored] + tile[mirrored / 8][mirrored % 8];
}

// Passes a threadgroup array to a helper taking a threadgroup pointer.
static void runtime_fill(threadgroup uint* data, uint index, uint value) {
    data[index] = value;
}

kernel void runtime_tg_helper(
    device uint* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup uint values[32];
    runtime_fill(values, tid, tid * 3);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[tid] = values[31 - tid];
}

// Indexes a threadgroup array one past its end (thread 31 of 32).
kernel void runtime_tg_array_oob(
    device float* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float values[32];
    values[tid + 1] = 1.0f;
    out[tid] = 0.0f;
}

// Writes beyond the [[threadgroup(0)]] size bound by the host.
kernel void runtime_tg_param_oob(
    threadgroup float* scratch [[threadgroup(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    scratch[tid * 4] = 1.0f;
}

// Threads 16..31 return before the barrier that threads 0..15 wait at.
kernel void runtime_barrier_skipped(
    device float* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    if (tid >= 16) {
        return;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    out[tid] = 1.0f;
}

// Even and odd threads wait at two different barriers.
kernel void runtime_barrier_mismatch(
    device float* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    if (tid % 2 == 0) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    } else {
        threadgroup_barrier(mem_flags::mem_device);
    }
    out[tid] = 1.0f;
}

// Each thread writes values[tid] and, without a barrier, reads the value of a thread of the other
// SIMD group (64 threads): a data race on threadgroup memory. With `synchronised` a barrier
// separates the write and the read: race-free.
kernel void runtime_tg_race(
    constant uint& synchronised [[buffer(0)]],
    device float* out [[buffer(1)]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float values[64];
    values[tid] = float(tid);
    if (synchronised != 0) {
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    out[tid] = values[(tid + 32) % 64];
}

// SIMD group 0 reads values[32..63] before SIMD group 1 writes them (no barrier): a write after
// a read by another SIMD group, found when the writer is switched out.
kernel void runtime_tg_race_write_after_read(
    device float* out [[buffer(0)]],
    uint tid [[thread_index_in_threadgroup]])
{
    threadgroup float values[64];
    if (tid < 32) {
        out[tid] = values[tid + 32];
    } else {
        values[tid] = 1.0f;
    }
}
