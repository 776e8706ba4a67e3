// SIMD-group functions and barriers of the MSL standard library, on the runtime's collectives.
// Templated over the value type so they work on scalars and on the vector types of msl_types.h.
// Each function takes the caller's source position as hidden default arguments (__builtin_FILE
// etc. follow the #line directives of translated kernels), so divergence reports name the .metal line.
#pragma once

#include <cstdint>
#include <type_traits>

#include "msl_rt_core.h"

#if defined(__has_builtin)
  #if __has_builtin(__builtin_COLUMN)
    #define MSL_RT_COLUMN() __builtin_COLUMN()
  #endif
#endif
#ifndef MSL_RT_COLUMN
  #define MSL_RT_COLUMN() 0  // GCC 12: call sites on one line are told apart by line only
#endif
#define MSL_RT_SITE_PARAMS \
    const char* msl_file_ = __builtin_FILE(), int msl_line_ = __builtin_LINE(), int msl_column_ = MSL_RT_COLUMN()
#define MSL_RT_SITE(op) ::msl_rt::call_site{op, msl_file_, msl_line_, msl_column_}

namespace msl_rt {

template <class T> inline T elementwise_min(const T& a, const T& b) {
    if constexpr (std::is_arithmetic_v<T>) { return b < a ? b : a; } else { return min(a, b); }  // ADL: metal::min
}
template <class T> inline T elementwise_max(const T& a, const T& b) {
    if constexpr (std::is_arithmetic_v<T>) { return a < b ? b : a; } else { return max(a, b); }
}

struct op_sum { template <class T> static T apply(const T& a, const T& b) { return T(a + b); } static constexpr int identity = 0; };
struct op_product { template <class T> static T apply(const T& a, const T& b) { return T(a * b); } static constexpr int identity = 1; };
struct op_min { template <class T> static T apply(const T& a, const T& b) { return elementwise_min(a, b); } };
struct op_max { template <class T> static T apply(const T& a, const T& b) { return elementwise_max(a, b); } };
struct op_and { template <class T> static T apply(const T& a, const T& b) { return T(a & b); } };
struct op_or { template <class T> static T apply(const T& a, const T& b) { return T(a | b); } };
struct op_xor { template <class T> static T apply(const T& a, const T& b) { return T(a ^ b); } };

template <class T> inline const T& operand(const lane* l) { return *static_cast<const T*>(l->in); }
template <class T> inline T& result(const lane* l) { return *static_cast<T*>(l->out); }

// Reductions combine pairwise (a tree, like the GPU's butterfly) rather than left to right.
template <class T, class Op>
void reduce_fn(lane* const* lanes, uint32_t n) {
    T values[simd_width];
    for (uint32_t i = 0; i < n; i++) {
        values[i] = operand<T>(lanes[i]);
    }
    for (uint32_t stride = 1; stride < n; stride *= 2) {
        for (uint32_t i = 0; i + stride < n; i += 2 * stride) {
            values[i] = Op::apply(values[i], values[i + stride]);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        result<T>(lanes[i]) = values[0];
    }
}

template <class T, class Op, bool Inclusive>
void prefix_fn(lane* const* lanes, uint32_t n) {
    T running = T(Op::identity);
    for (uint32_t i = 0; i < n; i++) {
        const T value = operand<T>(lanes[i]);
        if (Inclusive) {
            running = Op::apply(running, value);
            result<T>(lanes[i]) = running;
        } else {
            result<T>(lanes[i]) = running;
            running = Op::apply(running, value);
        }
    }
}

template <class T> struct lane_operand { T value; uint32_t arg; };

enum class shuffle_kind { index, xor_mask, up, down, rotate_up, rotate_down, broadcast };

template <class T, shuffle_kind Kind>
void shuffle_fn(lane* const* lanes, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        const lane_operand<T>& op = operand<lane_operand<T>>(lanes[i]);
        uint32_t source = i;
        switch (Kind) {
            case shuffle_kind::index: source = op.arg; break;
            case shuffle_kind::broadcast: source = operand<lane_operand<T>>(lanes[0]).arg; break;
            case shuffle_kind::xor_mask: source = i ^ op.arg; break;
            // The lowest (highest) delta lanes keep their own value, as the MSL specification says.
            case shuffle_kind::up: source = op.arg <= i ? i - op.arg : i; break;
            case shuffle_kind::down: source = i + op.arg < n ? i + op.arg : i; break;
            case shuffle_kind::rotate_up: source = (i + n - op.arg % n) % n; break;
            case shuffle_kind::rotate_down: source = (i + op.arg) % n; break;
        }
        if (source >= n) {
            // Reading an inactive or nonexistent lane is undefined on the GPU: report it.
            fault_at(lanes[i], "SIMD shuffle from lane %u, but the SIMD group has %u lanes (lane %u asked)", source, n, i);
        }
        result<T>(lanes[i]) = operand<lane_operand<T>>(lanes[source]).value;
    }
}

template <class T>
void first_fn(lane* const* lanes, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        result<T>(lanes[i]) = operand<T>(lanes[0]);
    }
}

void ballot_fn(lane* const* lanes, uint32_t n);
void noop_fn(lane* const* lanes, uint32_t n);

}  // namespace msl_rt

namespace metal {

enum class mem_flags : uint32_t {
    mem_none = 0,
    mem_device = 1,
    mem_threadgroup = 2,
    mem_texture = 4,
    mem_threadgroup_imageblock = 8,
    mem_object_data = 16,
};
inline constexpr mem_flags operator|(mem_flags a, mem_flags b) { return mem_flags(uint32_t(a) | uint32_t(b)); }
inline constexpr mem_flags operator&(mem_flags a, mem_flags b) { return mem_flags(uint32_t(a) & uint32_t(b)); }

// Every thread of the threadgroup waits here. Memory flags only order memory on a GPU; on the CPU
// all threads of a threadgroup share one core, so memory is coherent at every switch.
inline void threadgroup_barrier(mem_flags, MSL_RT_SITE_PARAMS) {
    msl_rt::barrier(MSL_RT_SITE("threadgroup_barrier"));
}
inline void simdgroup_barrier(mem_flags, MSL_RT_SITE_PARAMS) {
    msl_rt::collective(MSL_RT_SITE("simdgroup_barrier"), &msl_rt::noop_fn, nullptr, nullptr);
}

// Result of simd_ballot: bit i set for each active lane i whose predicate was true.
class simd_vote {
public:
    using vote_t = unsigned long;  // MSL ulong (uint64_t is unsigned long long on macOS)
    constexpr simd_vote() : v_(0) {}
    explicit constexpr simd_vote(vote_t v) : v_(v) {}
    template <class I, class = std::enable_if_t<std::is_integral_v<I>>>
    explicit constexpr operator I() const { return I(v_); }
    constexpr bool all() const { return v_ == active_; }
    constexpr bool any() const { return v_ != 0; }
    vote_t active_ = 0;  // mask of active lanes (all() compares against it)
private:
    vote_t v_;
    friend void msl_rt::ballot_fn(msl_rt::lane* const*, uint32_t);
};

#define MSL_RT_REDUCTION(name, op)                                                          \
    template <class T> inline T name(T data, MSL_RT_SITE_PARAMS) {                          \
        T out;                                                                              \
        msl_rt::collective(MSL_RT_SITE(#name), &msl_rt::reduce_fn<T, op>, &data, &out);     \
        return out;                                                                         \
    }
MSL_RT_REDUCTION(simd_sum, msl_rt::op_sum)
MSL_RT_REDUCTION(simd_product, msl_rt::op_product)
MSL_RT_REDUCTION(simd_min, msl_rt::op_min)
MSL_RT_REDUCTION(simd_max, msl_rt::op_max)
MSL_RT_REDUCTION(simd_and, msl_rt::op_and)
MSL_RT_REDUCTION(simd_or, msl_rt::op_or)
MSL_RT_REDUCTION(simd_xor, msl_rt::op_xor)
#undef MSL_RT_REDUCTION

#define MSL_RT_PREFIX(name, op, inclusive)                                                         \
    template <class T> inline T name(T data, MSL_RT_SITE_PARAMS) {                                 \
        T out;                                                                                     \
        msl_rt::collective(MSL_RT_SITE(#name), &msl_rt::prefix_fn<T, op, inclusive>, &data, &out); \
        return out;                                                                                \
    }
MSL_RT_PREFIX(simd_prefix_inclusive_sum, msl_rt::op_sum, true)
MSL_RT_PREFIX(simd_prefix_exclusive_sum, msl_rt::op_sum, false)
MSL_RT_PREFIX(simd_prefix_inclusive_product, msl_rt::op_product, true)
MSL_RT_PREFIX(simd_prefix_exclusive_product, msl_rt::op_product, false)
#undef MSL_RT_PREFIX

#define MSL_RT_SHUFFLE(name, kind)                                                                      \
    template <class T, class I> inline T name(T data, I arg, MSL_RT_SITE_PARAMS) {                      \
        msl_rt::lane_operand<T> in{data, uint32_t(arg)};                                                \
        T out;                                                                                          \
        msl_rt::collective(MSL_RT_SITE(#name), &msl_rt::shuffle_fn<T, msl_rt::shuffle_kind::kind>, &in, &out); \
        return out;                                                                                     \
    }
MSL_RT_SHUFFLE(simd_shuffle, index)
MSL_RT_SHUFFLE(simd_shuffle_xor, xor_mask)
MSL_RT_SHUFFLE(simd_shuffle_up, up)
MSL_RT_SHUFFLE(simd_shuffle_down, down)
MSL_RT_SHUFFLE(simd_shuffle_rotate_up, rotate_up)
MSL_RT_SHUFFLE(simd_shuffle_rotate_down, rotate_down)
MSL_RT_SHUFFLE(simd_broadcast, broadcast)
#undef MSL_RT_SHUFFLE

template <class T> inline T simd_broadcast_first(T data, MSL_RT_SITE_PARAMS) {
    T out;
    msl_rt::collective(MSL_RT_SITE("simd_broadcast_first"), &msl_rt::first_fn<T>, &data, &out);
    return out;
}

inline simd_vote simd_ballot(bool predicate, MSL_RT_SITE_PARAMS) {
    simd_vote out;
    msl_rt::collective(MSL_RT_SITE("simd_ballot"), &msl_rt::ballot_fn, &predicate, &out);
    return out;
}
inline bool simd_all(bool predicate, MSL_RT_SITE_PARAMS) {
    return simd_ballot(predicate, msl_file_, msl_line_, msl_column_).all();
}
inline bool simd_any(bool predicate, MSL_RT_SITE_PARAMS) {
    return simd_ballot(predicate, msl_file_, msl_line_, msl_column_).any();
}
// Every lane of a SIMD group is active in this layer (divergent collectives are reported), so the
// first active lane is lane 0.
inline bool simd_is_first() { return msl_rt::current_lane()->simd_lane == 0; }
inline simd_vote simd_active_threads_mask() {
    const msl_rt::lane* l = msl_rt::current_lane();
    const uint32_t n = l->tg->simdgroups[l->simd_group].size;
    simd_vote vote(simd_vote::vote_t((uint64_t(1) << n) - 1));  // n <= 32
    vote.active_ = uint64_t(vote);
    return vote;
}

}  // namespace metal
