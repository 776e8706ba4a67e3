// MSL vector types for the CPU execution layer: vec<T, N> (floatN, halfN, intN, ... boolN) and
// packed_vec<T, N> (packed_floatN, ...), swizzles, component-wise operators.
//
// Layout (MSL spec, "Vector data types" / "Packed vector types"): vec<T, N> has N elements of T with
// size and alignment sizeof(T) * N, except N == 3 which is padded to 4 elements (sizeof(float3) == 16);
// packed_vec<T, N> is N tightly packed elements aligned like T.
//
// Swizzles (v.xy, v.zyx, v.xxyy, ...) are empty proxy members in the vector's union; they read and
// write the vector's elements through their own address, which is the vector's.  Distinct-index
// swizzles are assignable (v.zw = ..., v.xy += ...), repeated-index ones are read-only.
// Caveat: `auto s = v.xy;` copies the proxy, not the values: write `float2 s = v.xy;` (MSL code
// naming the type, as all our kernels do, is unaffected).
#pragma once

#include "msl_types_scalar.h"

namespace metal {

template <class T, int N> struct vec;
template <class T, int N> struct packed_vec;
template <class T, int... I> struct swz_r;
template <class T, int... I> struct swz_w;

namespace detail {

template <class T, int N>
struct vec_alignment : std::integral_constant<std::size_t, sizeof(T) * (N == 3 ? 4 : N)> {};

// vt<X>: is X a vector (vec, packed_vec, swizzle), its component count and element type.
template <class X> struct vt {
  static constexpr bool vecish = false;
  static constexpr bool scalar = is_msl_scalar<X>::value;
  static constexpr int n = 1;
  using elem = X;
};
template <class T, int N> struct vt<vec<T, N>> {
  static constexpr bool vecish = true, scalar = false;
  static constexpr int n = N;
  using elem = T;
};
template <class T, int N> struct vt<packed_vec<T, N>> : vt<vec<T, N>> {};
template <class T, int... I> struct vt<swz_r<T, I...>> : vt<vec<T, int(sizeof...(I))>> {};
template <class T, int... I> struct vt<swz_w<T, I...>> : vt<vec<T, int(sizeof...(I))>> {};
template <class X> struct vt<const X> : vt<X> {};

template <class A, int N>
struct is_convertible_vector : std::integral_constant<bool, vt<A>::vecish && vt<A>::n == N> {};

template <int N, class... A>
struct ctor_args_fit
    : std::integral_constant<bool, (sizeof...(A) >= 2) && ((vt<A>::vecish || vt<A>::scalar) && ...) &&
                                       ((vt<A>::n + ...) == N)> {};

// Component k of a scalar (itself), a vector, or a swizzle.
template <class X, typename std::enable_if<!vt<X>::vecish, int>::type = 0>
inline const X& at(const X& x, int) { return x; }
template <class T, int N> inline T at(const vec<T, N>& v, int k) { return v.elems_[k]; }
template <class T, int N> inline T at(const packed_vec<T, N>& v, int k) { return v.elems_[k]; }
template <class T, int... I> inline T at(const swz_r<T, I...>& s, int k) { return s.at(k); }
template <class T, int... I> inline T at(const swz_w<T, I...>& s, int k) { return s.at(k); }

// Value conversion used by explicit vector conversions.  Float -> integer truncates toward zero and,
// where C++ would be undefined (NaN, out of range), gives 0 for NaN and saturates otherwise.
template <class To, class From>
inline To convert(From f) {
  if constexpr (std::is_integral<To>::value && !std::is_same<To, bool>::value &&
                !std::is_integral<From>::value) {
    const float x = float(f);
    if (x != x) return To(0);
    if (x <= float(std::numeric_limits<To>::lowest())) return std::numeric_limits<To>::lowest();
    if (x >= float(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return To(x);
  } else if constexpr (std::is_same<To, bool>::value) {
    return float(f) != 0.0f;
  } else {
    return To(f);
  }
}

template <class T, class A>
inline void convert_into(T* out, const A& a) {
  for (int k = 0; k < vt<A>::n; ++k) out[k] = convert<T>(at(a, k));
}

template <class T, class A>
inline void put(T* out, int& i, const A& a) {
  for (int k = 0; k < vt<A>::n; ++k) out[i++] = T(at(a, k));
}

}  // namespace detail

// Read-only part of a swizzle proxy.  The proxy is an empty member of the vector's union, so its
// address is the vector's first element.
template <class T, int... I>
struct swz_base {
  static constexpr int count = int(sizeof...(I));
  using vec_type = vec<T, count>;
  const T* data_() const { return reinterpret_cast<const T*>(this); }
  T* data_() { return reinterpret_cast<T*>(this); }
  T at(int k) const {
    constexpr int idx[] = {I...};
    return data_()[idx[k]];
  }
  vec_type get() const { return vec_type(data_()[I]...); }
  operator vec_type() const { return get(); }
  T operator[](int k) const { return at(k); }
};

template <class T, int... I>
struct swz_r : swz_base<T, I...> {
  swz_r& operator=(const swz_r&) = delete;  // repeated components cannot be assigned (MSL)
};

#define MSL_SWZ_COMPOUND(OP)                                                      \
  template <class B> swz_w& operator OP##=(const B& b) {                          \
    assign_(this->get() OP b);                                                    \
    return *this;                                                                 \
  }

template <class T, int... I>
struct swz_w : swz_base<T, I...> {
  using base = swz_base<T, I...>;
  swz_w& operator=(const swz_w& o) {  // v.xy = w.xy: copy the values, not the (empty) proxy
    assign_(o.get());
    return *this;
  }
  template <class B> swz_w& operator=(const B& b) {
    assign_(b);
    return *this;
  }
  MSL_SWZ_COMPOUND(+) MSL_SWZ_COMPOUND(-) MSL_SWZ_COMPOUND(*) MSL_SWZ_COMPOUND(/) MSL_SWZ_COMPOUND(%)
  MSL_SWZ_COMPOUND(&) MSL_SWZ_COMPOUND(|) MSL_SWZ_COMPOUND(^) MSL_SWZ_COMPOUND(<<) MSL_SWZ_COMPOUND(>>)

 private:
  template <class B> void assign_(const B& b) {
    static_assert(detail::vt<B>::scalar ||
                      (detail::vt<B>::vecish && detail::vt<B>::n == base::count &&
                       std::is_same<typename detail::vt<B>::elem, T>::value),
                  "swizzle assignment needs a scalar or a vector of the same type and size");
    T tmp[base::count];  // read all first: v.xy = v.yx
    for (int k = 0; k < base::count; ++k) tmp[k] = T(detail::at(b, k));
    constexpr int idx[] = {I...};
    for (int k = 0; k < base::count; ++k) this->data_()[idx[k]] = tmp[k];
  }
};
#undef MSL_SWZ_COMPOUND

// Members shared by every vec / packed_vec class body (see gen_swizzles.py).
#define MSL_VEC_COMPOUND(CLS, OP)                                                 \
  template <class B> CLS& operator OP##=(const B& b) { return *this = CLS(*this OP b); }
#define MSL_VEC_COMMON_MEMBERS(CLS)                                               \
  T& operator[](int k) { return elems_[k]; }                                      \
  const T& operator[](int k) const { return elems_[k]; }                          \
  MSL_VEC_COMPOUND(CLS, +) MSL_VEC_COMPOUND(CLS, -) MSL_VEC_COMPOUND(CLS, *)      \
  MSL_VEC_COMPOUND(CLS, /) MSL_VEC_COMPOUND(CLS, %) MSL_VEC_COMPOUND(CLS, &)      \
  MSL_VEC_COMPOUND(CLS, |) MSL_VEC_COMPOUND(CLS, ^) MSL_VEC_COMPOUND(CLS, <<)     \
  MSL_VEC_COMPOUND(CLS, >>)                                                       \
  CLS& operator++() { return *this = CLS(*this + T(1)); }                         \
  CLS& operator--() { return *this = CLS(*this - T(1)); }                         \
  CLS operator++(int) { CLS old = *this; ++*this; return old; }                   \
  CLS operator--(int) { CLS old = *this; --*this; return old; }

#include "msl_types_vec_gen.h"

#undef MSL_VEC_COMMON_MEMBERS
#undef MSL_VEC_COMPOUND

namespace detail {

// Result of a component-wise binary operator: at least one operand is a vector; two vectors must
// agree in size and element type (MSL has no implicit conversion between vector types); a scalar
// operand is converted to the vector's element type.
template <class A, class B, bool = vt<A>::vecish, bool = vt<B>::vecish> struct vbin {};
template <class A, class B> struct vbin<A, B, true, true> {
  static_assert(vt<A>::n == vt<B>::n, "vector operands of different sizes");
  static_assert(std::is_same<typename vt<A>::elem, typename vt<B>::elem>::value,
                "vector operands of different element types need an explicit conversion");
  using elem = typename vt<A>::elem;
  static constexpr int n = vt<A>::n;
};
template <class A, class B> struct vbin<A, B, true, false> {
  using elem = typename std::enable_if<vt<B>::scalar, typename vt<A>::elem>::type;
  static constexpr int n = vt<A>::n;
};
template <class A, class B> struct vbin<A, B, false, true> {
  using elem = typename std::enable_if<vt<A>::scalar, typename vt<B>::elem>::type;
  static constexpr int n = vt<B>::n;
};
template <class A, class B> using varith_t = vec<typename vbin<A, B>::elem, vbin<A, B>::n>;
template <class A, class B> using vcmp_t = vec<bool, vbin<A, B>::n>;

template <class E>
using uwide_t = typename std::make_unsigned<typename std::common_type<E, int>::type>::type;

template <class E> constexpr bool is_int_elem = std::is_integral<E>::value && !std::is_same<E, bool>::value;

// Integer + - * wrap around (as GPU integer arithmetic does) instead of overflowing into C++ UB.
template <class E> inline E op_add(E a, E b) {
  if constexpr (is_int_elem<E>) return E(uwide_t<E>(a) + uwide_t<E>(b)); else return E(a + b);
}
template <class E> inline E op_sub(E a, E b) {
  if constexpr (is_int_elem<E>) return E(uwide_t<E>(a) - uwide_t<E>(b)); else return E(a - b);
}
template <class E> inline E op_mul(E a, E b) {
  if constexpr (is_int_elem<E>) return E(uwide_t<E>(a) * uwide_t<E>(b)); else return E(a * b);
}
// Integer division by zero has no defined result in MSL; we give 0 (and INT_MIN / -1 wraps) instead
// of trapping the host process.
template <class E> inline E op_div(E a, E b) {
  if constexpr (is_int_elem<E>) {
    if (b == 0) return E(0);
    if (std::is_signed<E>::value && b == E(-1)) return op_sub(E(0), a);
    return E(a / b);
  } else {
    return E(a / b);
  }
}
template <class E> inline E op_mod(E a, E b) {
  if (b == 0) return E(0);
  if (std::is_signed<E>::value && b == E(-1)) return E(0);
  return E(a % b);
}
template <class E> inline E op_and(E a, E b) { return E(a & b); }
template <class E> inline E op_or(E a, E b) { return E(a | b); }
template <class E> inline E op_xor(E a, E b) { return E(a ^ b); }
// Shift counts are taken modulo the element width (as in OpenCL C; never C++ UB).
template <class E> inline E op_shl(E a, E b) {
  return E(uwide_t<E>(a) << (uwide_t<E>(b) & (sizeof(E) * 8 - 1)));
}
template <class E> inline E op_shr(E a, E b) {
  return E(a >> (uwide_t<E>(b) & (sizeof(E) * 8 - 1)));
}

}  // namespace detail

#define MSL_VEC_BINOP(OP, FN)                                                                 \
  template <class A, class B, class R = detail::varith_t<A, B>>                               \
  inline R operator OP(const A& a, const B& b) {                                              \
    using E = typename R::element_type;                                                       \
    R r;                                                                                      \
    for (int k = 0; k < R::count; ++k) r.elems_[k] = detail::FN<E>(E(detail::at(a, k)), E(detail::at(b, k))); \
    return r;                                                                                 \
  }
MSL_VEC_BINOP(+, op_add)
MSL_VEC_BINOP(-, op_sub)
MSL_VEC_BINOP(*, op_mul)
MSL_VEC_BINOP(/, op_div)
MSL_VEC_BINOP(%, op_mod)
MSL_VEC_BINOP(&, op_and)
MSL_VEC_BINOP(|, op_or)
MSL_VEC_BINOP(^, op_xor)
MSL_VEC_BINOP(<<, op_shl)
MSL_VEC_BINOP(>>, op_shr)
#undef MSL_VEC_BINOP

#define MSL_VEC_CMPOP(OP)                                                                     \
  template <class A, class B, class R = detail::vcmp_t<A, B>>                                 \
  inline R operator OP(const A& a, const B& b) {                                              \
    using E = typename detail::vbin<A, B>::elem;                                              \
    R r;                                                                                      \
    for (int k = 0; k < R::count; ++k) r.elems_[k] = E(detail::at(a, k)) OP E(detail::at(b, k)); \
    return r;                                                                                 \
  }
MSL_VEC_CMPOP(==)
MSL_VEC_CMPOP(!=)
MSL_VEC_CMPOP(<)
MSL_VEC_CMPOP(<=)
MSL_VEC_CMPOP(>)
MSL_VEC_CMPOP(>=)
MSL_VEC_CMPOP(&&)
MSL_VEC_CMPOP(||)
#undef MSL_VEC_CMPOP

template <class A, class R = vec<typename detail::vt<A>::elem, detail::vt<A>::n>,
          typename std::enable_if<detail::vt<A>::vecish, int>::type = 0>
inline R operator-(const A& a) {
  using E = typename R::element_type;
  R r;
  for (int k = 0; k < R::count; ++k) {
    if constexpr (detail::is_int_elem<E>) r.elems_[k] = detail::op_sub<E>(E(0), detail::at(a, k));
    else r.elems_[k] = E(-detail::at(a, k));  // a sign flip: -0.0 and NaN signs as IEEE negate
  }
  return r;
}
template <class A, class R = vec<typename detail::vt<A>::elem, detail::vt<A>::n>,
          typename std::enable_if<detail::vt<A>::vecish, int>::type = 0>
inline R operator+(const A& a) { return R(a); }
template <class A, class R = vec<typename detail::vt<A>::elem, detail::vt<A>::n>,
          typename std::enable_if<detail::vt<A>::vecish && detail::is_int_elem<typename detail::vt<A>::elem>,
                                  int>::type = 0>
inline R operator~(const A& a) {
  using E = typename R::element_type;
  R r;
  for (int k = 0; k < R::count; ++k) r.elems_[k] = E(~detail::at(a, k));
  return r;
}
template <class A, class R = vec<bool, detail::vt<A>::n>,
          typename std::enable_if<detail::vt<A>::vecish, int>::type = 0>
inline R operator!(const A& a) {
  R r;
  for (int k = 0; k < R::count; ++k) r.elems_[k] = !detail::at(a, k);
  return r;
}

// Remove a swizzle proxy / packed type: the plain vector (or scalar) type a value converts to.
// Useful for templates (vector_of<decltype(v.xy)> is float2).
template <class X>
using vector_of = typename std::conditional<detail::vt<X>::vecish,
                                            vec<typename detail::vt<X>::elem, detail::vt<X>::n>, X>::type;

}  // namespace metal

// Named vector types, in namespace metal and at global scope (kernels use them unqualified).
#define MSL_VEC_TYPEDEFS(T, NAME)                                                                     \
  namespace metal {                                                                                   \
  typedef vec<T, 2> NAME##2; typedef vec<T, 3> NAME##3; typedef vec<T, 4> NAME##4;                    \
  typedef packed_vec<T, 2> packed_##NAME##2; typedef packed_vec<T, 3> packed_##NAME##3;               \
  typedef packed_vec<T, 4> packed_##NAME##4;                                                          \
  }                                                                                                   \
  using metal::NAME##2; using metal::NAME##3; using metal::NAME##4;                                   \
  using metal::packed_##NAME##2; using metal::packed_##NAME##3; using metal::packed_##NAME##4;
MSL_VEC_TYPEDEFS(float, float)
MSL_VEC_TYPEDEFS(metal::half, half)
MSL_VEC_TYPEDEFS(metal::bfloat, bfloat)
MSL_VEC_TYPEDEFS(int, int)
MSL_VEC_TYPEDEFS(unsigned int, uint)
MSL_VEC_TYPEDEFS(short, short)
MSL_VEC_TYPEDEFS(unsigned short, ushort)
MSL_VEC_TYPEDEFS(char, char)
MSL_VEC_TYPEDEFS(unsigned char, uchar)
MSL_VEC_TYPEDEFS(bool, bool)
MSL_VEC_TYPEDEFS(long, long)
MSL_VEC_TYPEDEFS(unsigned long, ulong)
#undef MSL_VEC_TYPEDEFS
