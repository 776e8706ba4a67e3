// MSL scalar types for the CPU execution layer: the integer typedefs MSL names, and the 16-bit
// floating-point classes `half` (IEEE binary16) and `bfloat` (bfloat16).
//
// Semantics (MSL spec, "Scalar data types" and "Type conversions"):
//   * conversions from float/double/integers round to nearest even; overflow gives +-inf, NaN stays NaN
//     (quieted, upper payload bits kept), subnormals are produced and read exactly;
//   * half op half -> half, rounded after every operation.  We compute in float and round once: float's
//     24-bit significand is >= 2*11+2 bits, so for + - * / and sqrt the double rounding float->half gives
//     the correctly rounded half result (Figueroa, "When is double rounding innocuous?", 1995); the same
//     holds for bfloat (8-bit significand);
//   * half op float -> float, half op integer -> half (the integer converted to half first).
//     MSL has no double: a double operand (an unsuffixed literal such as 0.5) is treated as float.
#pragma once

#include <cfloat>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <sys/types.h>  // glibc's `uint`/`ushort`/`ulong`: redeclared identically below (legal in C++)
#include <type_traits>

// MSL scalar type names at global scope (kernels use them without a namespace).
typedef unsigned char uchar;
typedef unsigned short ushort;
typedef unsigned int uint;
typedef unsigned long ulong;  // MSL long/ulong are 64-bit; so is `long` on LP64 Linux and macOS
static_assert(sizeof(long) == 8, "MSL long is 64-bit: LP64 host required");

namespace metal {

using ::uchar;
using ::ushort;
using ::uint;
using ::ulong;
using std::size_t;
using std::ptrdiff_t;

namespace detail {

constexpr uint32_t float_bits(float f) { return __builtin_bit_cast(uint32_t, f); }
constexpr float bits_float(uint32_t u) { return __builtin_bit_cast(float, u); }
constexpr uint64_t double_bits(double d) { return __builtin_bit_cast(uint64_t, d); }

// Round-to-nearest-even of a float to binary16 bits.
constexpr uint16_t float_to_half_bits(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf or NaN
    if (ax == 0x7f800000u) return uint16_t(sign | 0x7c00u);
    return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // quiet NaN, upper payload kept
  }
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // >= 65520 = 65504 + half ulp: ties to inf
  if (ax >= 0x38800000u) {  // normal half range (>= 2^-14)
    const uint32_t e = (ax >> 23) - 112u;  // rebias 127 -> 15
    uint32_t h = (e << 10) | ((ax >> 13) & 0x3ffu);
    const uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1;  // carry may reach the exponent: correct
    return uint16_t(sign | h);
  }
  if (ax <= 0x33000000u) return uint16_t(sign);  // <= 2^-25 (half of the smallest subnormal, tie to 0)
  // Subnormal half: value = k * 2^-24 with k = m * 2^(e-126), m the 24-bit float significand.
  const uint32_t e = ax >> 23;  // 102..112
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - e;  // 14..24
  uint32_t k = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u);
  const uint32_t halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (k & 1u))) k += 1;  // k == 0x400 is the smallest normal: correct
  return uint16_t(sign | k);
}

constexpr float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {  // zero or subnormal: exact in float
    const float v = float(m) * 5.9604644775390625e-08f;  // 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
  return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// Round-to-nearest-even of a float to bfloat16 bits (the top 16 bits of the float).
constexpr uint16_t float_to_bfloat_bits(float f) {
  const uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);  // carry into the exponent gives inf: correct
}

constexpr float bfloat_bits_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }

// double -> float rounded to odd: a later RNE rounding to a format with at most 22 significand bits
// (half: 11, bfloat: 8) then equals direct RNE rounding of the double (Boldo & Melquiond).
constexpr float double_to_float_round_odd(double d) {
  const float f = float(d);
  if (d != d) return f;  // NaN
  uint32_t u = float_bits(f);
  if (double(f) != d && (u & 1u) == 0) {
    const bool away = (d < 0 ? -d : d) > double(f < 0 ? -f : f);
    u = away ? u + 1 : u - 1;
  }
  return bits_float(u);
}

template <class I>
constexpr float int_to_float_round_odd(I i) {
  // Integers above 2^24 are inexact in float but every such value overflows half to inf and,
  // for bfloat, goes through double (exact for |i| < 2^53) then round-to-odd.
  return double_to_float_round_odd(double(i));
}

}  // namespace detail

struct half_bits_tag {};

// Defines a 16-bit floating-point class NAME with conversion functions TO_BITS(float) / FROM_BITS(bits).
#define MSL_DEFINE_FP16_CLASS(NAME, TO_BITS, FROM_BITS)                                                   \
  struct NAME {                                                                                           \
    uint16_t bits_;                                                                                       \
    NAME() = default;                                                                                     \
    constexpr NAME(half_bits_tag, uint16_t b) : bits_(b) {}                                               \
    constexpr NAME(float f) : bits_(detail::TO_BITS(f)) {}                                                \
    constexpr NAME(double d) : bits_(detail::TO_BITS(detail::double_to_float_round_odd(d))) {}           \
    template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>               \
    constexpr NAME(I i) : bits_(detail::TO_BITS(detail::int_to_float_round_odd(i))) {}                    \
    constexpr operator float() const { return detail::FROM_BITS(bits_); }                                 \
    static constexpr NAME from_bits(uint16_t b) { return NAME(half_bits_tag{}, b); }                      \
    template <class X> NAME& operator+=(X x) { return *this = NAME(*this + x); }                          \
    template <class X> NAME& operator-=(X x) { return *this = NAME(*this - x); }                          \
    template <class X> NAME& operator*=(X x) { return *this = NAME(*this * x); }                          \
    template <class X> NAME& operator/=(X x) { return *this = NAME(*this / x); }                          \
    NAME& operator++() { return *this = NAME(float(*this) + 1.0f); }                                      \
    NAME& operator--() { return *this = NAME(float(*this) - 1.0f); }                                      \
    NAME operator++(int) { NAME old = *this; ++*this; return old; }                                       \
    NAME operator--(int) { NAME old = *this; --*this; return old; }                                       \
  };                                                                                                      \
  constexpr NAME operator-(NAME a) { return NAME::from_bits(uint16_t(a.bits_ ^ 0x8000u)); }               \
  constexpr NAME operator+(NAME a) { return a; }

MSL_DEFINE_FP16_CLASS(half, float_to_half_bits, half_bits_to_float)
MSL_DEFINE_FP16_CLASS(bfloat, float_to_bfloat_bits, bfloat_bits_to_float)
#undef MSL_DEFINE_FP16_CLASS

template <class X> struct is_fp16 : std::false_type {};
template <> struct is_fp16<half> : std::true_type {};
template <> struct is_fp16<bfloat> : std::true_type {};

// A scalar in the MSL sense: an arithmetic type or half/bfloat.
template <class X>
struct is_msl_scalar
    : std::integral_constant<bool, std::is_arithmetic<X>::value || is_fp16<X>::value> {};

// half/bfloat binary operators (see the file comment for the result types).
#define MSL_FP16_ARITH(H, OP)                                                                             \
  inline H operator OP(H a, H b) { return H(float(a) OP float(b)); }                                      \
  template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>                 \
  inline H operator OP(H a, I b) { return H(float(a) OP float(H(b))); }                                   \
  template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>                 \
  inline H operator OP(I a, H b) { return H(float(H(a)) OP float(b)); }                                   \
  inline float operator OP(H a, float b) { return float(a) OP b; }                                        \
  inline float operator OP(float a, H b) { return a OP float(b); }                                        \
  inline float operator OP(H a, double b) { return float(a) OP float(b); }                                \
  inline float operator OP(double a, H b) { return float(a) OP float(b); }

#define MSL_FP16_CMP(H, OP)                                                                               \
  inline bool operator OP(H a, H b) { return float(a) OP float(b); }                                      \
  template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>                 \
  inline bool operator OP(H a, I b) { return float(a) OP float(H(b)); }                                   \
  template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>                 \
  inline bool operator OP(I a, H b) { return float(H(a)) OP float(b); }                                   \
  inline bool operator OP(H a, float b) { return float(a) OP b; }                                         \
  inline bool operator OP(float a, H b) { return a OP float(b); }                                         \
  inline bool operator OP(H a, double b) { return float(a) OP float(b); }                                 \
  inline bool operator OP(double a, H b) { return float(a) OP float(b); }

#define MSL_FP16_ALL_OPS(H)                                                                               \
  MSL_FP16_ARITH(H, +) MSL_FP16_ARITH(H, -) MSL_FP16_ARITH(H, *) MSL_FP16_ARITH(H, /)                     \
  MSL_FP16_CMP(H, ==) MSL_FP16_CMP(H, !=) MSL_FP16_CMP(H, <) MSL_FP16_CMP(H, <=) MSL_FP16_CMP(H, >)       \
  MSL_FP16_CMP(H, >=)

MSL_FP16_ALL_OPS(half)
MSL_FP16_ALL_OPS(bfloat)
#undef MSL_FP16_ALL_OPS
#undef MSL_FP16_CMP
#undef MSL_FP16_ARITH

static_assert(sizeof(half) == 2 && alignof(half) == 2, "half is 16-bit");
static_assert(sizeof(bfloat) == 2 && alignof(bfloat) == 2, "bfloat is 16-bit");
static_assert(std::is_trivially_copyable<half>::value && std::is_trivial<half>::value, "half is trivial");
static_assert(std::is_trivially_copyable<bfloat>::value && std::is_trivial<bfloat>::value, "bfloat is trivial");

// metal::numeric_limits: std's for built-in types, and the binary16 / bfloat16 values.
template <class T> struct numeric_limits : std::numeric_limits<T> {};

template <> struct numeric_limits<half> {
  static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = true, has_quiet_NaN = true, is_iec559 = true;
  static constexpr int digits = 11, digits10 = 3, max_digits10 = 5, radix = 2;
  static constexpr int min_exponent = -13, min_exponent10 = -4, max_exponent = 16, max_exponent10 = 4;
  static constexpr half min() { return half::from_bits(0x0400); }          // 2^-14
  static constexpr half max() { return half::from_bits(0x7bff); }          // 65504
  static constexpr half lowest() { return half::from_bits(0xfbff); }
  static constexpr half epsilon() { return half::from_bits(0x1400); }      // 2^-10
  static constexpr half round_error() { return half::from_bits(0x3800); }  // 0.5
  static constexpr half infinity() { return half::from_bits(0x7c00); }
  static constexpr half quiet_NaN() { return half::from_bits(0x7e00); }
  static constexpr half signaling_NaN() { return half::from_bits(0x7d00); }
  static constexpr half denorm_min() { return half::from_bits(0x0001); }   // 2^-24
};

template <> struct numeric_limits<bfloat> {
  static constexpr bool is_specialized = true, is_signed = true, is_integer = false, is_exact = false;
  static constexpr bool has_infinity = true, has_quiet_NaN = true, is_iec559 = false;
  static constexpr int digits = 8, digits10 = 2, max_digits10 = 4, radix = 2;
  static constexpr int min_exponent = -125, min_exponent10 = -37, max_exponent = 128, max_exponent10 = 38;
  static constexpr bfloat min() { return bfloat::from_bits(0x0080); }
  static constexpr bfloat max() { return bfloat::from_bits(0x7f7f); }
  static constexpr bfloat lowest() { return bfloat::from_bits(0xff7f); }
  static constexpr bfloat epsilon() { return bfloat::from_bits(0x3c00); }  // 2^-7
  static constexpr bfloat round_error() { return bfloat::from_bits(0x3f00); }
  static constexpr bfloat infinity() { return bfloat::from_bits(0x7f80); }
  static constexpr bfloat quiet_NaN() { return bfloat::from_bits(0x7fc0); }
  static constexpr bfloat signaling_NaN() { return bfloat::from_bits(0x7fa0); }
  static constexpr bfloat denorm_min() { return bfloat::from_bits(0x0001); }
};

}  // namespace metal

using metal::bfloat;
using metal::half;
