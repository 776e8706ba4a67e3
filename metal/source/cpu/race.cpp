// Data-race detection on threadgroup memory; see race.h.
#include "race.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace msl_rt {

bool race_checking = race_checking_enabled();

bool race_checking_enabled() {
    const char* env = std::getenv("GPTOSS_CPU_RACE_CHECK");
    return env != nullptr && env[0] != '\0' && std::strcmp(env, "0") != 0;
}

void race_prepare(race_state& race, char* memory, size_t size) {
    race.memory = memory;
    race.size = size;
    if (race.writer.size() < size) {
        race.reference.resize(size);
        race.writer.assign(size, 0);
        race.writer_epoch.assign(size, 0);
        race.accessor.assign(size, 0);
        race.accessor_epoch.assign(size, 0);
        race.atomic_epoch.assign(size, 0);
    }
}

void race_begin_threadgroup(race_state& race) {
    race.epoch++;
    std::memcpy(race.reference.data(), race.memory, race.size);
}

static void describe_offset(const threadgroup_state* tg, size_t offset, char* out, size_t capacity) {
    const char* address = tg->static_memory + offset;
    for (uint32_t i = 0; i < max_argument_index; i++) {
        const char* base = tg->threadgroup_args[i];
        if (base != nullptr && address >= base && address < base + tg->dispatch->threadgroup_sizes[i]) {
            std::snprintf(out, capacity, "[[threadgroup(%u)]] byte offset %zu", i, (size_t) (address - base));
            return;
        }
    }
    std::snprintf(out, capacity, "threadgroup variables byte offset %zu", offset);
}

static void position(const threadgroup_state* tg, uint16_t lane_plus_one, uint32_t out[3]) {
    const lane& l = tg->lanes[lane_plus_one - 1];
    out[0] = l.tid[0];
    out[1] = l.tid[1];
    out[2] = l.tid[2];
}

void race_access(const void* p, size_t size) {
    const lane* self = current_lane();
    threadgroup_state* tg = self->tg;
    race_state* race = tg->race;
    if (race == nullptr) {
        return;
    }
    const size_t start = (size_t) (static_cast<const char*>(p) - race->memory);
    if (start >= race->size) {
        return;
    }
    const uint16_t me = (uint16_t) (self->index + 1);
    for (size_t b = start; b < start + size && b < race->size; b++) {
        if (race->writer_epoch[b] == race->epoch && race->writer[b] != me && race->atomic_epoch[b] != race->epoch &&
            tg->lanes[race->writer[b] - 1].simd_group != self->simd_group) {
            char where[96];
            uint32_t w[3];
            describe_offset(tg, b, where, sizeof(where));
            position(tg, race->writer[b], w);
            fault("data race on threadgroup memory: this thread accesses %s, written since the last barrier by "
                  "thread_position_in_threadgroup (%u, %u, %u) of SIMD group %u", where, w[0], w[1], w[2],
                  tg->lanes[race->writer[b] - 1].simd_group);
        }
        // Keep an earlier accessor from another SIMD group: if this thread writes the byte next,
        // that earlier access is the race to report.
        if (race->accessor_epoch[b] != race->epoch ||
            tg->lanes[race->accessor[b] - 1].simd_group == self->simd_group) {
            race->accessor[b] = me;
            race->accessor_epoch[b] = race->epoch;
        }
    }
}

void race_atomic(const void* p, size_t size) {
    const lane* self = current_lane();
    race_state* race = self->tg->race;
    if (race == nullptr) {
        return;
    }
    const size_t start = (size_t) (static_cast<const char*>(p) - race->memory);
    if (start >= race->size) {
        return;  // device memory
    }
    for (size_t b = start; b < start + size && b < race->size; b++) {
        race->atomic_epoch[b] = race->epoch;
    }
}

void race_attribute_writes(threadgroup_state* tg, const lane* l) {
    race_state* race = tg->race;
    char* memory = race->memory;
    char* reference = race->reference.data();
    const uint16_t me = (uint16_t) (l->index + 1);
    for (size_t chunk = 0; chunk < race->size; chunk += 64) {
        const size_t n = race->size - chunk < 64 ? race->size - chunk : 64;
        if (std::memcmp(memory + chunk, reference + chunk, n) == 0) {
            continue;
        }
        for (size_t b = chunk; b < chunk + n; b++) {
            if (memory[b] == reference[b] || race->atomic_epoch[b] == race->epoch) {
                continue;
            }
            const uint16_t other = race->writer_epoch[b] == race->epoch && race->writer[b] != me ? race->writer[b]
                                 : race->accessor_epoch[b] == race->epoch && race->accessor[b] != me ? race->accessor[b] : 0;
            if (other != 0 && tg->lanes[other - 1].simd_group != l->simd_group) {
                char where[96];
                uint32_t o[3];
                describe_offset(tg, b, where, sizeof(where));
                position(tg, other, o);
                fault_at(l, "data race on threadgroup memory: this thread wrote %s, which thread_position_in_threadgroup "
                         "(%u, %u, %u) of SIMD group %u accessed since the last barrier", where, o[0], o[1], o[2],
                         tg->lanes[other - 1].simd_group);
            }
            race->writer[b] = me;
            race->writer_epoch[b] = race->epoch;
        }
        std::memcpy(reference + chunk, memory + chunk, n);
    }
}

}  // namespace msl_rt
