// Runs one threadgroup: every thread is a fiber; barriers and SIMD-group collectives switch fibers.
#pragma once

#include <cstddef>

#include "msl/msl_rt_core.h"
#include "race.h"

namespace msl_rt {

// Fiber stacks, lane records and threadgroup memory of one worker thread, reused across threadgroups.
struct worker_resources {
    void* mapping = nullptr;
    size_t mapping_size = 0;
    char* stacks = nullptr;          // per lane a slot [guard page][stack][lane pointer], slot-aligned
    size_t stack_size = 0;
    size_t stack_stride = 0;
    uint32_t stack_capacity = 0;     // lanes the mapping holds
    lane lanes[max_threads_per_threadgroup];
    simdgroup_state simdgroups[max_threads_per_threadgroup / simd_width];
    uint32_t ready[max_threads_per_threadgroup];
    char* threadgroup_memory = nullptr;  // 16-byte aligned arena
    size_t threadgroup_memory_size = 0;
    threadgroup_state tg;
    race_state race;

    ~worker_resources();
};

// Sets up threadgroup memory for a dispatch (static variables first, then [[threadgroup(i)]] regions)
// and fills it with a poison pattern, since the GPU leaves it uninitialised. False: out of memory.
bool prepare_threadgroup_memory(worker_resources& worker, const dispatch_state& dispatch);

// Runs threadgroup `group` to completion. False if it faulted (message in worker.tg.fault_message).
bool run_threadgroup(worker_resources& worker, const dispatch_state& dispatch, const uint32_t group[3]);

// Fiber stack size in bytes: GPTOSS_CPU_FIBER_STACK_KB, default 64 KiB.
size_t fiber_stack_size();

}  // namespace msl_rt
