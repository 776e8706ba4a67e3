// Runtime core of the MSL CPU execution layer, seen by translated kernels and by the CPU device:
// per-thread (lane) and per-threadgroup execution state, kernel registry records, faults, and the
// bounds-checked pointers that device/constant/threadgroup pointers are translated to.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace metal {
template <class T> struct atomic;
}

namespace msl_rt {

constexpr uint32_t simd_width = 32;
constexpr uint32_t max_threads_per_threadgroup = 1024;
constexpr uint32_t max_argument_index = 31;
constexpr uint32_t threadgroup_variable_index = 0xFFFF;  // checked_ptr::index of `threadgroup T x[N];` storage

struct lane;
using kernel_thunk = void (*)(lane*);

// One kernel, as the translator lists it in the generated registry.
struct kernel_desc {
    const char* name;
    kernel_thunk thunk;
    uint32_t max_threads_per_threadgroup;  // [[max_total_threads_per_threadgroup(n)]] or 1024
    uint32_t static_threadgroup_memory;    // bytes of `threadgroup` variables declared in the body
    uint64_t buffer_mask;                  // bit i: declares [[buffer(i)]]
    uint64_t threadgroup_mask;             // bit i: declares [[threadgroup(i)]]
    const char* file;
    int line;
};

// A call site of a barrier or collective (from __builtin_FILE/LINE/COLUMN, which follow #line).
struct call_site {
    const char* op;
    const char* file;
    int line;
    int column;
};

struct memory_range {
    char* base;
    size_t size;
    bool bound;
};

// Arguments of one dispatch, shared read-only by every threadgroup.
struct dispatch_state {
    const kernel_desc* kernel;
    uint32_t threadgroups[3];
    uint32_t threads_per_threadgroup[3];
    uint32_t threads;                          // product of threads_per_threadgroup
    memory_range buffers[max_argument_index];  // [[buffer(i)]]: buffer + offset, or setBytes copy
    size_t threadgroup_sizes[max_argument_index];
};

// What a blocked lane waits for.
enum class lane_state : uint8_t { ready, running, at_barrier, at_collective, done };

using collective_fn = void (*)(lane* const* lanes, uint32_t count);

struct threadgroup_state;

struct lane {
    void* sp;                        // saved stack pointer while switched out
    threadgroup_state* tg;
    uint32_t tid[3];                 // thread_position_in_threadgroup
    uint32_t index;                  // thread_index_in_threadgroup
    uint32_t simd_lane;
    uint32_t simd_group;
    lane_state state;
    call_site site;                  // where it waits
    const void* in;                  // collective operand (on the lane's stack)
    void* out;                       // collective result (on the lane's stack)
};

struct simdgroup_state {
    uint32_t size;                   // active lanes (the last SIMD group of a threadgroup may be partial)
    uint32_t arrived;
    uint32_t done;                   // lanes that returned from the kernel
    call_site site;
    collective_fn fn;
    lane* lanes[simd_width];
};

struct threadgroup_state {
    const dispatch_state* dispatch;
    uint32_t group[3];               // threadgroup_position_in_grid
    uint32_t threads;
    uint32_t done;
    lane* lanes;
    simdgroup_state* simdgroups;
    uint32_t num_simdgroups;
    uint32_t barrier_arrived;
    call_site barrier_site;
    uint32_t* ready;                 // ring buffer of lane indices, capacity `threads`
    uint32_t ready_head, ready_count;
    void* scheduler_sp;              // the worker thread's context while fibers run
    char* static_memory;             // `threadgroup` variables of the kernel body
    char* threadgroup_args[max_argument_index];  // [[threadgroup(i)]] storage
    bool faulted;
    char fault_message[1024];
    struct race_state* race;         // non-null when race checking is on
};

// Every fiber stack lives in a slot of stack_slot_size bytes (a power of two) aligned to its size,
// with the lane's address in the slot's last bytes: the running lane is found from the stack
// pointer. (A thread_local costs a __tls_get_addr call per access in a dlopen'ed extension.)
extern size_t stack_slot_size;
constexpr size_t lane_pointer_offset = 64;  // from the slot's end; the stack starts below it
inline lane* current_lane() {
    const uintptr_t sp = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
    const uintptr_t slot_end = (sp & ~(uintptr_t(stack_slot_size) - 1)) + stack_slot_size;
    return *reinterpret_cast<lane**>(slot_end - lane_pointer_offset);
}

// Stops the threadgroup with a device error naming kernel, thread position and the message.
[[noreturn]] void fault(const char* format, ...) __attribute__((format(printf, 1, 2)));
// Same, attributed to lane l (which may be another lane of the running threadgroup).
[[noreturn]] void fault_at(const lane* l, const char* format, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] void fault_out_of_bounds(bool threadgroup_space, uint32_t index, const void* address,
                                      size_t access_size, const char* lo, const char* hi);
// Finds the binding containing [p, p + size) among the dispatch's buffers (device space) or the
// threadgroup's memory, for pointers formed from references (e.g. `device float* q = &p[i];`).
bool find_range(bool threadgroup_space, const void* p, char** lo, char** hi, uint32_t* index);

// Race checking (GPTOSS_CPU_RACE_CHECK=1, race.cpp): every checked threadgroup access is recorded.
extern bool race_checking;
void race_access(const void* p, size_t size);
void race_atomic(const void* p, size_t size);  // atomics on threadgroup memory are exempt

template <class T, size_t N> struct tg_array;
template <class T> struct is_race_tracked : std::true_type {};
template <class T, size_t N> struct is_race_tracked<tg_array<T, N>> : std::false_type {};  // rows: leaves are tracked
template <class T> struct is_race_tracked<metal::atomic<T>> : std::false_type {};          // atomics never race
template <class T> struct is_race_tracked<const T> : is_race_tracked<T> {};
template <> struct is_race_tracked<void> : std::false_type {};
template <> struct is_race_tracked<const void> : std::false_type {};

template <class T> struct element_size { static constexpr size_t value = sizeof(T); };
template <> struct element_size<void> { static constexpr size_t value = 1; };
template <> struct element_size<const void> { static constexpr size_t value = 1; };

// A pointer into one binding (a device buffer, setBytes data, threadgroup memory): dereferences
// outside [lo, hi) fault with the binding's index and the byte offset. Arithmetic is unchecked,
// like a GPU's; only accesses are checked.
template <class T, bool Threadgroup>
struct checked_ptr {
    T* p = nullptr;
    char* lo = nullptr;
    char* hi = nullptr;
    uint32_t index = 0;

    checked_ptr() = default;
    checked_ptr(std::nullptr_t) {}
    checked_ptr(T* p_, char* lo_, char* hi_, uint32_t index_) : p(p_), lo(lo_), hi(hi_), index(index_) {}
    // From a plain pointer (the address of an element): look the binding up.
    checked_ptr(T* raw) : p(raw) {
        if (raw != nullptr && !find_range(Threadgroup, raw, &lo, &hi, &index)) {
            fault("a %s pointer was formed from an address outside every bound %s",
                  Threadgroup ? "threadgroup" : "device", Threadgroup ? "threadgroup memory" : "buffer");
        }
    }
    // T* -> const T* (implicit, as in C++).
    template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
    checked_ptr(const checked_ptr<U, Threadgroup>& other) : p(other.p), lo(other.lo), hi(other.hi), index(other.index) {}
    // Reinterpreting casts: (device uint4*) p, reinterpret_cast<device uint4*>(p).
    template <class U, class = std::enable_if_t<!std::is_convertible_v<U*, T*>>, class = void>
    explicit checked_ptr(const checked_ptr<U, Threadgroup>& other)
        : p((T*) (other.p)), lo(other.lo), hi(other.hi), index(other.index) {}

    // Integer round trips, as in `(const device uint4*) ((uintptr_t) p + stride)`: the address must
    // lie inside a bound buffer (or threadgroup memory), which then bounds the new pointer.
    template <class I, class = std::enable_if_t<std::is_integral_v<I> && sizeof(I) == sizeof(uintptr_t)>>
    explicit checked_ptr(I address) : checked_ptr(reinterpret_cast<T*>(address)) {}
    explicit operator uintptr_t() const { return reinterpret_cast<uintptr_t>(p); }

    T* check(T* q) const {
        const char* c = (const char*) q;
        if (__builtin_expect(c < lo || c > hi || size_t(hi - c) < element_size<T>::value, 0)) {
            fault_out_of_bounds(Threadgroup, index, q, element_size<T>::value, lo, hi);
        }
        if constexpr (Threadgroup && is_race_tracked<T>::value) {
            if (__builtin_expect(race_checking, 0)) {
                race_access(q, sizeof(T));
            }
        }
        return q;
    }
    template <class U = T> U& operator*() const { return *check(p); }
    T* operator->() const { return check(p); }
    template <class U = T> U& operator[](ptrdiff_t i) const { return *check(p + i); }
    T* raw() const { return p; }

    checked_ptr operator+(ptrdiff_t n) const { return checked_ptr(p + n, lo, hi, index); }
    checked_ptr operator-(ptrdiff_t n) const { return checked_ptr(p - n, lo, hi, index); }
    friend checked_ptr operator+(ptrdiff_t n, const checked_ptr& q) { return q + n; }
    ptrdiff_t operator-(const checked_ptr& other) const { return p - other.p; }
    checked_ptr& operator+=(ptrdiff_t n) { p += n; return *this; }
    checked_ptr& operator-=(ptrdiff_t n) { p -= n; return *this; }
    checked_ptr& operator++() { ++p; return *this; }
    checked_ptr& operator--() { --p; return *this; }
    checked_ptr operator++(int) { checked_ptr old = *this; ++p; return old; }
    checked_ptr operator--(int) { checked_ptr old = *this; --p; return old; }
    explicit operator bool() const { return p != nullptr; }
    friend bool operator==(const checked_ptr& a, const checked_ptr& b) { return a.p == b.p; }
    friend bool operator!=(const checked_ptr& a, const checked_ptr& b) { return a.p != b.p; }
    friend bool operator<(const checked_ptr& a, const checked_ptr& b) { return a.p < b.p; }
    friend bool operator<=(const checked_ptr& a, const checked_ptr& b) { return a.p <= b.p; }
    friend bool operator>(const checked_ptr& a, const checked_ptr& b) { return a.p > b.p; }
    friend bool operator>=(const checked_ptr& a, const checked_ptr& b) { return a.p >= b.p; }
};

template <class T> using device_ptr = checked_ptr<T, false>;
template <class T> using threadgroup_ptr = checked_ptr<T, true>;

// `threadgroup T name[N];` in a kernel body: the storage itself (sizeof == sizeof(T[N])) with a
// checked subscript, decaying to a checked threadgroup pointer over exactly this array.
template <class T, size_t N>
struct tg_array {
    T elements[N];

    T& operator[](size_t i) {
        if (__builtin_expect(i >= N, 0)) {
            fault_out_of_bounds(true, threadgroup_variable_index, elements + i, sizeof(T),
                                (const char*) elements, (const char*) (elements + N));
        }
        if constexpr (is_race_tracked<T>::value) {
            if (__builtin_expect(race_checking, 0)) {
                race_access(elements + i, sizeof(T));
            }
        }
        return elements[i];
    }
    const T& operator[](size_t i) const { return const_cast<tg_array&>(*this)[i]; }
    operator threadgroup_ptr<T>() { return threadgroup_ptr<T>(elements, (char*) elements, (char*) (elements + N), threadgroup_variable_index); }
    operator threadgroup_ptr<const T>() const {
        return threadgroup_ptr<const T>(elements, (char*) elements, (char*) (elements + N), threadgroup_variable_index);
    }
    template <class U, class = std::enable_if_t<!std::is_same_v<std::remove_const_t<U>, T>>>
    explicit operator threadgroup_ptr<U>() { return threadgroup_ptr<U>((U*) elements, (char*) elements, (char*) (elements + N), threadgroup_variable_index); }
};

// The `threadgroup` variables of the running kernel, laid out as the translator's struct S.
template <class S>
inline S& threadgroup_variables() {
    return *reinterpret_cast<S*>(current_lane()->tg->static_memory);
}

// ---- Binding kernel arguments (used by the generated entry thunks) ----

template <class P> struct pointee;
template <class T, bool G> struct pointee<checked_ptr<T, G>> { using type = T; };

template <class P>
inline P bind_buffer(lane* l, uint32_t index) {
    const memory_range& range = l->tg->dispatch->buffers[index];
    if (!range.bound) {
        fault("[[buffer(%u)]] is not bound", index);
    }
    using T = typename pointee<P>::type;
    return P((T*) range.base, range.base, range.base + range.size, index);
}

template <class T>
inline const T& bind_constant_reference(lane* l, uint32_t index) {
    const memory_range& range = l->tg->dispatch->buffers[index];
    if (!range.bound) {
        fault("[[buffer(%u)]] is not bound", index);
    }
    if (range.size < sizeof(T)) {
        fault("[[buffer(%u)]] is a constant reference to %zu bytes but only %zu bytes are bound", index, sizeof(T), range.size);
    }
    return *reinterpret_cast<const T*>(range.base);
}

template <class P>
inline P bind_threadgroup(lane* l, uint32_t index) {
    char* base = l->tg->threadgroup_args[index];
    if (base == nullptr) {
        fault("[[threadgroup(%u)]] is not bound", index);
    }
    using T = typename pointee<P>::type;
    return P((T*) base, base, base + l->tg->dispatch->threadgroup_sizes[index], index);
}

// Built-in argument values as the kernel declares them: scalar (x), 2- or 3-component vectors.
template <class T>
inline T builtin_value(uint32_t x, uint32_t y, uint32_t z) {
    if constexpr (std::is_arithmetic_v<T>) {
        return T(x);
    } else if constexpr (std::is_constructible_v<T, uint32_t, uint32_t, uint32_t>) {
        return T(x, y, z);
    } else {
        return T(x, y);
    }
}

enum class builtin {
    thread_position_in_grid,
    thread_position_in_threadgroup,
    threadgroup_position_in_grid,
    threads_per_threadgroup,
    threadgroups_per_grid,
    threads_per_grid,
    thread_index_in_threadgroup,
    simdgroup_index_in_threadgroup,
    thread_index_in_simdgroup,
    simdgroups_per_threadgroup,
    threads_per_simdgroup,
};

template <class T>
inline T bind_builtin(lane* l, builtin which) {
    const threadgroup_state* tg = l->tg;
    const dispatch_state* d = tg->dispatch;
    switch (which) {
        case builtin::thread_position_in_grid:
            return builtin_value<T>(tg->group[0] * d->threads_per_threadgroup[0] + l->tid[0],
                                    tg->group[1] * d->threads_per_threadgroup[1] + l->tid[1],
                                    tg->group[2] * d->threads_per_threadgroup[2] + l->tid[2]);
        case builtin::thread_position_in_threadgroup: return builtin_value<T>(l->tid[0], l->tid[1], l->tid[2]);
        case builtin::threadgroup_position_in_grid: return builtin_value<T>(tg->group[0], tg->group[1], tg->group[2]);
        case builtin::threads_per_threadgroup:
            return builtin_value<T>(d->threads_per_threadgroup[0], d->threads_per_threadgroup[1], d->threads_per_threadgroup[2]);
        case builtin::threadgroups_per_grid: return builtin_value<T>(d->threadgroups[0], d->threadgroups[1], d->threadgroups[2]);
        case builtin::threads_per_grid:
            return builtin_value<T>(d->threadgroups[0] * d->threads_per_threadgroup[0], d->threadgroups[1] * d->threads_per_threadgroup[1],
                                    d->threadgroups[2] * d->threads_per_threadgroup[2]);
        case builtin::thread_index_in_threadgroup: return builtin_value<T>(l->index, 0, 0);
        case builtin::simdgroup_index_in_threadgroup: return builtin_value<T>(l->simd_group, 0, 0);
        case builtin::thread_index_in_simdgroup: return builtin_value<T>(l->simd_lane, 0, 0);
        case builtin::simdgroups_per_threadgroup: return builtin_value<T>(tg->num_simdgroups, 0, 0);
        case builtin::threads_per_simdgroup: return builtin_value<T>(simd_width, 0, 0);
    }
    return builtin_value<T>(0, 0, 0);
}

// ---- Synchronisation (scheduler.cpp) ----

// Waits until every thread of the threadgroup reached this same barrier.
void barrier(const call_site& site);
// Deposits operands and waits until every lane of the SIMD group reached this same call site; the
// last lane to arrive runs fn once for the whole group (it writes each lane's `out`).
void collective(const call_site& site, collective_fn fn, const void* in, void* out);

}  // namespace msl_rt
