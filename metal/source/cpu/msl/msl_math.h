// MSL math library for the CPU execution layer: namespace metal and its fast:: and precise::
// sub-namespaces (common, math, integer, geometric functions and the math constants).
//
// Every function accepts scalars and vectors (vec, packed_vec, swizzles) of float, half and bfloat
// (integer functions: of the integer types), mixed as MSL allows: if any argument is a vector the
// others may be scalars, which are splat (fma(float4, float, float4)).
//
// Precision: float functions use the host libm float functions (glibc: < 1 ulp for exp/log/sin/...,
// correctly rounded sqrt, fma, fmod, floor, ...), which is within every MSL precise:: bound.  half and
// bfloat functions compute in float and round once, so + - * / sqrt are correctly rounded (see
// msl_types_scalar.h) and the rest are within 1 ulp of the half/bfloat result.  fast:: functions are
// the same precise implementations (MSL allows fast:: to be more accurate than its bounds).
#pragma once

// No <cmath>/<math.h>: they declare the C math functions at global scope (libc++ adds generic templates
// there: `template <class A1> bool isfinite(A1)`), where they would compete with these in kernels,
// which call the names unqualified with `using namespace metal;`. Everything here uses builtins; the
// constants at the end fall back to builtins too. See "Name resolution" in msl_types.h.
#include "msl_types.h"

namespace metal {
namespace detail {

template <class E> constexpr bool is_fp = is_float_elem<E>::value;

// Largest value below 1 in E (the upper bound of fract).
template <class E> inline E below_one() {
  if constexpr (std::is_same<E, half>::value) return half::from_bits(0x3bff);
  else if constexpr (std::is_same<E, bfloat>::value) return bfloat::from_bits(0x3f7f);
  else return E(0x1.fffffep-1f);
}

// IEEE fmin/fmax semantics (a NaN argument is ignored), returning the argument itself.
template <class E> inline E fmin_e(E a, E b) {
  const float x = float(a), y = float(b);
  if (y != y || x < y) return a;
  if (x != x || y < x) return b;
  return __builtin_signbit(x) ? a : b;  // fmin(-0, +0) = -0
}
template <class E> inline E fmax_e(E a, E b) {
  const float x = float(a), y = float(b);
  if (y != y || x > y) return a;
  if (x != x || y > x) return b;
  return __builtin_signbit(x) ? b : a;  // fmax(-0, +0) = +0
}
template <class E> inline E min_e(E a, E b) {
  if constexpr (is_fp<E>) return fmin_e(a, b); else return b < a ? b : a;
}
template <class E> inline E max_e(E a, E b) {
  if constexpr (is_fp<E>) return fmax_e(a, b); else return a < b ? b : a;
}

// fma for half/bfloat: the product of two <= 11-bit significands is exact in double; the sum is
// rounded to odd in double (TwoSum gives the exact remainder), which the final RNE rounding to
// half/bfloat turns into the correctly rounded fused result.
template <class E> inline E fp16_fma(E a, E b, E c) {
  const double s = double(float(a)) * double(float(b));
  const double cc = double(float(c));
  double r = s + cc;
  if (__builtin_isfinite(r)) {
    const double bb = r - s;
    const double err = (s - (r - bb)) + (cc - bb);
    uint64_t u = double_bits(r);
    if (err != 0 && (u & 1u) == 0) {
      u = ((err > 0) == (r > 0)) ? u + 1 : u - 1;
      r = __builtin_bit_cast(double, u);
    }
  }
  return E(r);
}

constexpr double kPi = 3.14159265358979323846;
inline double sinpi_d(float x) {
  if (!__builtin_isfinite(x)) return double(x - x);  // NaN
  float r = __builtin_fmodf(x, 2.0f);  // exact, in (-2, 2)
  double sign = 1.0;
  if (r < 0.0f) { r = -r; sign = -1.0; }
  if (r >= 1.0f) { r = r - 1.0f; sign = -sign; }  // sin(pi (r + 1)) = -sin(pi r); exact (Sterbenz)
  if (r > 0.5f) r = 1.0f - r;                      // sin(pi r) = sin(pi (1 - r)); exact (Sterbenz)
  const double s = sign * __builtin_sin(kPi * double(r));
  return s == 0.0 ? __builtin_copysign(0.0, double(x)) : s;
}
inline double cospi_d(float x) {
  if (!__builtin_isfinite(x)) return double(x - x);
  float r = __builtin_fabsf(__builtin_fmodf(x, 2.0f));  // [0, 2)
  if (r > 1.0f) r = 2.0f - r;  // cos is even about 1: exact (Sterbenz)
  if (r <= 0.25f) return __builtin_cos(kPi * double(r));
  return __builtin_sin(kPi * (0.5 - double(r)));  // 0.5 - r is exact in double for r >= 1/4
}

template <class E> inline int int_bits() { return int(sizeof(E) * 8); }
template <class E> using uns_t = typename std::make_unsigned<E>::type;

}  // namespace detail

// ---- Float-only functions: scalar or vector of float/half/bfloat (integer scalars become float) ----

#define MSL_UNARY_F(NAME, BODY)                                                                    \
  namespace detail {                                                                               \
  struct NAME##_fn {                                                                               \
    template <class E> E operator()(E x_) const { const float x = float(x_); (void)x; return E(BODY); } \
  };                                                                                               \
  }                                                                                                \
  template <class X, class R = detail::float_operand_t<X>>                                         \
  inline R NAME(const X& x) { return detail::map<R>(detail::NAME##_fn{}, x); }                    \
  template <class = void>                                                                          \
  inline float NAME(float x) { return detail::NAME##_fn{}(x); }

MSL_UNARY_F(acos, __builtin_acosf(x))
MSL_UNARY_F(acosh, __builtin_acoshf(x))
MSL_UNARY_F(asin, __builtin_asinf(x))
MSL_UNARY_F(asinh, __builtin_asinhf(x))
MSL_UNARY_F(atan, __builtin_atanf(x))
MSL_UNARY_F(atanh, __builtin_atanhf(x))
MSL_UNARY_F(ceil, __builtin_ceilf(x))
MSL_UNARY_F(cos, __builtin_cosf(x))
MSL_UNARY_F(cosh, __builtin_coshf(x))
MSL_UNARY_F(exp, __builtin_expf(x))
MSL_UNARY_F(exp2, __builtin_exp2f(x))
MSL_UNARY_F(exp10, float(__builtin_exp(double(x) * 2.302585092994045684)))
MSL_UNARY_F(fabs, __builtin_fabsf(x))
MSL_UNARY_F(floor, __builtin_floorf(x))
MSL_UNARY_F(log, __builtin_logf(x))
MSL_UNARY_F(log2, __builtin_log2f(x))
MSL_UNARY_F(log10, __builtin_log10f(x))
MSL_UNARY_F(rint, __builtin_rintf(x))
MSL_UNARY_F(round, __builtin_roundf(x))  // halfway cases away from zero (MSL)
MSL_UNARY_F(rsqrt, float(1.0 / __builtin_sqrt(double(x))))
MSL_UNARY_F(sin, __builtin_sinf(x))
MSL_UNARY_F(sinh, __builtin_sinhf(x))
MSL_UNARY_F(sqrt, __builtin_sqrtf(x))
MSL_UNARY_F(tan, __builtin_tanf(x))
MSL_UNARY_F(tanh, __builtin_tanhf(x))
MSL_UNARY_F(trunc, __builtin_truncf(x))
// sinpi/cospi/tanpi: exact argument reduction to [0, 1/2] in float/double, then sin/cos(pi * t) in
// double, so integers and half-integers give exact 0 / +-1.
MSL_UNARY_F(cospi, float(detail::cospi_d(x)))
MSL_UNARY_F(sinpi, float(detail::sinpi_d(x)))
MSL_UNARY_F(tanpi, float(detail::sinpi_d(x) / detail::cospi_d(x)))
// saturate: clamp to [0, 1] (NaN gives 0, as fmin(fmax(NaN, 0), 1)).
MSL_UNARY_F(saturate, (x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f))
// sign: 1 for x > 0, -1 for x < 0, x itself for +-0, 0 for NaN.
MSL_UNARY_F(sign, (x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : (x == 0.0f ? x : 0.0f))))
#undef MSL_UNARY_F

namespace detail {
// fract(x) = fmin(x - floor(x), largest value below 1), rounded in E; NaN stays NaN, +-inf gives 0.
struct fract_fn {
  template <class E> E operator()(E e) const {
    const float x = float(e);
    if (x != x) return e;
    if (__builtin_isinf(x)) return E(0.0f);
    const E r = E(x - __builtin_floorf(x));
    return float(r) < float(below_one<E>()) ? r : below_one<E>();
  }
};
}  // namespace detail
template <class X, class R = detail::float_operand_t<X>>
inline R fract(const X& x) { return detail::map<R>(detail::fract_fn{}, x); }
template <class = void>
inline float fract(float x) { return detail::fract_fn{}(x); }

#define MSL_BINARY_F(NAME, BODY)                                                                   \
  namespace detail {                                                                               \
  struct NAME##_fn {                                                                               \
    template <class E> E operator()(E x_, E y_) const {                                            \
      const float x = float(x_), y = float(y_);                                                    \
      (void)x; (void)y;                                                                            \
      return E(BODY);                                                                              \
    }                                                                                              \
  };                                                                                               \
  }                                                                                                \
  template <class X, class Y, class R = detail::float_operand_t<X, Y>>                             \
  inline R NAME(const X& x, const Y& y) { return detail::map<R>(detail::NAME##_fn{}, x, y); }      \
  template <class = void>                                                                          \
  inline float NAME(float x, float y) { return detail::NAME##_fn{}(x, y); }

MSL_BINARY_F(atan2, __builtin_atan2f(x, y))
MSL_BINARY_F(copysign, __builtin_copysignf(x, y))
MSL_BINARY_F(fdim, __builtin_fdimf(x, y))
MSL_BINARY_F(fmod, __builtin_fmodf(x, y))
MSL_BINARY_F(pow, __builtin_powf(x, y))
MSL_BINARY_F(powr, (x < 0.0f ? __builtin_nanf("") : __builtin_powf(x, y)))  // powr: x >= 0 only
MSL_BINARY_F(nextafter, __builtin_nextafterf(x, y))
MSL_BINARY_F(divide, x / y)
MSL_BINARY_F(step, (y < x ? 0.0f : 1.0f))  // step(edge, x)
#undef MSL_BINARY_F

namespace detail {
struct fmin_fn { template <class E> E operator()(E a, E b) const { return fmin_e(a, b); } };
struct fmax_fn { template <class E> E operator()(E a, E b) const { return fmax_e(a, b); } };
struct fma_fn {
  template <class E> E operator()(E a, E b, E c) const {
    if constexpr (is_fp16<E>::value) return fp16_fma(a, b, c);
    else return E(__builtin_fmaf(float(a), float(b), float(c)));
  }
};
// mad: a * b + c with two roundings (MSL allows either; unfused matches `fp contract(off)`).
struct mad_fn {
  template <class E> E operator()(E a, E b, E c) const {
    const E p = E(a * b);
    return E(p + c);
  }
};
struct mix_fn { template <class E> E operator()(E x, E y, E a) const { return E(x + E(E(y - x) * a)); } };
struct smoothstep_fn {
  template <class E> E operator()(E e0, E e1, E x_) const {
    const float x = float(x_), a = float(e0), b = float(e1);
    float t = (x - a) / (b - a);
    t = t > 0.0f ? (t < 1.0f ? t : 1.0f) : 0.0f;
    return E(t * t * (3.0f - 2.0f * t));
  }
};
struct fmin3_fn { template <class E> E operator()(E a, E b, E c) const { return fmin_e(fmin_e(a, b), c); } };
struct fmax3_fn { template <class E> E operator()(E a, E b, E c) const { return fmax_e(fmax_e(a, b), c); } };
struct fmedian3_fn {
  template <class E> E operator()(E a, E b, E c) const { return fmax_e(fmin_e(a, b), fmin_e(fmax_e(a, b), c)); }
};
}  // namespace detail

template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline R fmin(const X& x, const Y& y) { return detail::map<R>(detail::fmin_fn{}, x, y); }
template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline R fmax(const X& x, const Y& y) { return detail::map<R>(detail::fmax_fn{}, x, y); }
template <class = void>
inline float fmin(float x, float y) { return detail::fmin_e(x, y); }
template <class = void>
inline float fmax(float x, float y) { return detail::fmax_e(x, y); }

#define MSL_TERNARY_F(NAME)                                                                        \
  template <class A, class B, class C, class R = detail::float_operand_t<A, B, C>>                 \
  inline R NAME(const A& a, const B& b, const C& c) { return detail::map<R>(detail::NAME##_fn{}, a, b, c); } \
  template <class = void>                                                                          \
  inline float NAME(float a, float b, float c) { return detail::NAME##_fn{}(a, b, c); }
MSL_TERNARY_F(fma)
MSL_TERNARY_F(mad)
MSL_TERNARY_F(mix)
MSL_TERNARY_F(smoothstep)
MSL_TERNARY_F(fmin3)
MSL_TERNARY_F(fmax3)
MSL_TERNARY_F(fmedian3)
#undef MSL_TERNARY_F

// sincos(x, cosval): returns sin(x) and stores cos(x).
template <class X, class C, class R = detail::float_operand_t<X>>
inline R sincos(const X& x, C& cosval) {
  static_assert(std::is_same<vector_of<C>, R>::value, "sincos: cosval must have the type of x");
  cosval = cos(x);
  return sin(x);
}

// frexp(x, exponent): mantissa in [0.5, 1) and exponent (int or intN), as C frexp.
template <class X, class I, class R = detail::float_operand_t<X>>
inline R frexp(const X& x, I& exponent) {
  using E = typename detail::vt<R>::elem;
  static_assert(detail::vt<I>::n == detail::vt<R>::n && std::is_same<typename detail::vt<I>::elem, int>::value,
                "frexp: exponent must be int / intN matching x");
  R r;
  vector_of<I> ex;
  for (int k = 0; k < detail::vt<R>::n; ++k) {
    int e = 0;
    const E m = E(__builtin_frexpf(float(detail::arg<E>(x, k)), &e));
    if constexpr (detail::vt<R>::vecish) { r.elems_[k] = m; ex.elems_[k] = e; } else { r = m; ex = e; }
  }
  exponent = ex;
  return r;
}

// ldexp(x, k) = x * 2^k (k int or intN); rounded once.
template <class X, class I, class R = detail::float_operand_t<X>>
inline R ldexp(const X& x, const I& k) {
  using E = typename detail::vt<R>::elem;
  R r;
  for (int i = 0; i < detail::vt<R>::n; ++i) {
    const int ki = int(detail::at(k, detail::vt<I>::vecish ? i : 0));
    // half/bfloat: float's exponent range contains theirs, so one rounding (float -> E) happens.
    const E v = E(__builtin_ldexpf(float(detail::arg<E>(x, i)), ki));
    if constexpr (detail::vt<R>::vecish) r.elems_[i] = v; else r = v;
  }
  return r;
}

// modf(x, intval): fractional part with x's sign, integral part stored.
template <class X, class P, class R = detail::float_operand_t<X>>
inline R modf(const X& x, P& intval) {
  static_assert(std::is_same<vector_of<P>, R>::value, "modf: intval must have the type of x");
  using E = typename detail::vt<R>::elem;
  R r, ip;
  for (int k = 0; k < detail::vt<R>::n; ++k) {
    float i = 0.0f;
    const E f = E(__builtin_modff(float(detail::arg<E>(x, k)), &i));
    if constexpr (detail::vt<R>::vecish) { r.elems_[k] = f; ip.elems_[k] = E(i); } else { r = f; ip = E(i); }
  }
  intval = ip;
  return r;
}

// ---- Functions on both floating-point and integer types ----

namespace detail {
struct min_fn { template <class E> E operator()(E a, E b) const { return min_e(a, b); } };
struct max_fn { template <class E> E operator()(E a, E b) const { return max_e(a, b); } };
// clamp(x, lo, hi) = min(max(x, lo), hi) (fmin/fmax for floating point).
struct clamp_fn { template <class E> E operator()(E x, E lo, E hi) const { return min_e(max_e(x, lo), hi); } };
struct min3_fn { template <class E> E operator()(E a, E b, E c) const { return min_e(min_e(a, b), c); } };
struct max3_fn { template <class E> E operator()(E a, E b, E c) const { return max_e(max_e(a, b), c); } };
struct median3_fn {
  template <class E> E operator()(E a, E b, E c) const { return max_e(min_e(a, b), min_e(max_e(a, b), c)); }
};
struct abs_fn {
  template <class E> E operator()(E x) const {
    if constexpr (is_fp<E>) return E(__builtin_fabsf(float(x)));
    else if constexpr (std::is_signed<E>::value) return x < 0 ? E(uwide_t<E>(0) - uwide_t<E>(x)) : x;  // abs(MIN) = MIN
    else return x;
  }
};
}  // namespace detail

template <class X, class R = detail::operand_t<X>>
inline R abs(const X& x) { return detail::map<R>(detail::abs_fn{}, x); }
template <class X, class Y, class R = detail::operand_t<X, Y>>
inline R min(const X& x, const Y& y) { return detail::map<R>(detail::min_fn{}, x, y); }
template <class X, class Y, class R = detail::operand_t<X, Y>>
inline R max(const X& x, const Y& y) { return detail::map<R>(detail::max_fn{}, x, y); }
template <class X, class L, class H, class R = detail::operand_t<X, L, H>>
inline R clamp(const X& x, const L& lo, const H& hi) { return detail::map<R>(detail::clamp_fn{}, x, lo, hi); }
template <class A, class B, class C, class R = detail::operand_t<A, B, C>>
inline R min3(const A& a, const B& b, const C& c) { return detail::map<R>(detail::min3_fn{}, a, b, c); }
template <class A, class B, class C, class R = detail::operand_t<A, B, C>>
inline R max3(const A& a, const B& b, const C& c) { return detail::map<R>(detail::max3_fn{}, a, b, c); }
template <class A, class B, class C, class R = detail::operand_t<A, B, C>>
inline R median3(const A& a, const B& b, const C& c) { return detail::map<R>(detail::median3_fn{}, a, b, c); }

// ---- Integer functions (scalars and vectors of the integer types) ----

namespace detail {
template <class E> inline E sat_cast(long long v) {  // |v| fits long long for every 8..32-bit E
  if (v < (long long)std::numeric_limits<E>::min()) return std::numeric_limits<E>::min();
  if (v > (long long)std::numeric_limits<E>::max()) return std::numeric_limits<E>::max();
  return E(v);
}
struct absdiff_fn {  // |x - y| without overflow, in the unsigned type of the same width
  template <class E> E operator()(E x, E y) const {
    using U = uns_t<E>;
    return E(x > y ? U(U(x) - U(y)) : U(U(y) - U(x)));
  }
};
struct addsat_fn {
  template <class E> E operator()(E x, E y) const {
    if constexpr (sizeof(E) < 8) return sat_cast<E>((long long)x + (long long)y);
    else { E r; return __builtin_add_overflow(x, y, &r) ? (y > 0 ? std::numeric_limits<E>::max() : std::numeric_limits<E>::min()) : r; }
  }
};
struct subsat_fn {
  template <class E> E operator()(E x, E y) const {
    if constexpr (sizeof(E) < 8) return sat_cast<E>((long long)x - (long long)y);
    else {
      E r;
      if (!__builtin_sub_overflow(x, y, &r)) return r;
      if (std::is_unsigned<E>::value) return E(0);
      return y > 0 ? std::numeric_limits<E>::min() : std::numeric_limits<E>::max();
    }
  }
};
struct hadd_fn {  // (x + y) >> 1 without overflow
  template <class E> E operator()(E x, E y) const { return E((x >> 1) + (y >> 1) + (x & y & 1)); }
};
struct rhadd_fn {  // (x + y + 1) >> 1 without overflow
  template <class E> E operator()(E x, E y) const { return E((x >> 1) + (y >> 1) + ((x | y) & 1)); }
};
struct mulhi_fn {  // high half of the full product
  template <class E> E operator()(E x, E y) const {
    if constexpr (sizeof(E) < 8 && std::is_signed<E>::value) return E(((long long)x * (long long)y) >> (8 * sizeof(E)));
    else if constexpr (sizeof(E) < 8) return E(((unsigned long long)x * (unsigned long long)y) >> (8 * sizeof(E)));
    else if constexpr (std::is_signed<E>::value) return E((__int128(x) * __int128(y)) >> 64);
    else return E((unsigned __int128)(x) * (unsigned __int128)(y) >> 64);
  }
};
struct madhi_fn { template <class E> E operator()(E a, E b, E c) const { return op_add<E>(mulhi_fn{}(a, b), c); } };
struct madsat_fn {
  template <class E> E operator()(E a, E b, E c) const {
    if constexpr (sizeof(E) < 4) return sat_cast<E>((long long)a * b + c);
    else {
      using W = typename std::conditional<std::is_signed<E>::value, __int128, unsigned __int128>::type;
      const W v = W(a) * W(b) + W(c);
      if (v < W(std::numeric_limits<E>::min())) return std::numeric_limits<E>::min();
      if (v > W(std::numeric_limits<E>::max())) return std::numeric_limits<E>::max();
      return E(v);
    }
  }
};
struct mul24_fn { template <class E> E operator()(E a, E b) const { return op_mul<E>(a, b); } };
struct mad24_fn { template <class E> E operator()(E a, E b, E c) const { return op_add<E>(op_mul<E>(a, b), c); } };
struct clz_fn {
  template <class E> E operator()(E x) const {
    const unsigned long long u = (unsigned long long)(uns_t<E>(x));
    if (u == 0) return E(int_bits<E>());
    return E(__builtin_clzll(u) - (64 - int_bits<E>()));
  }
};
struct ctz_fn {
  template <class E> E operator()(E x) const {
    const unsigned long long u = (unsigned long long)(uns_t<E>(x));
    return u == 0 ? E(int_bits<E>()) : E(__builtin_ctzll(u));
  }
};
struct popcount_fn {
  template <class E> E operator()(E x) const { return E(__builtin_popcountll((unsigned long long)(uns_t<E>(x)))); }
};
struct reverse_bits_fn {
  template <class E> E operator()(E x) const {
    using U = uns_t<E>;
    U u = U(x), r = 0;
    for (int i = 0; i < int_bits<E>(); ++i) { r = U((r << 1) | (u & 1u)); u = U(u >> 1); }
    return E(r);
  }
};
struct rotate_fn {  // rotate left by y modulo the width
  template <class E> E operator()(E x, E y) const {
    using U = uns_t<E>;
    const int n = int_bits<E>();
    const int s = int((unsigned long long)(U(y)) % unsigned(n));
    const U u = U(x);
    return s == 0 ? x : E(U(U(u << s) | U(u >> (n - s))));
  }
};
}  // namespace detail

template <class X, class R = detail::int_operand_t<X>>
inline R clz(const X& x) { return detail::map<R>(detail::clz_fn{}, x); }
template <class X, class R = detail::int_operand_t<X>>
inline R ctz(const X& x) { return detail::map<R>(detail::ctz_fn{}, x); }
template <class X, class R = detail::int_operand_t<X>>
inline R popcount(const X& x) { return detail::map<R>(detail::popcount_fn{}, x); }
template <class X, class R = detail::int_operand_t<X>>
inline R reverse_bits(const X& x) { return detail::map<R>(detail::reverse_bits_fn{}, x); }

#define MSL_BINARY_I(NAME)                                                                         \
  template <class X, class Y, class R = detail::int_operand_t<X, Y>>                               \
  inline R NAME(const X& x, const Y& y) { return detail::map<R>(detail::NAME##_fn{}, x, y); }
MSL_BINARY_I(absdiff)
MSL_BINARY_I(addsat)
MSL_BINARY_I(subsat)
MSL_BINARY_I(hadd)
MSL_BINARY_I(rhadd)
MSL_BINARY_I(mulhi)
MSL_BINARY_I(mul24)
MSL_BINARY_I(rotate)
#undef MSL_BINARY_I
#define MSL_TERNARY_I(NAME)                                                                        \
  template <class A, class B, class C, class R = detail::int_operand_t<A, B, C>>                   \
  inline R NAME(const A& a, const B& b, const C& c) { return detail::map<R>(detail::NAME##_fn{}, a, b, c); }
MSL_TERNARY_I(madhi)
MSL_TERNARY_I(madsat)
MSL_TERNARY_I(mad24)
#undef MSL_TERNARY_I

// extract_bits(x, offset, bits): `bits` bits of x from bit `offset`, zero-extended for unsigned and
// sign-extended for signed types; bits == 0 gives 0.  offset + bits > width is undefined in MSL: we
// clamp to the available bits.
template <class X, class R = detail::int_operand_t<X>>
inline R extract_bits(const X& x, uint offset, uint bits) {
  using E = typename detail::vt<R>::elem;
  return detail::map<R>(
      [offset, bits](E v) -> E {
        using U = detail::uns_t<E>;
        const uint n = uint(detail::int_bits<E>());
        if (bits == 0 || offset >= n) return E(0);
        const uint b = bits > n - offset ? n - offset : bits;
        const unsigned long long field = ((unsigned long long)U(v) >> offset) & (b >= 64 ? ~0ull : ((1ull << b) - 1));
        if (std::is_signed<E>::value && b < n && (field >> (b - 1)) & 1ull) return E(U(field | (~0ull << b)));
        return E(U(field));
      },
      x);
}

// insert_bits(base, insert, offset, bits): base with bits [offset, offset + bits) replaced by the low
// `bits` bits of insert.
template <class X, class Y, class R = detail::int_operand_t<X, Y>>
inline R insert_bits(const X& base, const Y& insert, uint offset, uint bits) {
  using E = typename detail::vt<R>::elem;
  return detail::map<R>(
      [offset, bits](E b0, E ins) -> E {
        using U = detail::uns_t<E>;
        const uint n = uint(detail::int_bits<E>());
        if (bits == 0 || offset >= n) return b0;
        const uint b = bits > n - offset ? n - offset : bits;
        const unsigned long long mask = (b >= 64 ? ~0ull : ((1ull << b) - 1)) << offset;
        const unsigned long long v = ((unsigned long long)U(b0) & ~mask) | (((unsigned long long)U(ins) << offset) & mask);
        return E(U(v));
      },
      base, insert);
}

// ---- Geometric functions (float/half/bfloat vectors; scalars act as 1-vectors) ----

// dot: sum of products, left to right, each product and sum rounded in E (contract(off) order).
template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline typename detail::vt<R>::elem dot(const X& x, const Y& y) {
  using E = typename detail::vt<R>::elem;
  E s = E(detail::arg<E>(x, 0) * detail::arg<E>(y, 0));
  for (int k = 1; k < detail::vt<R>::n; ++k) s = E(s + E(detail::arg<E>(x, k) * detail::arg<E>(y, k)));
  return s;
}
// length_squared: as dot(x, x).
template <class X, class R = detail::float_operand_t<X>>
inline typename detail::vt<R>::elem length_squared(const X& x) { return dot(x, x); }
// length: computed in double (no overflow or underflow of the squares), rounded once.
template <class X, class R = detail::float_operand_t<X>>
inline typename detail::vt<R>::elem length(const X& x) {
  using E = typename detail::vt<R>::elem;
  double s = 0.0;
  for (int k = 0; k < detail::vt<R>::n; ++k) {
    const double v = double(float(detail::arg<E>(x, k)));
    s += v * v;
  }
  return E(__builtin_sqrt(s));
}
template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline typename detail::vt<R>::elem distance(const X& x, const Y& y) { return length(R(x) - R(y)); }
template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline typename detail::vt<R>::elem distance_squared(const X& x, const Y& y) { return length_squared(R(x) - R(y)); }
// normalize: x / length(x) (a zero vector gives NaNs, as on the GPU).
template <class X, class R = detail::float_operand_t<X>>
inline R normalize(const X& x) {
  using E = typename detail::vt<R>::elem;
  const float inv = 1.0f / float(length(x));
  return detail::map<R>([inv](E v) { return E(float(v) * inv); }, x);
}
template <class X, class Y, class R = detail::float_operand_t<X, Y>>
inline R cross(const X& x, const Y& y) {
  static_assert(detail::vt<R>::n == 3, "cross: 3-component vectors");
  const R a(x), b(y);
  return R(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}
template <class I, class N, class R = detail::float_operand_t<I, N>>
inline R reflect(const I& i, const N& n) { return R(i) - R(n) * (2 * dot(n, i)); }

// ---- fast:: and precise:: ----
// MSL's fast:: variants may be less accurate; here they are the precise implementations.
#define MSL_MATH_NAMES(X)                                                                          \
  X(acos) X(acosh) X(asin) X(asinh) X(atan) X(atanh) X(atan2) X(ceil) X(copysign) X(cos) X(cosh)   \
  X(cospi) X(divide) X(exp) X(exp2) X(exp10) X(fabs) X(abs) X(fdim) X(floor) X(fma) X(fmax)        \
  X(fmax3) X(fmedian3) X(fmin) X(fmin3) X(fmod) X(fract) X(frexp) X(ldexp) X(log) X(log2) X(log10) \
  X(max) X(max3) X(median3) X(min) X(min3) X(modf) X(nextafter) X(pow) X(powr) X(rint) X(round)    \
  X(rsqrt) X(sin) X(sincos) X(sinh) X(sinpi) X(sqrt) X(tan) X(tanh) X(tanpi) X(trunc) X(clamp)    \
  X(mix) X(saturate) X(sign) X(smoothstep) X(step) X(distance) X(length) X(normalize) X(mad)
#define MSL_USING(NAME) using metal::NAME;
namespace fast { MSL_MATH_NAMES(MSL_USING) }
namespace precise { MSL_MATH_NAMES(MSL_USING) }
#undef MSL_USING
#undef MSL_MATH_NAMES

}  // namespace metal

// ---- Constants (MSL "Math functions" constants; the system's definitions are kept when present) ----
#ifndef MAXFLOAT
#define MAXFLOAT FLT_MAX
#endif
#ifndef HUGE_VALF
#define HUGE_VALF (__builtin_huge_valf())
#endif
#ifndef INFINITY
#define INFINITY (__builtin_inff())
#endif
#ifndef NAN
#define NAN (__builtin_nanf(""))
#endif
#define HUGE_VALH (::metal::half::from_bits(0x7c00))
#define MAXHALF (::metal::half::from_bits(0x7bff))
#define HALF_MAX (::metal::half::from_bits(0x7bff))
#define HALF_MIN (::metal::half::from_bits(0x0400))
#define HALF_EPSILON (::metal::half::from_bits(0x1400))
#define HALF_DIG 3
#define HALF_MANT_DIG 11
#define HALF_MAX_10_EXP 4
#define HALF_MAX_EXP 16
#define HALF_MIN_10_EXP -4
#define HALF_MIN_EXP -13
#define HALF_RADIX 2
#define BFLOAT_MAX (::metal::bfloat::from_bits(0x7f7f))
#define BFLOAT_MIN (::metal::bfloat::from_bits(0x0080))
#define BFLOAT_EPSILON (::metal::bfloat::from_bits(0x3c00))

#define MSL_FLOAT_CONSTANT(NAME, VALUE)                                                            \
  static constexpr float NAME##_F = float(VALUE);                                                  \
  static constexpr ::metal::half NAME##_H = ::metal::half(float(VALUE));
namespace metal {
namespace detail {
MSL_FLOAT_CONSTANT(M_E, 2.718281828459045235360287471352662498L)
MSL_FLOAT_CONSTANT(M_LOG2E, 1.442695040888963407359924681001892137L)
MSL_FLOAT_CONSTANT(M_LOG10E, 0.434294481903251827651128918916605082L)
MSL_FLOAT_CONSTANT(M_LN2, 0.693147180559945309417232121458176568L)
MSL_FLOAT_CONSTANT(M_LN10, 2.302585092994045684017991454684364208L)
MSL_FLOAT_CONSTANT(M_PI, 3.141592653589793238462643383279502884L)
MSL_FLOAT_CONSTANT(M_PI_2, 1.570796326794896619231321691639751442L)
MSL_FLOAT_CONSTANT(M_PI_4, 0.785398163397448309615660845819875721L)
MSL_FLOAT_CONSTANT(M_1_PI, 0.318309886183790671537767526745028724L)
MSL_FLOAT_CONSTANT(M_2_PI, 0.636619772367581343075535053490057448L)
MSL_FLOAT_CONSTANT(M_2_SQRTPI, 1.128379167095512573896158903121545172L)
MSL_FLOAT_CONSTANT(M_SQRT2, 1.414213562373095048801688724209698079L)
MSL_FLOAT_CONSTANT(M_SQRT1_2, 0.707106781186547524400844362104849039L)
}  // namespace detail
}  // namespace metal
#undef MSL_FLOAT_CONSTANT
#define M_E_F (::metal::detail::M_E_F)
#define M_LOG2E_F (::metal::detail::M_LOG2E_F)
#define M_LOG10E_F (::metal::detail::M_LOG10E_F)
#define M_LN2_F (::metal::detail::M_LN2_F)
#define M_LN10_F (::metal::detail::M_LN10_F)
#define M_PI_F (::metal::detail::M_PI_F)
#define M_PI_2_F (::metal::detail::M_PI_2_F)
#define M_PI_4_F (::metal::detail::M_PI_4_F)
#define M_1_PI_F (::metal::detail::M_1_PI_F)
#define M_2_PI_F (::metal::detail::M_2_PI_F)
#define M_2_SQRTPI_F (::metal::detail::M_2_SQRTPI_F)
#define M_SQRT2_F (::metal::detail::M_SQRT2_F)
#define M_SQRT1_2_F (::metal::detail::M_SQRT1_2_F)
#define M_E_H (::metal::detail::M_E_H)
#define M_LOG2E_H (::metal::detail::M_LOG2E_H)
#define M_LOG10E_H (::metal::detail::M_LOG10E_H)
#define M_LN2_H (::metal::detail::M_LN2_H)
#define M_LN10_H (::metal::detail::M_LN10_H)
#define M_PI_H (::metal::detail::M_PI_H)
#define M_PI_2_H (::metal::detail::M_PI_2_H)
#define M_PI_4_H (::metal::detail::M_PI_4_H)
#define M_1_PI_H (::metal::detail::M_1_PI_H)
#define M_2_PI_H (::metal::detail::M_2_PI_H)
#define M_2_SQRTPI_H (::metal::detail::M_2_SQRTPI_H)
#define M_SQRT2_H (::metal::detail::M_SQRT2_H)
#define M_SQRT1_2_H (::metal::detail::M_SQRT1_2_H)
