// Name resolution of the MSL library of the CPU execution layer next to the C/C++ standard library.
//
// Kernels call metal functions unqualified at global scope after `using namespace metal;`. libc++'s
// <math.h> declares generic templates at global scope (`template <class A1> bool isfinite(A1)`), which
// made `isfinite(float)` ambiguous with Apple's and LLVM's libc++ (GCC's libstdc++ does not declare
// them). tests/test_build_clang_libcxx.py compiles this file with libstdc++ and libc++:
//   * as a kernel TU sees it (<metal_stdlib> only): every call below must resolve to metal's function,
//     with MSL's result type (float, not the double of a C++ promotion);
//   * with -DMSL_NAMES_WITH_MATH_H (<cmath> and <atomic> included first, as a kernel TU would see
//     them if some header pulled <math.h> in): every same-type call must still be unambiguous.
// It returns 0 if every value check passes.
#ifdef MSL_NAMES_WITH_MATH_H
#include <atomic>
#include <cmath>
#include <cstdlib>
#endif
#include <metal_stdlib>

#include <cstdio>
#include <type_traits>

using namespace metal;

static int failures = 0;
#define CHECK(cond)                                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::printf("FAIL line %d: %s\n", __LINE__, #cond);                                \
      ++failures;                                                                        \
    }                                                                                    \
  } while (0)
#define SAME(expr, T) static_assert(std::is_same<decltype(expr), T>::value, #expr " is not " #T)

// Every unqualified call the kernels may make, on float, half, bfloat, vectors, swizzles.
template <class F, class V>
static void unary_names(F x, V v) {
#define U(NAME)                  \
  SAME(NAME(x), F);              \
  SAME(NAME(v), V);              \
  SAME(NAME(v.xy), decltype(v.xy + v.xy)); \
  (void)NAME(x); (void)NAME(v);
  U(acos) U(acosh) U(asin) U(asinh) U(atan) U(atanh) U(ceil) U(cos) U(cosh) U(exp) U(exp2) U(exp10)
  U(fabs) U(floor) U(log) U(log2) U(log10) U(rint) U(round) U(rsqrt) U(sin) U(sinh) U(sqrt) U(tan)
  U(tanh) U(trunc) U(cospi) U(sinpi) U(tanpi) U(saturate) U(sign) U(fract) U(abs)
#undef U
#define B(NAME)                  \
  SAME(NAME(x, x), F);           \
  SAME(NAME(v, v), V);           \
  SAME(NAME(v, x), V);           \
  (void)NAME(x, x);
  B(atan2) B(copysign) B(fdim) B(fmod) B(pow) B(powr) B(nextafter) B(divide) B(step) B(fmin) B(fmax)
  B(min) B(max)
#undef B
#define T3(NAME)                 \
  SAME(NAME(x, x, x), F);        \
  SAME(NAME(v, x, v), V);        \
  (void)NAME(x, x, x);
  T3(fma) T3(mad) T3(mix) T3(smoothstep) T3(fmin3) T3(fmax3) T3(fmedian3) T3(clamp) T3(min3) T3(max3)
  T3(median3)
#undef T3
#define P(NAME)                  \
  SAME(NAME(x), bool);           \
  SAME(NAME(v), decltype(v == v)); \
  (void)NAME(x);
  P(isnan) P(isinf) P(isfinite) P(isnormal) P(signbit)
#undef P
  SAME(isunordered(x, x), bool);
  SAME(isordered(x, x), bool);
  F c;
  SAME(sincos(x, c), F);
  int e;
  SAME(frexp(x, e), F);
  SAME(ldexp(x, 3), F);
  F ip;
  SAME(modf(x, ip), F);
  SAME(precise::log(x), F);
  SAME(fast::exp(x), F);
  SAME(precise::fma(x, x, x), F);
}

// The predicates and the functions the sampling kernels use, on values.
static void float_values() {
  const float inf = INFINITY, nan = NAN, one = 1.0f, minus_zero = -0.0f;
  CHECK(isnan(nan) && !isnan(inf) && !isnan(one));
  CHECK(isinf(inf) && isinf(-inf) && !isinf(nan) && !isinf(one));
  CHECK(isfinite(one) && !isfinite(inf) && !isfinite(-inf) && !isfinite(nan));
  CHECK(signbit(minus_zero) && signbit(-inf) && !signbit(one));
  CHECK(isunordered(nan, one) && !isunordered(one, one) && isordered(one, inf));
  CHECK(max(-inf, one) == one && min(inf, one) == one && fmax(nan, one) == one && fmin(one, nan) == one);
  CHECK(clamp(5.0f, 0.0f, 1.0f) == 1.0f && abs(-2.0f) == 2.0f && fma(2.0f, 3.0f, 1.0f) == 7.0f);
  CHECK(exp(-inf) == 0.0f && precise::log(0.0f) == -inf && -precise::log(1.0f) == 0.0f);
  const half h = half(2.0f);
  CHECK(!isnan(h) && isfinite(h) && isinf(HUGE_VALH) && float(max(h, half(3.0f))) == 3.0f);
  const float4 v = float4(nan, inf, -1.0f, 0.0f);
  CHECK(all(isnan(v) == bool4(true, false, false, false)));
  CHECK(all(isfinite(v) == bool4(false, false, true, true)));
  CHECK(any(isinf(v.yz)) && !all(isinf(v.yz)));
}

#ifndef MSL_NAMES_WITH_MATH_H
// Mixed and integer arguments: MSL converts integer (and, MSL having no double, double) scalars to
// float. Only meaningful without <math.h>: libc++'s global templates tie with these (documented).
static void mixed_arguments(float x, float4 v) {
  SAME(fma(x, 2, x), float);
  SAME(pow(x, 2), float);
  SAME(pow(x, 2.0), float);
  SAME(fmax(x, 0.0), float);
  SAME(max(x, 0.0), float);
  SAME(min(x, 1), float);
  SAME(clamp(x, 0, 1), float);
  SAME(isfinite(1.0), bool);
  SAME(sqrt(4), float);
  SAME(abs(-3), int);
  SAME(min(3u, 4u), uint);
  SAME(max(v, 0.0f), float4);
  CHECK(pow(x, 2) == x * x);
  CHECK(sqrt(4) == 2.0f);
}
#endif

int main() {
  unary_names(1.5f, float4(1.0f, 2.0f, 3.0f, 4.0f));
  unary_names(half(1.5f), half4(1.0f));
  unary_names(bfloat(1.5f), bfloat4(1.0f, 2.0f, 3.0f, 4.0f));
  float_values();
#ifndef MSL_NAMES_WITH_MATH_H
  mixed_arguments(3.0f, float4(1.0f));
#endif
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
