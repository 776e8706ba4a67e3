// Data-race detection on threadgroup memory (opt-in: GPTOSS_CPU_RACE_CHECK=1).
//
// Within one threadgroup only one fiber runs at a time, so every byte of threadgroup memory that
// changed between two fiber switches was written by the fiber that just ran: a diff against a
// reference copy at each switch attributes writes exactly. Checked accesses (threadgroup arrays and
// pointers) record who touched what. Between two barriers ("epochs") a byte written by one thread
// and accessed by a thread of another SIMD group is a race. Lanes of one SIMD group run in
// lockstep on the GPU, so they are not checked against each other; atomics are exempt.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "msl/msl_rt_core.h"

namespace msl_rt {

struct race_state {
    char* memory = nullptr;        // the threadgroup arena
    size_t size = 0;
    std::vector<char> reference;   // contents at the last switch
    std::vector<uint16_t> writer;  // lane index + 1 of the last write in writer_epoch
    std::vector<uint32_t> writer_epoch;
    std::vector<uint16_t> accessor;
    std::vector<uint32_t> accessor_epoch;
    std::vector<uint32_t> atomic_epoch;  // bytes accessed atomically in this epoch
    uint32_t epoch = 0;
};

bool race_checking_enabled();
// Sizes the shadow state for the dispatch's arena (call after prepare_threadgroup_memory).
void race_prepare(race_state& race, char* memory, size_t size);
// A threadgroup starts: new epoch, reference = current contents.
void race_begin_threadgroup(race_state& race);
// Lane `l` is switched out (or completes a barrier): attribute its writes; faults on a race.
void race_attribute_writes(threadgroup_state* tg, const lane* l);
// A barrier completed: later accesses are ordered after every earlier write.
inline void race_new_epoch(race_state& race) { race.epoch++; }

}  // namespace msl_rt
