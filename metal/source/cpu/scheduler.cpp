// Threadgroup execution on fibers, barriers, SIMD-group collectives and fault reporting.
//
// Scheduling: a FIFO of ready lanes. A lane runs until it blocks at a barrier or collective (then
// it switches directly to the next ready lane) or returns. The last thread to arrive at a barrier,
// or the last lane of a SIMD group to arrive at a collective, completes it, readies the waiters and
// carries on without a switch. If no lane is ready while some are blocked, the threads diverged:
// that is reported as a fault instead of hanging, as are lanes waiting at different call sites.
#include "scheduler.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fiber.h"

namespace msl_rt {

size_t stack_slot_size = 0;

namespace {

bool same_site(const call_site& a, const call_site& b) {
    return a.line == b.line && a.column == b.column && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

[[noreturn]] void abandon_threadgroup(threadgroup_state* tg) {
    // Back to the worker; this fiber's stack is simply reused by the next threadgroup.
    void* discarded;
    msl_rt_fiber_switch(&discarded, tg->scheduler_sp);
    __builtin_unreachable();
}

void append(char* buffer, size_t capacity, const char* format, ...) __attribute__((format(printf, 3, 4)));
void append(char* buffer, size_t capacity, const char* format, ...) {
    const size_t used = std::strlen(buffer);
    if (used + 1 >= capacity) {
        return;
    }
    va_list args;
    va_start(args, format);
    std::vsnprintf(buffer + used, capacity - used, format, args);
    va_end(args);
}

[[noreturn]] void vfault_lane(threadgroup_state* tg, const lane* l, const char* format, va_list args) {
    if (!tg->faulted) {
        tg->faulted = true;
        const dispatch_state* d = tg->dispatch;
        char what[768];
        std::vsnprintf(what, sizeof(what), format, args);
        if (l != nullptr) {
            std::snprintf(tg->fault_message, sizeof(tg->fault_message),
                "kernel %s (%s:%d): %s [thread_position_in_grid (%u, %u, %u), threadgroup (%u, %u, %u), "
                "thread_position_in_threadgroup (%u, %u, %u)]",
                d->kernel->name, d->kernel->file, d->kernel->line, what,
                tg->group[0] * d->threads_per_threadgroup[0] + l->tid[0], tg->group[1] * d->threads_per_threadgroup[1] + l->tid[1],
                tg->group[2] * d->threads_per_threadgroup[2] + l->tid[2], tg->group[0], tg->group[1], tg->group[2],
                l->tid[0], l->tid[1], l->tid[2]);
        } else {
            std::snprintf(tg->fault_message, sizeof(tg->fault_message), "kernel %s (%s:%d): %s [threadgroup (%u, %u, %u)]",
                d->kernel->name, d->kernel->file, d->kernel->line, what, tg->group[0], tg->group[1], tg->group[2]);
        }
    }
    abandon_threadgroup(tg);
}

[[noreturn]] void fault_lane(threadgroup_state* tg, const lane* l, const char* format, ...) __attribute__((format(printf, 3, 4)));
[[noreturn]] void fault_lane(threadgroup_state* tg, const lane* l, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vfault_lane(tg, l, format, args);
}

// Lanes woken by a completed collective run next, before lanes that have not started: their
// stacks are still in cache, and a SIMD group moves through the kernel together.
void make_ready_front(threadgroup_state* tg, lane* l) {
    l->state = lane_state::ready;
    tg->ready_head = tg->ready_head == 0 ? tg->threads - 1 : tg->ready_head - 1;
    tg->ready[tg->ready_head] = l->index;
    tg->ready_count++;
}

void make_ready(threadgroup_state* tg, lane* l) {
    l->state = lane_state::ready;
    uint32_t slot = tg->ready_head + tg->ready_count;
    if (slot >= tg->threads) {
        slot -= tg->threads;
    }
    tg->ready[slot] = l->index;
    tg->ready_count++;
}

// No lane can run but `blocked` lanes wait: describe who waits where, then fault.
[[noreturn]] void report_deadlock(threadgroup_state* tg, lane* self) {
    char message[700] = "threads diverged and can never continue:";
    const char* separator = "";
    if (tg->barrier_arrived != 0) {
        append(message, sizeof(message), " %u of %u threads wait at %s (%s:%d)", tg->barrier_arrived, tg->threads,
               tg->barrier_site.op, tg->barrier_site.file, tg->barrier_site.line);
        separator = ";";
    }
    for (uint32_t g = 0; g < tg->num_simdgroups; g++) {
        const simdgroup_state& s = tg->simdgroups[g];
        if (s.arrived != 0) {
            append(message, sizeof(message), "%s %u of %u lanes of SIMD group %u wait at %s (%s:%d)",
                   separator, s.arrived, s.size, g, s.site.op, s.site.file, s.site.line);
            separator = ";";
        }
    }
    if (tg->done != 0) {
        append(message, sizeof(message), "; %u threads returned", tg->done);
    }
    fault_lane(tg, self, "%s", message);
}

// The current lane blocked (or finished): run the next ready lane.
void switch_away(threadgroup_state* tg, lane* self) {
    if (tg->race != nullptr) {
        race_attribute_writes(tg, self);
    }
    if (tg->ready_count == 0) {
        if (tg->done == tg->threads) {
            void* discarded;
            msl_rt_fiber_switch(&discarded, tg->scheduler_sp);
            __builtin_unreachable();
        }
        report_deadlock(tg, self->state == lane_state::done ? nullptr : self);
    }
    lane* next = &tg->lanes[tg->ready[tg->ready_head]];
    tg->ready_head = tg->ready_head + 1 == tg->threads ? 0 : tg->ready_head + 1;
    tg->ready_count--;
    next->state = lane_state::running;
    if (self->state == lane_state::done) {
        void* discarded;
        msl_rt_fiber_switch(&discarded, next->sp);
        __builtin_unreachable();
    }
    msl_rt_fiber_switch(&self->sp, next->sp);
}

void lane_entry(void* arg) {
    lane* self = static_cast<lane*>(arg);
    threadgroup_state* tg = self->tg;
    tg->dispatch->kernel->thunk(self);

    self->state = lane_state::done;
    tg->done++;
    simdgroup_state& s = tg->simdgroups[self->simd_group];
    s.done++;
    if (s.arrived != 0) {
        fault_lane(tg, self, "this thread returned while %u other lanes of its SIMD group %u wait at %s (%s:%d): "
                   "every lane must reach a SIMD-group function", s.arrived, self->simd_group, s.site.op, s.site.file, s.site.line);
    }
    if (tg->barrier_arrived != 0) {
        fault_lane(tg, self, "this thread returned while %u other threads wait at %s (%s:%d): "
                   "every thread of the threadgroup must reach the barrier",
                   tg->barrier_arrived, tg->barrier_site.op, tg->barrier_site.file, tg->barrier_site.line);
    }
    switch_away(tg, self);
    __builtin_unreachable();
}

}  // namespace

void fault_at(const lane* l, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vfault_lane(l->tg, l, format, args);
}

void fault(const char* format, ...) {
    lane* l = current_lane();
    va_list args;
    va_start(args, format);
    vfault_lane(l->tg, l, format, args);
}

void fault_out_of_bounds(bool threadgroup_space, uint32_t index, const void* address, size_t access_size,
                         const char* lo, const char* hi) {
    char binding[64];
    if (!threadgroup_space) {
        std::snprintf(binding, sizeof(binding), "device buffer [[buffer(%u)]]", index);
    } else if (index == threadgroup_variable_index) {
        std::snprintf(binding, sizeof(binding), "threadgroup array");
    } else {
        std::snprintf(binding, sizeof(binding), "threadgroup memory [[threadgroup(%u)]]", index);
    }
    if (lo == nullptr) {
        fault("%s access through a null pointer", binding);
    }
    const long long offset = (long long) ((const char*) address - lo);
    fault("%s access out of bounds: %zu bytes at byte offset %lld, but the binding holds %zu bytes",
          binding, access_size, offset, (size_t) (hi - lo));
}

bool find_range(bool threadgroup_space, const void* p, char** lo, char** hi, uint32_t* index) {
    const char* c = static_cast<const char*>(p);
    const threadgroup_state* tg = current_lane()->tg;
    const dispatch_state* d = tg->dispatch;
    if (!threadgroup_space) {
        for (uint32_t i = 0; i < max_argument_index; i++) {
            const memory_range& r = d->buffers[i];
            if (r.bound && c >= r.base && c < r.base + r.size) {
                *lo = r.base;
                *hi = r.base + r.size;
                *index = i;
                return true;
            }
        }
        return false;
    }
    for (uint32_t i = 0; i < max_argument_index; i++) {
        char* base = tg->threadgroup_args[i];
        if (base != nullptr && c >= base && c < base + d->threadgroup_sizes[i]) {
            *lo = base;
            *hi = base + d->threadgroup_sizes[i];
            *index = i;
            return true;
        }
    }
    const size_t static_size = d->kernel->static_threadgroup_memory;
    if (c >= tg->static_memory && c < tg->static_memory + static_size) {
        *lo = tg->static_memory;
        *hi = tg->static_memory + static_size;
        *index = threadgroup_variable_index;
        return true;
    }
    return false;
}

void barrier(const call_site& site) {
    lane* self = current_lane();
    threadgroup_state* tg = self->tg;
    if (tg->done != 0) {
        fault_lane(tg, self, "%s (%s:%d) was reached by this thread but %u threads of the threadgroup returned "
                   "without reaching it", site.op, site.file, site.line, tg->done);
    }
    if (tg->barrier_arrived == 0) {
        tg->barrier_site = site;
    } else if (!same_site(tg->barrier_site, site)) {
        fault_lane(tg, self, "threads wait at different barriers: this thread at %s (%s:%d), %u other threads at %s (%s:%d)",
                   site.op, site.file, site.line, tg->barrier_arrived, tg->barrier_site.op, tg->barrier_site.file, tg->barrier_site.line);
    }
    if (++tg->barrier_arrived == tg->threads) {
        tg->barrier_arrived = 0;
        if (tg->race != nullptr) {
            race_attribute_writes(tg, self);
            race_new_epoch(*tg->race);
        }
        for (uint32_t i = 0; i < tg->threads; i++) {
            if (tg->lanes[i].state == lane_state::at_barrier) {
                make_ready(tg, &tg->lanes[i]);
            }
        }
        return;
    }
    self->state = lane_state::at_barrier;
    self->site = site;
    switch_away(tg, self);
}

void collective(const call_site& site, collective_fn fn, const void* in, void* out) {
    lane* self = current_lane();
    threadgroup_state* tg = self->tg;
    simdgroup_state& s = tg->simdgroups[self->simd_group];
    if (s.done != 0) {
        fault_lane(tg, self, "%s (%s:%d) was reached by this lane but %u lanes of SIMD group %u returned without reaching it",
                   site.op, site.file, site.line, s.done, self->simd_group);
    }
    if (s.arrived == 0) {
        s.site = site;
        s.fn = fn;
    } else if (!same_site(s.site, site)) {
        fault_lane(tg, self, "lanes of SIMD group %u wait at different SIMD-group functions: this lane at %s (%s:%d), "
                   "%u other lanes at %s (%s:%d)", self->simd_group, site.op, site.file, site.line, s.arrived,
                   s.site.op, s.site.file, s.site.line);
    }
    self->in = in;
    self->out = out;
    s.lanes[self->simd_lane] = self;
    if (++s.arrived == s.size) {
        s.arrived = 0;
        fn(s.lanes, s.size);
        for (uint32_t i = s.size; i-- > 0;) {
            if (s.lanes[i] != self) {
                make_ready_front(tg, s.lanes[i]);
            }
        }
        return;
    }
    self->state = lane_state::at_collective;
    self->site = site;
    switch_away(tg, self);
}

size_t fiber_stack_size() {
    static const size_t size = [] {
        size_t kib = 64;
        if (const char* env = std::getenv("GPTOSS_CPU_FIBER_STACK_KB")) {
            const long value = std::strtol(env, nullptr, 10);
            if (value >= 16 && value <= 16384) {
                kib = (size_t) value;
            }
        }
        return kib * 1024;
    }();
    return size;
}

worker_resources::~worker_resources() {
    if (mapping != nullptr) {
        munmap(mapping, mapping_size);
    }
    std::free(threadgroup_memory);
}

static size_t slot_size_for_stack() {
    const size_t page = (size_t) sysconf(_SC_PAGESIZE);
    size_t slot = 4096;
    while (slot < fiber_stack_size() + page + lane_pointer_offset) {
        slot *= 2;
    }
    return slot;
}

static bool ensure_stacks(worker_resources& worker, uint32_t threads) {
    if (worker.stack_capacity >= threads) {
        return true;
    }
    if (worker.stacks != nullptr) {
        munmap(worker.mapping, worker.mapping_size);
        worker.stacks = nullptr;
        worker.stack_capacity = 0;
    }
    static const size_t slot = [] {
        stack_slot_size = slot_size_for_stack();
        return stack_slot_size;
    }();
    const size_t page = (size_t) sysconf(_SC_PAGESIZE);
    worker.stack_stride = slot;
    worker.stack_size = slot - page - lane_pointer_offset;  // a guard page at each slot's bottom: overflow traps
    // Lanes are allocated in SIMD-group multiples so a later dispatch rarely needs a new mapping.
    const uint32_t capacity = (threads + simd_width - 1) / simd_width * simd_width;
    const size_t size = slot * capacity + slot;  // + slack to align the first slot
    void* mapping = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS
#ifdef MAP_NORESERVE
                         | MAP_NORESERVE
#endif
                         , -1, 0);
    if (mapping == MAP_FAILED) {
        return false;
    }
    worker.mapping = mapping;
    worker.mapping_size = size;
    worker.stacks = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(mapping) + slot - 1) & ~(uintptr_t(slot) - 1));
    worker.stack_capacity = capacity;
    for (uint32_t i = 0; i < capacity; i++) {
        mprotect(worker.stacks + i * slot, page, PROT_NONE);
    }
    return true;
}

bool prepare_threadgroup_memory(worker_resources& worker, const dispatch_state& dispatch) {
    size_t total = (dispatch.kernel->static_threadgroup_memory + 15) & ~size_t(15);
    for (uint32_t i = 0; i < max_argument_index; i++) {
        total += (dispatch.threadgroup_sizes[i] + 15) & ~size_t(15);
    }
    if (total == 0) {
        total = 16;
    }
    if (worker.threadgroup_memory_size < total) {
        std::free(worker.threadgroup_memory);
        worker.threadgroup_memory = static_cast<char*>(std::aligned_alloc(64, (total + 63) & ~size_t(63)));
        worker.threadgroup_memory_size = worker.threadgroup_memory ? total : 0;
        if (worker.threadgroup_memory == nullptr) {
            return false;
        }
    }
    // Uninitialised threadgroup memory reads as 0xCD bytes (a NaN-free but visibly wrong pattern).
    std::memset(worker.threadgroup_memory, 0xCD, total);
    threadgroup_state& tg = worker.tg;
    tg.static_memory = worker.threadgroup_memory;
    char* cursor = worker.threadgroup_memory + ((dispatch.kernel->static_threadgroup_memory + 15) & ~size_t(15));
    for (uint32_t i = 0; i < max_argument_index; i++) {
        if (dispatch.threadgroup_sizes[i] != 0) {
            tg.threadgroup_args[i] = cursor;
            cursor += (dispatch.threadgroup_sizes[i] + 15) & ~size_t(15);
        } else {
            tg.threadgroup_args[i] = nullptr;
        }
    }
    if (race_checking) {
        race_prepare(worker.race, worker.threadgroup_memory, total);
    }
    return ensure_stacks(worker, dispatch.threads);
}

bool run_threadgroup(worker_resources& worker, const dispatch_state& dispatch, const uint32_t group[3]) {
    threadgroup_state& tg = worker.tg;
    const uint32_t threads = dispatch.threads;
    tg.dispatch = &dispatch;
    tg.group[0] = group[0];
    tg.group[1] = group[1];
    tg.group[2] = group[2];
    tg.threads = threads;
    tg.done = 0;
    tg.lanes = worker.lanes;
    tg.simdgroups = worker.simdgroups;
    tg.num_simdgroups = (threads + simd_width - 1) / simd_width;
    tg.barrier_arrived = 0;
    tg.ready = worker.ready;
    tg.ready_head = 0;
    tg.ready_count = threads;
    tg.faulted = false;
    tg.fault_message[0] = '\0';
    tg.race = race_checking ? &worker.race : nullptr;
    if (tg.race != nullptr) {
        race_begin_threadgroup(*tg.race);
    }
    for (uint32_t g = 0; g < tg.num_simdgroups; g++) {
        simdgroup_state& s = worker.simdgroups[g];
        s.size = threads - g * simd_width < simd_width ? threads - g * simd_width : simd_width;
        s.arrived = 0;
        s.done = 0;
    }
    const uint32_t nx = dispatch.threads_per_threadgroup[0], ny = dispatch.threads_per_threadgroup[1];
    for (uint32_t i = 0; i < threads; i++) {
        lane& l = worker.lanes[i];
        l.tg = &tg;
        l.index = i;
        l.tid[0] = i % nx;
        l.tid[1] = (i / nx) % ny;
        l.tid[2] = i / (nx * ny);
        l.simd_lane = i % simd_width;
        l.simd_group = i / simd_width;
        l.state = lane_state::ready;
        char* slot_end = worker.stacks + (size_t) (i + 1) * worker.stack_stride;
        *reinterpret_cast<lane**>(slot_end - lane_pointer_offset) = &l;
        // Slots are 2^k bytes apart, so their tops would all map to the same cache sets: stagger each
        // stack's start by 5 cache lines per lane (5 is odd: 32 lanes use 32 distinct sets).
        l.sp = fiber_prepare(slot_end - lane_pointer_offset - 64 - (i % simd_width) * 320, &lane_entry, &l);
        worker.ready[i] = i;
    }
    lane* first = &worker.lanes[0];
    first->state = lane_state::running;
    tg.ready_head = 1;
    tg.ready_count = threads - 1;
    msl_rt_fiber_switch(&tg.scheduler_sp, first->sp);
    return !tg.faulted;
}

}  // namespace msl_rt
