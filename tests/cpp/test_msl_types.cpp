// Unit test of the MSL type and math library of the CPU execution layer (metal/source/cpu/msl).
//
// Run by tests/test_msl_types_cpp.py, which builds it with -I metal/source/cpu/msl and runs
//   test_msl_types OUTDIR
// The program does two things:
//   * self-checks (CHECK): constructors, conversion rules, swizzles, operators, layout, as_type,
//     select, integer/geometric functions...; each failure prints a "FAIL file:line: expr" line and the
//     last line is "cpp checks: N passed, M failed";
//   * data dumps for NumPy comparison: for each case it writes OUTDIR/NAME.in*.bin (inputs, generated
//     here from a fixed seed) and OUTDIR/NAME.out.bin (our results) and prints "CASE NAME" lines;
//     the pytest computes the expected values from the inputs with NumPy.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "msl_math.h"
#include "msl_types.h"

using namespace metal;

// ---------------------------------------------------------------- tiny assert harness
static int g_passed = 0, g_failed = 0;
static void check(bool ok, const char* expr, const char* file, int line) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s:%d: %s\n", file, line, expr);
  }
}
#define CHECK(...) check(static_cast<bool>(__VA_ARGS__), #__VA_ARGS__, __FILE__, __LINE__)

static uint32_t fbits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
static bool same_float(float a, float b) { return fbits(a) == fbits(b) || (a != a && b != b); }
template <class T> static double as_double(T x) {
  if constexpr (is_fp16<T>::value) return double(float(x)); else return double(x);
}
template <class V> static bool veq(const V& v, std::initializer_list<double> want) {
  int k = 0;
  for (double w : want) {
    if (!(as_double(v[k]) == w)) return false;
    ++k;
  }
  return k == V::count;
}

// ---------------------------------------------------------------- deterministic inputs
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64() {  // xorshift64*
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return g_rng * 0x2545F4914F6CDD1Dull;
}
static uint32_t next_u32() { return uint32_t(next_u64() >> 32); }
static float uniform(float lo, float hi) { return lo + (hi - lo) * float(next_u32() >> 8) * (1.0f / 16777216.0f); }

static std::string g_outdir;
template <class T> static void write_bin(const std::string& name, const std::vector<T>& v) {
  const std::string path = g_outdir + "/" + name + ".bin";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) { std::printf("FAIL cannot write %s\n", path.c_str()); ++g_failed; return; }
  std::fwrite(v.data(), sizeof(T), v.size(), f);
  std::fclose(f);
}

// ---------------------------------------------------------------- layout and type rules
static void test_layout_and_typedefs() {
  static_assert(std::is_same<uint, unsigned int>::value && std::is_same<ushort, unsigned short>::value, "");
  static_assert(std::is_same<uchar, unsigned char>::value && std::is_same<ulong, unsigned long>::value, "");
  static_assert(sizeof(ulong) == 8 && sizeof(long) == 8, "");
  static_assert(std::is_same<float4, vec<float, 4>>::value && std::is_same<metal::half2, ::half2>::value, "");
#define LAYOUT(T, NAME)                                                                               \
  static_assert(sizeof(NAME##2) == 2 * sizeof(T) && alignof(NAME##2) == 2 * sizeof(T), #NAME "2");   \
  static_assert(sizeof(NAME##3) == 4 * sizeof(T) && alignof(NAME##3) == 4 * sizeof(T), #NAME "3");   \
  static_assert(sizeof(NAME##4) == 4 * sizeof(T) && alignof(NAME##4) == 4 * sizeof(T), #NAME "4");   \
  static_assert(sizeof(packed_##NAME##2) == 2 * sizeof(T) && alignof(packed_##NAME##2) == alignof(T), ""); \
  static_assert(sizeof(packed_##NAME##3) == 3 * sizeof(T) && alignof(packed_##NAME##3) == alignof(T), ""); \
  static_assert(sizeof(packed_##NAME##4) == 4 * sizeof(T) && alignof(packed_##NAME##4) == alignof(T), ""); \
  static_assert(std::is_trivially_copy_constructible<NAME##4>::value, "");                          \
  static_assert(std::is_trivially_destructible<NAME##3>::value, "");                                 \
  static_assert(std::is_standard_layout<NAME##4>::value, "");
  LAYOUT(float, float) LAYOUT(half, half) LAYOUT(bfloat, bfloat) LAYOUT(int, int) LAYOUT(uint, uint)
  LAYOUT(short, short) LAYOUT(ushort, ushort) LAYOUT(char, char) LAYOUT(uchar, uchar) LAYOUT(bool, bool)
  LAYOUT(long, long) LAYOUT(ulong, ulong)
#undef LAYOUT
  CHECK(sizeof(float3) == 16);
  CHECK(sizeof(packed_float3) == 12);
  float3 arr[2];
  CHECK(reinterpret_cast<char*>(&arr[1]) - reinterpret_cast<char*>(&arr[0]) == 16);

  // Conversion rules (MSL "Type conversions"): scalar -> vector implicit; between vector element
  // types explicit only; packed <-> unpacked implicit; no size changes.
  static_assert(std::is_convertible<float, float4>::value, "splat is implicit");
  static_assert(std::is_convertible<int, float4>::value, "splat of an int literal");
  static_assert(std::is_convertible<float, half4>::value, "splat converts the scalar");
  static_assert(!std::is_convertible<half4, float4>::value, "vector conversions are explicit");
  static_assert(std::is_constructible<float4, half4>::value, "float4(half4)");
  static_assert(std::is_constructible<int4, float4>::value, "int4(float4)");
  static_assert(!std::is_convertible<int4, uint4>::value, "int4 -> uint4 is explicit");
  static_assert(!std::is_constructible<float4, float3>::value, "no size change");
  static_assert(!std::is_constructible<float2, float4>::value, "no truncation");
  static_assert(std::is_convertible<packed_float3, float3>::value, "packed -> vec");
  static_assert(std::is_convertible<float3, packed_float3>::value, "vec -> packed");
  static_assert(std::is_convertible<half, float>::value && std::is_convertible<float, half>::value, "");
  static_assert(std::is_convertible<bfloat, float>::value && std::is_convertible<int, half>::value, "");

  // Result types.
  half h = 1.0f;
  bfloat b = 1.0f;
  static_assert(std::is_same<decltype(h + h), half>::value, "half op half -> half");
  static_assert(std::is_same<decltype(h * 2), half>::value, "half op int -> half");
  static_assert(std::is_same<decltype(h * 2.0f), float>::value, "half op float -> float");
  static_assert(std::is_same<decltype(2.0f - h), float>::value, "float op half -> float");
  static_assert(std::is_same<decltype(b / b), bfloat>::value, "bfloat op bfloat -> bfloat");
  static_assert(std::is_same<decltype(float4() + float4()), float4>::value, "");
  static_assert(std::is_same<decltype(float4() < 1.0f), bool4>::value, "comparisons give boolN");
  static_assert(std::is_same<decltype(half4() * 2.0f), half4>::value, "scalar converts to the element type");
  static_assert(std::is_same<decltype(uint4() >> 3), uint4>::value, "");
  static_assert(std::is_same<decltype(float4().xy + float4().zw), float2>::value, "swizzle arithmetic");
  static_assert(std::is_same<decltype(metal::fma(float4(), 1.0f, float4())), float4>::value, "fma mixes");
  static_assert(std::is_same<decltype(metal::dot(half3(), half3())), half>::value, "");
  static_assert(std::is_same<vector_of<decltype(float4().zyx)>, float3>::value, "");
  (void)h; (void)b;
}

// ---------------------------------------------------------------- constructors, swizzles, operators
static void test_constructors() {
  CHECK(veq(float4(1.5f), {1.5, 1.5, 1.5, 1.5}));
  float4 z = 0.0f;
  CHECK(veq(z, {0, 0, 0, 0}));
  float4 zi = 0;
  CHECK(veq(zi, {0, 0, 0, 0}));
  CHECK(veq(float4(float2(1, 2), float2(3, 4)), {1, 2, 3, 4}));
  CHECK(veq(float4(1, float3(2, 3, 4)), {1, 2, 3, 4}));
  CHECK(veq(float4(float3(1, 2, 3), 4), {1, 2, 3, 4}));
  CHECK(veq(float4(1, float2(2, 3), 4), {1, 2, 3, 4}));
  CHECK(veq(float4(float2(1, 2), 3, 4), {1, 2, 3, 4}));
  CHECK(veq(float4(1, 2, float2(3, 4)), {1, 2, 3, 4}));
  CHECK(veq(float3(float2(1, 2), 3), {1, 2, 3}));
  CHECK(veq(float3(1, float2(2, 3)), {1, 2, 3}));
  CHECK(veq(half4(1.0f, 2, 3.0, half(4)), {1, 2, 3, 4}));
  float4 lit = {1.0f, 2.0f, 3.0f, 4.0f};
  CHECK(veq(lit, {1, 2, 3, 4}));
  float4 v(1, 2, 3, 4);
  CHECK(veq(float4(v.xy, v.zw), {1, 2, 3, 4}));
  CHECK(veq(float4(v.wz, 0.5f, v.x), {4, 3, 0.5, 1}));
  // Explicit element conversions.
  CHECK(veq(float4(half4(1.5f, -2.0f, 65504.0f, 0.25f)), {1.5, -2, 65504, 0.25}));
  CHECK(veq(half2(float2(1.0f + 1.0f / 4096, 70000.0f)), {1, INFINITY}));  // RNE, overflow to inf
  CHECK(veq(int4(float4(1.9f, -1.9f, 3e9f, -3e9f)), {1, -1, 2147483647.0, -2147483648.0}));
  CHECK(int2(float2(NAN, 0.0f)).x == 0);
  CHECK(veq(uint2(int2(-1, 5)), {4294967295.0, 5}));
  CHECK(veq(uchar4(uint4(255, 256, 257, 1)), {255, 0, 1, 1}));
  CHECK(all(bool4(int4(0, 1, -1, 2)) == bool4(false, true, true, true)));
  CHECK(veq(float2(bfloat2(bfloat(1.0f), bfloat(3.0f))), {1, 3}));
  // packed <-> unpacked.
  packed_float3 p = float3(1, 2, 3);
  float3 q = p;
  CHECK(veq(q, {1, 2, 3}));
  CHECK(p.x == 1 && p.z == 3 && p[1] == 2);
  float3 pz = p.zyx;  // packed swizzles read through the packed layout
  CHECK(veq(pz, {3, 2, 1}));
  float3 ps = p + float3(1, 1, 1);
  CHECK(veq(ps, {2, 3, 4}));
  // Value-initialized vectors are zero.
  float4 vz{};
  CHECK(veq(vz, {0, 0, 0, 0}));
}

static void test_swizzles() {
  float4 v(1, 2, 3, 4);
  CHECK(v.x == 1 && v.y == 2 && v.z == 3 && v.w == 4);
  CHECK(v.r == 1 && v.g == 2 && v.b == 3 && v.a == 4);
  CHECK(veq(float4(v.wzyx), {4, 3, 2, 1}));
  CHECK(veq(float4(v.xxyy), {1, 1, 2, 2}));
  CHECK(veq(float4(v.abgr), {4, 3, 2, 1}));
  CHECK(veq(float3(v.zxw), {3, 1, 4}));
  CHECK(veq(float2(v.ww), {4, 4}));
  float2 two(5, 6);
  CHECK(veq(float4(two.yxyx), {6, 5, 6, 5}));
  CHECK(veq(float3(two.xxy), {5, 5, 6}));
  float3 t(7, 8, 9);
  CHECK(veq(float4(t.zzyx), {9, 9, 8, 7}));
  CHECK(v.zw[1] == 4);
  // Writes.
  v.xy = float2(10, 20);
  CHECK(veq(v, {10, 20, 3, 4}));
  v.zw += float2(1, 2);
  CHECK(veq(v, {10, 20, 4, 6}));
  v.yx = v.xy;  // reads before writing
  CHECK(veq(v, {20, 10, 4, 6}));
  v.xz = float2(-1, -2);
  CHECK(veq(v, {-1, 10, -2, 6}));
  v.wzyx = v;
  CHECK(veq(v, {6, -2, 10, -1}));
  v.yz = 0.5f;  // scalar splat
  CHECK(veq(v, {6, 0.5, 0.5, -1}));
  float4 w(1, 2, 3, 4);
  v.xy = w.xy;  // same swizzle type on both sides copies values
  CHECK(veq(v, {1, 2, 0.5, -1}));
  v.rgb = w.bgr;
  CHECK(veq(v, {3, 2, 1, -1}));
  v.w *= 3.0f;
  CHECK(v.w == -3);
  v[2] = 42;
  CHECK(v.z == 42 && v[2] == 42);
  uint4 u(0xF0, 0x0F, 0, 0);
  u.xy &= 0x3Cu;
  u.zw |= uint2(1, 2);
  CHECK(veq(u, {0x30, 0x0C, 1, 2}));
  u.xy <<= 1;
  CHECK(veq(u, {0x60, 0x18, 1, 2}));
  static_assert(!std::is_assignable<decltype((v.xx)), float2>::value, "repeated swizzles are read-only");
  static_assert(std::is_assignable<decltype((v.xy)), float2>::value, "");
  static_assert(!std::is_assignable<decltype((v.xy)), half2>::value || true, "checked by static_assert inside");
  half4 hv(1.0f, 2.0f, 3.0f, 4.0f);
  hv.xy = hv.zw;
  CHECK(veq(hv, {3, 4, 3, 4}));
}

static void test_operators() {
  float4 a(1, 2, 3, 4), b(4, 3, 2, 1);
  CHECK(veq(a + b, {5, 5, 5, 5}));
  CHECK(veq(a - b, {-3, -1, 1, 3}));
  CHECK(veq(a * b, {4, 6, 6, 4}));
  CHECK(veq(a / 2, {0.5, 1, 1.5, 2}));
  CHECK(veq(2.0f * a, {2, 4, 6, 8}));
  CHECK(veq(1 - a, {0, -1, -2, -3}));
  CHECK(veq(-a, {-1, -2, -3, -4}));
  CHECK(fbits((-float2(0.0f, 1.0f)).x) == 0x80000000u);  // -0.0
  CHECK(all((a < b) == bool4(true, true, false, false)));
  CHECK(all((a == 2.0f) == bool4(false, true, false, false)));
  CHECK(any(a >= 4.0f) && !any(a > 4.0f) && all(a != 0.0f));
  CHECK(all((!(a > 2.0f)) == bool4(true, true, false, false)));
  CHECK(all(((a > 1.0f) && (a < 4.0f)) == bool4(false, true, true, false)));
  float4 c = a;
  c += b;
  c *= 2;
  c -= 1.0f;
  c /= float4(1, 3, 9, 1);
  CHECK(veq(c, {9, 3, 1, 9}));
  ++c;
  CHECK(veq(c, {10, 4, 2, 10}));
  // Integer vectors: wrap-around, shifts masked to the element width, division by zero gives 0.
  int4 i(2147483647, -2147483647 - 1, 7, -7);
  CHECK(veq(i + 1, {-2147483648.0, -2147483647, 8, -6}));
  CHECK(veq(i * 2, {-2, 0, 14, -14}));
  CHECK(veq(-i, {-2147483647, -2147483648.0, -7, 7}));
  CHECK(veq(int4(7, -7, 7, -2147483647 - 1) / int4(2, 2, 0, -1), {3, -3, 0, -2147483648.0}));
  CHECK(veq(int4(7, -7, 7, 5) % int4(2, 2, 0, -1), {1, -1, 0, 0}));
  uint4 u(1, 0x80000000u, 0xFFFFFFFFu, 3);
  CHECK(veq(u << 1, {2, 0, 4294967294.0, 6}));
  CHECK(veq(u << uint4(33, 0, 4, 31), {2, 2147483648.0, 4294967280.0, 2147483648.0}));
  CHECK(veq(u >> 31, {0, 1, 1, 0}));
  CHECK(veq(int2(-8, 8) >> 1, {-4, 4}));
  CHECK(veq(~uint2(0, 0xFFFF0000u), {4294967295.0, 65535}));
  CHECK(veq(uint4(0x1E1E1E1Eu) & 0x0F0F0F0Fu, {0x0E0E0E0E, 0x0E0E0E0E, 0x0E0E0E0E, 0x0E0E0E0E}));
  CHECK(veq(uchar4(250, 5, 128, 0) + uchar(10), {4, 15, 138, 10}));
  CHECK(veq(ushort2(65535, 2) * ushort(65535), {1, 65534}));
  CHECK(veq(short2(32767, -32768) + short(1), {-32768, -32767}));
  CHECK(veq(char2(char(100), char(-100)) + char(100), {-56, 0}));
  CHECK(veq(long2(1L << 62, -1) * 4L, {0, -4}));
  CHECK(veq(ulong2(~0ul, 1) + 1ul, {0, 2}));
  // half vectors: rounded per operation.
  half2 h(1.0f, 2048.0f);
  CHECK(veq(h + half(1.0f / 2048), {1, 2048}));  // 1 + 2^-11 ties to 1; 2048 + tiny -> 2048
  CHECK(veq(h * half(3.0f), {3, 6144}));
  bool2 bb(true, false);
  CHECK(all((bb ^ true) == bool2(false, true)));
}

// ---------------------------------------------------------------- half / bfloat scalars
static void test_half_scalars() {
  CHECK(half(65504.0f).bits_ == 0x7bff);
  CHECK(half(65519.0f).bits_ == 0x7bff);
  CHECK(half(65520.0f).bits_ == 0x7c00);
  CHECK(half(-1e10f).bits_ == 0xfc00);
  CHECK(half(5.9604644775390625e-08f).bits_ == 0x0001);  // 2^-24
  CHECK(half(2.98023223876953125e-08f).bits_ == 0x0000);  // 2^-25 ties to even (0)
  CHECK(half(4.4703483581542969e-08f).bits_ == 0x0001);   // 1.5 * 2^-25 rounds up
  CHECK(half(8.940696716308594e-08f).bits_ == 0x0002);    // 1.5 * 2^-24 ties to even (2)
  CHECK(half(-0.0f).bits_ == 0x8000);
  CHECK(half(NAN).bits_ == 0x7e00);
  CHECK(float(half::from_bits(0x7c00)) == INFINITY);
  CHECK(float(half::from_bits(0x0001)) == 5.9604644775390625e-08f);
  CHECK(float(half(0.1f)) == 0.0999755859375f);
  CHECK(half(70000).bits_ == 0x7c00);
  CHECK(half(-3).bits_ == 0xc200);
  CHECK(half(2049).bits_ == half(2048.0f).bits_);  // 2049 ties to even
  CHECK(half(2051).bits_ == half(2052.0f).bits_);
  CHECK(half(1.0 + 1.0 / 2048 + 1e-12).bits_ == 0x3c01);  // double: no double rounding through float
  half h = 1.5f;
  h += 1;
  CHECK(float(h) == 2.5f);
  h *= 2.0f;
  CHECK(float(h) == 5.0f);
  h++;
  CHECK(float(h) == 6.0f);
  CHECK(float(-h) == -6.0f && (-half(0.0f)).bits_ == 0x8000);
  CHECK(h > 5.5f && h == 6 && h != half(7.0f) && half(1.0f) < h && h >= 6.0);
  int as_int = h;
  CHECK(as_int == 6);
  CHECK(static_cast<uint>(half(3.75f)) == 3u);
  CHECK(float(half(1.0f) / half(3.0f)) == float(half(1.0f / 3.0f)));
  CHECK(isnan(half(NAN)) && isinf(half(INFINITY)) && !isfinite(half(INFINITY)) && signbit(half(-0.0f)));
  CHECK(isnan(float(half(NAN) + half(1.0f))));
  // bfloat
  CHECK(bfloat(1.0f).bits_ == 0x3f80);
  CHECK(bfloat(bitsf(0x3f808000u)).bits_ == 0x3f80);  // tie to even
  CHECK(bfloat(bitsf(0x3f818000u)).bits_ == 0x3f82);  // tie to even (up)
  CHECK(bfloat(bitsf(0x3f808001u)).bits_ == 0x3f81);
  CHECK(bfloat(bitsf(0x7f7fffffu)).bits_ == 0x7f80);  // FLT_MAX rounds to inf
  CHECK(bfloat(NAN).bits_ == 0x7fc0);
  CHECK(bfloat(bitsf(0xff800001u)) != bfloat(0.0f) && isnan(bfloat(bitsf(0xff800001u))));  // sNaN stays NaN
  CHECK(bfloat(bitsf(0x00008000u)).bits_ == 0x0000 && bfloat(bitsf(0x00018000u)).bits_ == 0x0002);
  CHECK(float(bfloat(3)) == 3.0f && float(bfloat(257)) == 256.0f && float(bfloat(259)) == 260.0f);
  CHECK(float(numeric_limits<half>::max()) == 65504.0f && float(numeric_limits<half>::epsilon()) == 0x1p-10f);
  CHECK(float(numeric_limits<half>::infinity()) == INFINITY && float(HALF_MAX) == 65504.0f);
  CHECK(float(numeric_limits<bfloat>::max()) == bitsf(0x7f7f0000u));
  CHECK(numeric_limits<float>::max() == FLT_MAX && numeric_limits<uint>::max() == 0xFFFFFFFFu);
  constexpr half ch = 0.5f;
  static_assert(ch.bits_ == 0x3800, "constexpr half");
}

// ---------------------------------------------------------------- as_type, select, relational
static void test_as_type_select() {
  CHECK(as_type<uint>(1.0f) == 0x3f800000u);
  CHECK(as_type<float>(0x40000000u) == 2.0f);
  const half2 hh = as_type<half2>(0x3c004000u);  // little endian: x = 0x4000 (2.0), y = 0x3c00 (1.0)
  CHECK(float(hh.x) == 2.0f && float(hh.y) == 1.0f);
  CHECK(as_type<uint>(half2(half(1.0f), half(2.0f))) == 0x40003c00u);
  uint4 w(0x3c003c00u, 0x40004000u, 0, 0);
  const float4 f = float4(as_type<half4>(w.xy));  // as the MoE kernels do
  CHECK(veq(f, {1, 1, 2, 2}));
  CHECK(as_type<ushort>(bfloat(1.0f)) == 0x3f80);
  CHECK(as_type<float>(static_cast<uint>(uchar(127)) << 23) == 1.0f);
  CHECK(all(as_type<int2>(float2(-0.0f, 1.0f)) == int2(int(0x80000000u), 0x3f800000)));
  CHECK(select(1.0f, 2.0f, true) == 2.0f && select(1.0f, 2.0f, false) == 1.0f);
  CHECK(veq(select(float4(1, 2, 3, 4), float4(5, 6, 7, 8), bool4(true, false, true, false)), {5, 2, 7, 4}));
  CHECK(veq(select(int2(1, 2), 0, bool2(false, true)), {1, 0}));
  CHECK(all(isnan(float4(NAN, 0, INFINITY, -NAN)) == bool4(true, false, false, true)));
  CHECK(all(isinf(float2(-INFINITY, 1)) == bool2(true, false)));
  CHECK(all(isfinite(half2(half(1.0f), half(INFINITY))) == bool2(true, false)));
  CHECK(all(signbit(float2(-0.0f, 0.0f)) == bool2(true, false)));
  CHECK(isnormal(1.0f) && !isnormal(1e-40f) && !isnormal(half(1e-6f)) && isnormal(half(1e-4f)));
  CHECK(isunordered(NAN, 1.0f) && isordered(1.0f, 2.0f));
  CHECK(all(bool2(true, true)) && !all(bool2(true, false)) && any(bool3(false, false, true)) && !any(bool4(false)));
}

// ---------------------------------------------------------------- integer, common, geometric math
static void test_math_functions() {
  CHECK(clz(1u) == 31 && clz(0u) == 32 && clz(uchar(1)) == 7 && clz(int(-1)) == 0 && clz(ushort(0)) == 16);
  CHECK(ctz(8u) == 3 && ctz(0u) == 32 && ctz(ulong(1) << 40) == 40);
  CHECK(popcount(0xF0F0u) == 8 && popcount(-1) == 32 && veq(popcount(uint2(3, 7)), {2, 3}));
  CHECK(reverse_bits(1u) == 0x80000000u && reverse_bits(uchar(0x0F)) == 0xF0);
  CHECK(rotate(0x80000001u, 1u) == 0x00000003u && rotate(uchar(0x81), uchar(4)) == 0x18 && rotate(5u, 32u) == 5u);
  CHECK(extract_bits(0xABCDu, 4, 8) == 0xBCu && extract_bits(int(0xF0), 4, 4) == -1 && extract_bits(5u, 0, 0) == 0u);
  CHECK(insert_bits(0xFFFFu, 0u, 4, 8) == 0xF00Fu && insert_bits(0u, 0xFFu, 28, 8) == 0xF0000000u);
  CHECK(mulhi(0x80000000u, 4u) == 2u && mulhi(-2, 0x40000000) == -1 && mulhi(ulong(1) << 63, 4ul) == 2ul);
  CHECK(addsat(250, 10) == 260 && addsat(uchar(250), uchar(10)) == 255 && addsat(2147483647, 1) == 2147483647);
  CHECK(subsat(3u, 5u) == 0u && subsat(-2147483647 - 1, 1) == -2147483647 - 1 && subsat(ulong(3), ulong(5)) == 0);
  CHECK(addsat(long(9223372036854775807L), 1L) == 9223372036854775807L);
  CHECK(hadd(0xFFFFFFFFu, 1u) == 0x80000000u && rhadd(1u, 2u) == 2u && hadd(-1, -2) == -2);
  CHECK(madsat(uchar(16), uchar(16), uchar(0)) == 255 && madhi(0x80000000u, 4u, 1u) == 3u && mad24(3, 4, 5) == 17);
  CHECK(absdiff(-5, 7) == 12 && absdiff(3u, 10u) == 7u);
  CHECK(abs(-3) == 3 && abs(-2147483647 - 1) == -2147483647 - 1 && veq(abs(int2(-1, 2)), {1, 2}));
  CHECK(min(3u, 5u) == 3u && max(-3, 5) == 5 && clamp(7, 0, 5) == 5 && veq(clamp(int3(-1, 3, 9), 0, 5), {0, 3, 5}));
  CHECK(min3(3, 1, 2) == 1 && max3(3.0f, 1.0f, 2.0f) == 3.0f && median3(3, 1, 2) == 2 && fmedian3(5.0f, NAN, 1.0f) == 5.0f);
  // Floating min/max ignore a NaN argument (IEEE minNum/maxNum, MSL precise).
  CHECK(fmax(NAN, 1.0f) == 1.0f && fmin(2.0f, NAN) == 2.0f && max(NAN, 3.0f) == 3.0f && min(1.0f, 2.0f) == 1.0f);
  CHECK(isnan(fmax(NAN, NAN)) && fbits(fmin(0.0f, -0.0f)) == 0x80000000u && fbits(fmax(-0.0f, 0.0f)) == 0u);
  CHECK(clamp(5.0f, 0.0f, 1.0f) == 1.0f && clamp(-5.0f, 0, 1) == 0.0f && clamp(NAN, 0.0f, 1.0f) == 0.0f);
  CHECK(veq(clamp(float4(-7, 0.5f, 3, 8), -1.0f, 2.0f), {-1, 0.5, 2, 2}));
  CHECK(saturate(1.5f) == 1.0f && saturate(-0.5f) == 0.0f && saturate(NAN) == 0.0f && float(saturate(half(0.25f))) == 0.25f);
  CHECK(mix(1.0f, 3.0f, 0.5f) == 2.0f && veq(mix(float2(0, 10), float2(10, 20), 0.25f), {2.5, 12.5}));
  CHECK(step(1.0f, 0.5f) == 0.0f && step(1.0f, 1.0f) == 1.0f && veq(step(0.5f, float2(0, 1)), {0, 1}));
  CHECK(smoothstep(0.0f, 1.0f, 0.5f) == 0.5f && smoothstep(0.0f, 1.0f, 2.0f) == 1.0f && smoothstep(0.0f, 1.0f, -1.0f) == 0.0f);
  CHECK(sign(-3.0f) == -1.0f && sign(2.0f) == 1.0f && fbits(sign(-0.0f)) == 0x80000000u && sign(NAN) == 0.0f);
  CHECK(fract(1.25f) == 0.25f && fract(-0.25f) == 0.75f && fract(-1e-30f) == 0x1.fffffep-1f && isnan(fract(NAN)));
  CHECK(float(fract(half(-1e-4f))) == float(half::from_bits(0x3bff)));
  CHECK(fmod(7.0f, 3.0f) == 1.0f && fmod(-7.0f, 3.0f) == -1.0f && copysign(2.0f, -0.0f) == -2.0f);
  CHECK(round(2.5f) == 3.0f && round(-2.5f) == -3.0f && rint(2.5f) == 2.0f && rint(3.5f) == 4.0f && trunc(-1.7f) == -1.0f);
  CHECK(floor(-1.5f) == -2.0f && ceil(-1.5f) == -1.0f && float(floor(half(2.75f))) == 2.0f);
  int e = 0;
  CHECK(frexp(8.0f, e) == 0.5f && e == 4);
  int2 e2;
  CHECK(veq(frexp(float2(3, 0.25f), e2), {0.75, 0.5}) && e2.x == 2 && e2.y == -1);
  CHECK(ldexp(0.75f, 2) == 3.0f && veq(ldexp(float2(1, 1), int2(-1, 3)), {0.5, 8}) && float(ldexp(half(1.0f), -24)) == 0x1p-24f);
  float ip = 0;
  CHECK(modf(-2.75f, ip) == -0.75f && ip == -2.0f);
  float2 cs;
  const float2 sn = sincos(float2(0.0f, 0.5f), cs);
  CHECK(sn.x == 0.0f && cs.x == 1.0f && same_float(sn.y, std::sin(0.5f)) && same_float(cs.y, std::cos(0.5f)));
  CHECK(fma(2.0f, 3.0f, 1.0f) == 7.0f && mad(2.0f, 3.0f, 1.0f) == 7.0f && divide(1.0f, 4.0f) == 0.25f);
  // fma is fused: (1 + 2^-12)^2 - 1 keeps the 2^-24 term.
  const float a = 1.0f + 0x1p-12f;
  CHECK(fma(a, a, -1.0f) == 0x1p-11f + 0x1p-24f);
  CHECK(float(fma(half(1.0f + 0x1p-10f), half(1.0f + 0x1p-10f), half(-1.0f))) == float(half(0x1p-9f + 0x1p-20f)));
  CHECK(powr(-1.0f, 2.0f) != powr(-1.0f, 2.0f) && pow(-2.0f, 2.0f) == 4.0f && exp10(2.0f) == 100.0f);
  CHECK(rsqrt(4.0f) == 0.5f && sqrt(16.0f) == 4.0f && float(sqrt(half(2.0f))) == float(half(1.41421356f)));
  CHECK(sinpi(1.0f) == 0.0f && cospi(1.0f) == -1.0f && sinpi(0.5f) == 1.0f);
  // Geometric.
  CHECK(dot(float4(1, 2, 3, 4), float4(5, 6, 7, 8)) == 70.0f && dot(float2(1, 2), 2.0f) == 6.0f);
  CHECK(length(float2(3, 4)) == 5.0f && length(float2(3e30f, 4e30f)) == 5e30f && length_squared(float3(1, 2, 2)) == 9.0f);
  CHECK(distance(float2(1, 1), float2(4, 5)) == 5.0f);
  CHECK(veq(normalize(float3(0, 3, 4)), {0, 0.6000000238418579, 0.800000011920929}));
  CHECK(veq(cross(float3(1, 0, 0), float3(0, 1, 0)), {0, 0, 1}));
  CHECK(float(length(half2(half(3.0f), half(4.0f)))) == 5.0f);
  // fast:: and precise:: name the same functions.
  CHECK(fast::exp(1.0f) == precise::exp(1.0f) && metal::exp(1.0f) == precise::exp(1.0f));
  CHECK(fast::clamp(3.0f, 0.0f, 1.0f) == 1.0f && precise::sqrt(4.0f) == 2.0f && fast::divide(1.0f, 2.0f) == 0.5f);
  CHECK(M_PI_F == 3.14159265358979f && float(M_PI_H) == float(half(3.14159265358979f)) && M_SQRT2_F == 1.41421356237f);
  CHECK(MAXFLOAT == FLT_MAX && INFINITY > FLT_MAX && isnan(NAN) && float(HALF_MIN) == 0x1p-14f);
  // Vector math with swizzle arguments and scalar splats, as kernels write it.
  float4 v(1, 4, 9, 16);
  CHECK(veq(sqrt(v.wzyx), {4, 3, 2, 1}) && veq(fma(v.xy, 2.0f, v.zw), {11, 24}) && veq(max(v, 5), {5, 5, 9, 16}));
  CHECK(veq(exp(float2(0)), {1, 1}) && veq(half2(metal::abs(half2(half(-1.0f), half(2.0f)))), {1, 2}));
}

// A template in the style of the runtime's collectives (simd_sum<T>), instantiated with vectors.
template <class T> static T sum_of_lanes(const T* lanes, int n) {
  T s = lanes[0];
  for (int i = 1; i < n; ++i) s += lanes[i];
  return s;
}
static void test_generic_templates() {
  const float4 f[3] = {float4(1), float4(2), float4(1, 2, 3, 4)};
  CHECK(veq(sum_of_lanes(f, 3), {4, 5, 6, 7}));
  const half2 h[2] = {half2(half(1.0f)), half2(half(0.5f), half(2.0f))};
  CHECK(veq(sum_of_lanes(h, 2), {1.5, 3}));
  float4 arr[4];
  for (int i = 0; i < 4; ++i) arr[i] = float4(float(i));
  float4 acc = 0.0f;
  for (const float4& x : arr) acc = fma(x, 2.0f, acc);
  CHECK(veq(acc, {12, 12, 12, 12}));
}

// ---------------------------------------------------------------- data for the NumPy comparison
static void dump_conversions() {
  // float32 -> half / bfloat: every half and bfloat value, every midpoint between neighbours and
  // the floats just around it, specials, and random bit patterns.
  std::vector<float> in;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float v = detail::half_bits_to_float(uint16_t(h));
    in.push_back(v);
    if ((h & 0x7fff) < 0x7c00) {
      const float next = detail::half_bits_to_float(uint16_t(h + 1));
      if (!(next != next)) {
        const float mid = float((double(v) + double(next)) / 2);  // exact in float
        in.push_back(mid);
        in.push_back(bitsf(fbits(mid) + 1));
        in.push_back(bitsf(fbits(mid) - 1));
      }
    }
    const uint32_t bf = h << 16;
    in.push_back(bitsf(bf | 0x8000u));  // bfloat midpoint
    in.push_back(bitsf(bf | 0x8001u));
    in.push_back(bitsf(bf | 0x7fffu));
  }
  for (int i = 0; i < 1000000; ++i) in.push_back(bitsf(next_u32()));
  std::vector<uint16_t> out_h, out_b;
  for (float f : in) { out_h.push_back(half(f).bits_); out_b.push_back(bfloat(f).bits_); }
  write_bin("f32_to_16.in0", in);
  write_bin("f32_to_16.half", out_h);
  write_bin("f32_to_16.bfloat", out_b);
  std::printf("CASE f32_to_16\n");

  // double -> half / bfloat, around half midpoints (where rounding through float would be wrong).
  std::vector<double> din;
  for (uint32_t h = 0; h < 0x7bff; h += 3) {
    const double v = detail::half_bits_to_float(uint16_t(h)), next = detail::half_bits_to_float(uint16_t(h + 1));
    const double mid = (v + next) / 2;
    din.push_back(mid);
    din.push_back(mid + mid * 0x1p-40);
    din.push_back(mid - mid * 0x1p-40);
    din.push_back(-(mid + mid * 0x1p-40));
  }
  for (uint32_t b = 0; b < 0x7f80; b += 7) {
    const double v = detail::bfloat_bits_to_float(uint16_t(b)), next = detail::bfloat_bits_to_float(uint16_t(b + 1));
    const double mid = (v + next) / 2;
    din.push_back(mid + mid * 0x1p-45);
    din.push_back(mid - mid * 0x1p-45);
  }
  for (int i = 0; i < 200000; ++i) {
    uint64_t u = next_u64();
    double d;
    std::memcpy(&d, &u, 8);
    din.push_back(d);
  }
  std::vector<uint16_t> dout_h, dout_b;
  for (double d : din) { dout_h.push_back(half(d).bits_); dout_b.push_back(bfloat(d).bits_); }
  write_bin("f64_to_16.in0", din);
  write_bin("f64_to_16.half", dout_h);
  write_bin("f64_to_16.bfloat", dout_b);
  std::printf("CASE f64_to_16\n");

  // int32 -> half / bfloat.
  std::vector<int32_t> iin;
  for (int32_t i = -70000; i <= 70000; ++i) iin.push_back(i);
  for (int i = 0; i < 100000; ++i) iin.push_back(int32_t(next_u32()));
  std::vector<uint16_t> iout_h, iout_b;
  for (int32_t i : iin) { iout_h.push_back(half(i).bits_); iout_b.push_back(bfloat(i).bits_); }
  write_bin("i32_to_16.in0", iin);
  write_bin("i32_to_16.half", iout_h);
  write_bin("i32_to_16.bfloat", iout_b);
  std::printf("CASE i32_to_16\n");

  // half / bfloat -> float: all 65536 bit patterns.
  std::vector<uint16_t> all16;
  std::vector<float> from_h, from_b;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    all16.push_back(uint16_t(h));
    from_h.push_back(float(half::from_bits(uint16_t(h))));
    from_b.push_back(float(bfloat::from_bits(uint16_t(h))));
  }
  write_bin("from_16.in0", all16);
  write_bin("from_16.half", from_h);
  write_bin("from_16.bfloat", from_b);
  std::printf("CASE from_16\n");
}

template <class H> static void dump_fp16_arith(const char* name) {
  // Random operands: any bit pattern (including inf/NaN/subnormals) half the time, values of similar
  // magnitude (where additions round) the other half.
  std::vector<uint16_t> a, b, add, sub, mul, div, sq, fm, c;
  for (int i = 0; i < 300000; ++i) {
    uint16_t x = uint16_t(next_u32()), y = uint16_t(next_u32()), z = uint16_t(next_u32());
    if (i & 1) {
      y = uint16_t((x & 0xfc00) ^ (y & 0x83ff));
      z = uint16_t((x & 0xfc00) ^ (z & 0x83ff));
    }
    const H hx = H::from_bits(x), hy = H::from_bits(y), hz = H::from_bits(z);
    a.push_back(x); b.push_back(y); c.push_back(z);
    add.push_back(H(hx + hy).bits_);
    sub.push_back(H(hx - hy).bits_);
    mul.push_back(H(hx * hy).bits_);
    div.push_back(H(hx / hy).bits_);
    sq.push_back(H(metal::sqrt(hx)).bits_);
    fm.push_back(H(metal::fma(hx, hy, hz)).bits_);
  }
  const std::string n = name;
  write_bin(n + ".in0", a); write_bin(n + ".in1", b); write_bin(n + ".in2", c);
  write_bin(n + ".add", add); write_bin(n + ".sub", sub); write_bin(n + ".mul", mul);
  write_bin(n + ".div", div); write_bin(n + ".sqrt", sq); write_bin(n + ".fma", fm);
  std::printf("CASE %s\n", name);
}

static void dump_float_math() {
  // Unary float functions on inputs spread over each function's domain (in0), and the same for half.
  std::vector<float> x, y, z;
  for (int i = 0; i < 20000; ++i) {
    const int kind = i % 4;
    float v = kind == 0 ? uniform(-10, 10) : kind == 1 ? uniform(-100, 100) : kind == 2 ? uniform(0, 1) : bitsf(next_u32() & 0xbfffffffu);
    x.push_back(v);
    y.push_back(uniform(-4, 4));
    z.push_back(uniform(-50, 50));
  }
  write_bin("fmath.in0", x); write_bin("fmath.in1", y); write_bin("fmath.in2", z);
#define UN(NAME)                                                          \
  {                                                                       \
    std::vector<float> o;                                                 \
    for (float v : x) o.push_back(metal::NAME(v));                        \
    write_bin("fmath." #NAME, o);                                         \
  }
  UN(exp) UN(exp2) UN(exp10) UN(log) UN(log2) UN(log10) UN(sqrt) UN(rsqrt) UN(sin) UN(cos) UN(tan)
  UN(tanh) UN(sinh) UN(cosh) UN(asin) UN(acos) UN(atan) UN(floor) UN(ceil) UN(round) UN(rint) UN(trunc)
  UN(fabs) UN(fract) UN(sign) UN(saturate) UN(sinpi) UN(cospi)
#undef UN
#define BIN(NAME)                                                         \
  {                                                                       \
    std::vector<float> o;                                                 \
    for (size_t i = 0; i < x.size(); ++i) o.push_back(metal::NAME(x[i], y[i])); \
    write_bin("fmath." #NAME, o);                                         \
  }
  BIN(pow) BIN(atan2) BIN(fmod) BIN(fmin) BIN(fmax) BIN(copysign)
#undef BIN
  {
    std::vector<float> o;
    for (size_t i = 0; i < x.size(); ++i) o.push_back(metal::fma(x[i], y[i], z[i]));
    write_bin("fmath.fma", o);
  }
  {
    // Vector forms must equal the scalar forms component by component.
    int mismatches = 0;
    for (size_t i = 0; i + 4 <= x.size(); i += 4) {
      const float4 v(x[i], x[i + 1], x[i + 2], x[i + 3]);
      const float4 e = metal::exp(v), s = metal::sin(v);
      for (int k = 0; k < 4; ++k)
        if (!same_float(e[k], metal::exp(x[i + k])) || !same_float(s[k], metal::sin(x[i + k]))) ++mismatches;
    }
    CHECK(mismatches == 0);
  }
  std::printf("CASE fmath\n");

  std::vector<uint16_t> hx;
  for (uint32_t h = 0; h < 0x10000; ++h) hx.push_back(uint16_t(h));
  write_bin("hmath.in0", hx);
#define HUN(NAME)                                                         \
  {                                                                       \
    std::vector<uint16_t> o;                                              \
    for (uint16_t b : hx) o.push_back(half(metal::NAME(half::from_bits(b))).bits_); \
    write_bin("hmath." #NAME, o);                                         \
  }
  HUN(exp) HUN(log) HUN(sin) HUN(cos) HUN(tanh) HUN(rsqrt) HUN(sqrt) HUN(floor) HUN(fract) HUN(exp2)
#undef HUN
  std::printf("CASE hmath\n");
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::printf("usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  g_outdir = argv[1];
  test_layout_and_typedefs();
  test_constructors();
  test_swizzles();
  test_operators();
  test_half_scalars();
  test_as_type_select();
  test_math_functions();
  test_generic_templates();
  dump_conversions();
  dump_fp16_arith<half>("half_arith");
  dump_fp16_arith<bfloat>("bfloat_arith");
  dump_float_math();
  std::printf("cpp checks: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
