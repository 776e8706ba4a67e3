// MSL atomics (metal::atomic<T>, atomic_int, atomic_uint, atomic_float, atomic_ulong ...) and the
// atomic_*_explicit functions, on device and threadgroup memory. Operands are reached through
// checked pointers (bounds-checked) or plain references/pointers (threadgroup variables).
//
// Device atomics are real CPU atomics: threadgroups of a dispatch run on several worker threads.
// Metal offers only memory_order_relaxed; the stronger orders of C++ are harmless and used here.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "msl_rt_core.h"

namespace metal {

enum memory_order {
    memory_order_relaxed = 0,
    memory_order_acquire = 2,
    memory_order_release = 3,
    memory_order_acq_rel = 4,
    memory_order_seq_cst = 5,
};

enum class memory_scope { thread_scope, simdgroup_scope, threadgroup_scope, device_scope };

// Same size and alignment as T: atomics live inside buffers laid out by the host.
template <class T>
struct atomic {
    using value_type = T;
    T value;
};

using atomic_int = atomic<int>;
using atomic_uint = atomic<unsigned int>;
using atomic_bool = atomic<bool>;
using atomic_float = atomic<float>;
using atomic_long = atomic<long>;
using atomic_ulong = atomic<unsigned long>;

}  // namespace metal

namespace msl_rt {

template <class P> inline auto& atomic_object(const P& p) {
    if constexpr (std::is_pointer_v<P>) {
        return *p;
    } else {
        return *p;  // checked_ptr: bounds-checked dereference
    }
}

template <class A> using atomic_value_t = typename std::remove_cv_t<std::remove_reference_t<A>>::value_type;

template <class T> inline T* atomic_address(const metal::atomic<T>& a) {
    if (__builtin_expect(race_checking, 0)) {
        race_atomic(&a.value, sizeof(T));  // atomics on threadgroup memory are exempt from race checks
    }
    return const_cast<T*>(&a.value);
}

// Integer-valued bits of a float for compare-exchange loops.
template <class T, class F>
inline T atomic_update(T* address, F update) {
    if constexpr (std::is_integral_v<T>) {
        T expected = __atomic_load_n(address, __ATOMIC_RELAXED);
        while (!__atomic_compare_exchange_n(address, &expected, update(expected), true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
        }
        return expected;
    } else {
        static_assert(sizeof(T) == 4, "only 32-bit floating-point atomics exist in MSL");
        uint32_t* bits = reinterpret_cast<uint32_t*>(address);
        uint32_t expected = __atomic_load_n(bits, __ATOMIC_RELAXED);
        for (;;) {
            T old;
            std::memcpy(&old, &expected, sizeof(T));
            const T desired_value = update(old);
            uint32_t desired;
            std::memcpy(&desired, &desired_value, sizeof(T));
            if (__atomic_compare_exchange_n(bits, &expected, desired, true, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
                return old;
            }
        }
    }
}

}  // namespace msl_rt

namespace metal {

template <class P, class T>
inline void atomic_store_explicit(P object, T desired, memory_order = memory_order_relaxed) {
    auto& a = msl_rt::atomic_object(object);
    using V = msl_rt::atomic_value_t<decltype(a)>;
    V value = V(desired);
    __atomic_store(msl_rt::atomic_address(a), &value, __ATOMIC_SEQ_CST);
}

template <class P>
inline auto atomic_load_explicit(P object, memory_order = memory_order_relaxed) {
    auto& a = msl_rt::atomic_object(object);
    using V = msl_rt::atomic_value_t<decltype(a)>;
    V value;
    __atomic_load(msl_rt::atomic_address(a), &value, __ATOMIC_SEQ_CST);
    return value;
}

template <class P, class T>
inline auto atomic_exchange_explicit(P object, T desired, memory_order = memory_order_relaxed) {
    auto& a = msl_rt::atomic_object(object);
    using V = msl_rt::atomic_value_t<decltype(a)>;
    V value = V(desired), old;
    __atomic_exchange(msl_rt::atomic_address(a), &value, &old, __ATOMIC_SEQ_CST);
    return old;
}

template <class P, class E, class T>
inline bool atomic_compare_exchange_weak_explicit(P object, E expected, T desired, memory_order = memory_order_relaxed,
                                                  memory_order = memory_order_relaxed) {
    auto& a = msl_rt::atomic_object(object);
    using V = msl_rt::atomic_value_t<decltype(a)>;
    V value = V(desired);
    V* expected_address = &*expected;  // a thread pointer
    return __atomic_compare_exchange(msl_rt::atomic_address(a), expected_address, &value, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
template <class P, class E, class T>
inline bool atomic_compare_exchange_strong_explicit(P object, E expected, T desired, memory_order s = memory_order_relaxed,
                                                    memory_order f = memory_order_relaxed) {
    return atomic_compare_exchange_weak_explicit(object, expected, desired, s, f);
}

#define MSL_RT_ATOMIC_RMW(name, expression)                                                    \
    template <class P, class T>                                                                \
    inline auto name(P object, T operand_, memory_order = memory_order_relaxed) {              \
        auto& a = msl_rt::atomic_object(object);                                               \
        using V = msl_rt::atomic_value_t<decltype(a)>;                                         \
        const V operand = V(operand_);                                                         \
        return msl_rt::atomic_update(msl_rt::atomic_address(a), [operand](V old) -> V { return expression; }); \
    }
MSL_RT_ATOMIC_RMW(atomic_fetch_add_explicit, V(old + operand))
MSL_RT_ATOMIC_RMW(atomic_fetch_sub_explicit, V(old - operand))
MSL_RT_ATOMIC_RMW(atomic_fetch_and_explicit, V(old & operand))
MSL_RT_ATOMIC_RMW(atomic_fetch_or_explicit, V(old | operand))
MSL_RT_ATOMIC_RMW(atomic_fetch_xor_explicit, V(old ^ operand))
MSL_RT_ATOMIC_RMW(atomic_fetch_min_explicit, (operand < old ? operand : old))
MSL_RT_ATOMIC_RMW(atomic_fetch_max_explicit, (old < operand ? operand : old))
#undef MSL_RT_ATOMIC_RMW

// 64-bit atomic min/max without a fetched result (MSL: atomic_min_explicit / atomic_max_explicit on ulong).
template <class P, class T> inline void atomic_min_explicit(P object, T operand, memory_order order = memory_order_relaxed) {
    atomic_fetch_min_explicit(object, operand, order);
}
template <class P, class T> inline void atomic_max_explicit(P object, T operand, memory_order order = memory_order_relaxed) {
    atomic_fetch_max_explicit(object, operand, order);
}

}  // namespace metal
