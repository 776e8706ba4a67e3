// MSL scalar and vector types for the CPU execution layer (top header; metal_stdlib includes it).
//
//   msl_types_scalar.h  uint/ushort/uchar/ulong, half, bfloat, metal::numeric_limits
//   msl_types_vec.h     vec<T, N>, packed_vec<T, N>, floatN ... boolN, swizzles, operators
//   this file           as_type, select, all/any, isnan/isinf/isfinite/isnormal/signbit,
//                       and the operand-type rules shared with msl_math.h
// See docs/msl-cpu-types.md for the supported subset and the deviations from Metal.
#pragma once

// One numerical contract with the GPU (docs/metal.md): Metal compiles the kernels with fast math off, so
// NaN and infinities behave as IEEE 754 says, and the kernels rely on it (masked tokens are -inf).
// A build that lets the compiler assume finite math would diverge from the GPU silently.
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "the MSL CPU execution layer must not be compiled with -ffast-math / -ffinite-math-only (-Ofast): the kernels rely on IEEE NaN and infinity, as on Metal with fast math off (docs/metal.md, One numerical contract)"
#endif

#include "msl_types_scalar.h"
#include "msl_types_vec.h"

namespace metal {
namespace detail {

// The scalar type arithmetic on scalars of types A... is done in (MSL usual arithmetic conversions,
// with double treated as float since MSL has no double).
template <class... S> struct scalar_common {
  static constexpr bool any_float = ((std::is_floating_point<S>::value) || ...);
  static constexpr bool any_half = ((std::is_same<S, half>::value) || ...);
  static constexpr bool any_bfloat = ((std::is_same<S, bfloat>::value) || ...);
  using type = typename std::conditional<
      any_float || (any_half && any_bfloat), float,
      typename std::conditional<any_half, half,
                                typename std::conditional<any_bfloat, bfloat,
                                                          typename std::common_type<S...>::type>::type>::type>::type;
};

// The operand type of a metal:: function called with arguments X...: the vector type if any
// argument is a vector (all vectors must agree; scalars are splat), else the common scalar type.
template <bool AnyVec, class... X> struct operand_impl {
  using type = typename scalar_common<X...>::type;
};
template <class... X> struct vec_args_agree;
template <class V> struct vec_args_agree<V> { using elem = typename vt<V>::elem; static constexpr int n = vt<V>::n; };
template <class... X> struct first_vec;
template <class X, class... R> struct first_vec<X, R...> {
  using type = typename std::conditional<vt<X>::vecish, X, typename first_vec<R...>::type>::type;
};
template <class X> struct first_vec<X> { using type = X; };
template <class... X> struct operand_impl<true, X...> {
  using V = typename first_vec<X...>::type;
  using elem = typename vt<V>::elem;
  static constexpr int n = vt<V>::n;
  static_assert(((!vt<X>::vecish || (vt<X>::n == n && std::is_same<typename vt<X>::elem, elem>::value)) && ...),
                "vector arguments must have the same size and element type");
  static_assert(((vt<X>::vecish || vt<X>::scalar) && ...), "arguments must be scalars or vectors");
  using type = vec<elem, n>;
};
template <class... X>
using operand_t = typename std::enable_if<((vt<X>::vecish || vt<X>::scalar) && ...),
                                          typename operand_impl<((vt<X>::vecish) || ...), X...>::type>::type;

template <class E> struct is_float_elem
    : std::integral_constant<bool, std::is_floating_point<E>::value || is_fp16<E>::value> {};

// Operand type of a floating-point-only function: integer scalars become float.
template <class R, bool = vt<R>::vecish, bool = is_float_elem<typename vt<R>::elem>::value> struct float_only {};
template <class R, bool V> struct float_only<R, V, true> { using type = R; };
template <class R> struct float_only<R, false, false> {
  using type = typename std::enable_if<std::is_integral<R>::value, float>::type;
};
template <class... X> using float_operand_t = typename float_only<operand_t<X...>>::type;

// Operand type of an integer-only function.
template <class... X>
using int_operand_t =
    typename std::enable_if<is_int_elem<typename vt<operand_t<X...>>::elem>, operand_t<X...>>::type;

// Component k of argument x converted to the element type E of the operand type.
template <class E, class X> inline E arg(const X& x, int k) { return E(at(x, k)); }

// Apply f component-wise: R is a vector or scalar operand type.
template <class R, class F, class... X>
inline R map(F f, const X&... x) {
  if constexpr (vt<R>::vecish) {
    using E = typename vt<R>::elem;
    R r;
    for (int k = 0; k < vt<R>::n; ++k) r.elems_[k] = E(f(arg<E>(x, k)...));
    return r;
  } else {
    return R(f(R(x)...));
  }
}

template <class X> using bool_result_t = typename std::conditional<vt<X>::vecish, vec<bool, vt<X>::n>, bool>::type;

template <class R, class F, class X>
inline R map_bool(F f, const X& x) {
  if constexpr (vt<X>::vecish) {
    R r;
    for (int k = 0; k < vt<X>::n; ++k) r.elems_[k] = f(at(x, k));
    return r;
  } else {
    return f(x);
  }
}

}  // namespace detail

// as_type<T>(x): reinterpret the bits of x as T; the sizes must match (MSL).
template <class To, class From>
inline To as_type(const From& x) {
  using Src = vector_of<From>;
  static_assert(sizeof(To) == sizeof(Src), "as_type: source and destination sizes differ");
  static_assert(std::is_trivially_copy_constructible<To>::value, "as_type: destination must be a plain value type");
  const Src src = x;
  To to;
  __builtin_memcpy(static_cast<void*>(&to), static_cast<const void*>(&src), sizeof(To));
  return to;
}

// select(a, b, c): c ? b : a, component-wise for vectors (c is bool or boolN).
template <class A, class B, class C, class R = detail::operand_t<A, B>>
inline R select(const A& a, const B& b, const C& c) {
  static_assert(std::is_same<typename detail::vt<C>::elem, bool>::value, "select: condition must be bool or boolN");
  if constexpr (detail::vt<R>::vecish) {
    using E = typename detail::vt<R>::elem;
    R r;
    for (int k = 0; k < detail::vt<R>::n; ++k) {
      const bool ck = detail::vt<C>::vecish ? bool(detail::at(c, k)) : bool(detail::at(c, 0));
      r.elems_[k] = ck ? detail::arg<E>(b, k) : detail::arg<E>(a, k);
    }
    return r;
  } else {
    static_assert(!detail::vt<C>::vecish, "select: a vector condition needs vector operands");
    return bool(c) ? R(b) : R(a);
  }
}

// all / any: true if all / any component is true (bool scalars are accepted too).
template <class X, typename std::enable_if<std::is_same<typename detail::vt<X>::elem, bool>::value, int>::type = 0>
inline bool all(const X& x) {
  for (int k = 0; k < detail::vt<X>::n; ++k)
    if (!detail::at(x, k)) return false;
  return true;
}
template <class X, typename std::enable_if<std::is_same<typename detail::vt<X>::elem, bool>::value, int>::type = 0>
inline bool any(const X& x) {
  for (int k = 0; k < detail::vt<X>::n; ++k)
    if (detail::at(x, k)) return true;
  return false;
}

namespace detail {
// Classified from the bits of the float value (exact for half/bfloat too), so the answers stay IEEE even
// in code built with -ffinite-math-only, where the compiler may fold x != x and __builtin_isnan.
inline uint32_t float_magnitude_bits(float v) { return __builtin_bit_cast(uint32_t, v) & 0x7fffffffu; }
struct isnan_fn { template <class E> bool operator()(E x) const { return float_magnitude_bits(float(x)) > 0x7f800000u; } };
struct isinf_fn { template <class E> bool operator()(E x) const { return float_magnitude_bits(float(x)) == 0x7f800000u; } };
struct isfinite_fn { template <class E> bool operator()(E x) const { return float_magnitude_bits(float(x)) < 0x7f800000u; } };
struct isnormal_fn {
  template <class E> bool operator()(E x) const {
    const float v = float(x) < 0 ? -float(x) : float(x);
    return v >= float(numeric_limits<E>::min()) && v <= float(numeric_limits<E>::max());
  }
};
struct signbit_fn { template <class E> bool operator()(E x) const { return (__builtin_bit_cast(uint32_t, float(x)) >> 31) != 0; } };
template <class X> using fp_bool_t =
    typename std::enable_if<is_float_elem<typename vt<X>::elem>::value, bool_result_t<X>>::type;
}  // namespace detail

// Name resolution next to the C library. Kernels call these names unqualified at global scope with
// `using namespace metal;`, so the C/C++ library's global math declarations (libc++'s <math.h>
// declares `template <class A1> bool isfinite(A1)` and friends at global scope; libstdc++ does not)
// join the same overload set whenever some header pulls <math.h> in. These headers do not include
// <cmath>/<math.h> (and so normally nothing conflicts), but to stay unambiguous when they are visible,
// every function also has a `template <class = void> R NAME(float...)` overload: it is more specialised
// than any generic template (the library's `A1` by value and our `const X&`), so a float call picks it,
// unless the library has a non-template NAME(float), which then wins with the same result. Only
// calls mixing builtin arithmetic types (fma(float, int, float)) can still be ambiguous with libc++
// when <math.h> is visible: convert the argument (tests/cpp/test_msl_names.cpp checks all of this).
#define MSL_FP_PREDICATE(NAME)                                                                  \
  template <class X, class R = detail::fp_bool_t<X>>                                            \
  inline R NAME(const X& x) { return detail::map_bool<R>(detail::NAME##_fn{}, x); }            \
  template <class = void>                                                                       \
  inline bool NAME(float x) { return detail::NAME##_fn{}(x); }
MSL_FP_PREDICATE(isnan)
MSL_FP_PREDICATE(isinf)
MSL_FP_PREDICATE(isfinite)
MSL_FP_PREDICATE(isnormal)
MSL_FP_PREDICATE(signbit)
#undef MSL_FP_PREDICATE

template <class A, class B, class R = detail::bool_result_t<detail::operand_t<A, B>>>
inline R isunordered(const A& a, const B& b) { return isnan(a) || isnan(b); }
template <class = void>
inline bool isunordered(float a, float b) { return detail::isnan_fn{}(a) || detail::isnan_fn{}(b); }
template <class A, class B, class R = detail::bool_result_t<detail::operand_t<A, B>>>
inline R isordered(const A& a, const B& b) { return !isunordered(a, b); }

}  // namespace metal

using metal::as_type;  // a built-in operator in MSL: usable without `metal::`
