// simdgroup_matrix<T, 8, 8> (float, half, bfloat). Every lane keeps a full copy of the 8x8 matrix;
// loads and stores are done by each lane on its own copy (the values are identical across the
// group), while multiplies are SIMD-group collectives computed once and copied to every lane.
#pragma once

#include <cstdint>
#include <type_traits>

#include "msl_rt_core.h"
#include "msl_rt_simd.h"

namespace metal {

template <class T, int Cols, int Rows>
struct simdgroup_matrix {
    static_assert(Cols == 8 && Rows == 8, "only 8x8 SIMD-group matrices exist in MSL");
    T e[Rows][Cols];
};

using simdgroup_float8x8 = simdgroup_matrix<float, 8, 8>;
#if defined(MSL_RT_HAVE_TYPES)
using simdgroup_half8x8 = simdgroup_matrix<half, 8, 8>;
using simdgroup_bfloat8x8 = simdgroup_matrix<bfloat, 8, 8>;
#endif

template <class T, int Cols, int Rows>
inline simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(const T value) {
    simdgroup_matrix<T, Cols, Rows> m;
    for (int r = 0; r < Rows; r++) {
        for (int c = 0; c < Cols; c++) {
            m.e[r][c] = value;
        }
    }
    return m;
}

}  // namespace metal

namespace msl_rt {

template <class O> inline void matrix_origin(const O& origin, uint64_t* x, uint64_t* y) {
    if constexpr (std::is_arithmetic_v<O>) {
        *x = uint64_t(origin);
        *y = uint64_t(origin);
    } else {
        *x = uint64_t(origin.x);
        *y = uint64_t(origin.y);
    }
}

template <class M> struct matrix_operands { const M* a; const M* b; const M* c; };

// d = a * b (+ c): accumulated in float (half and bfloat inputs too), rounded once to T.
template <class T, bool Accumulate>
void matrix_multiply_fn(lane* const* lanes, uint32_t n) {
    using M = metal::simdgroup_matrix<T, 8, 8>;
    const matrix_operands<M>& ops = operand<matrix_operands<M>>(lanes[0]);
    M d;
    for (int r = 0; r < 8; r++) {
        for (int c = 0; c < 8; c++) {
            float sum = Accumulate ? float(ops.c->e[r][c]) : 0.0f;
            for (int k = 0; k < 8; k++) {
                sum += float(ops.a->e[r][k]) * float(ops.b->e[k][c]);
            }
            d.e[r][c] = T(sum);
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        result<M>(lanes[i]) = d;
    }
}

}  // namespace msl_rt

namespace metal {

// matrix_origin (x = column, y = row) is the position in memory of the tile's first element; with
// transpose_matrix, element (r, c) of the matrix is read from memory row origin.y + c, column origin.x + r.
template <class T, int C, int R, class P, class O = int>
inline void simdgroup_load(simdgroup_matrix<T, C, R>& d, P src, uint64_t elements_per_row = 8, O origin = O(0),
                           bool transpose_matrix = false) {
    uint64_t ox, oy;
    msl_rt::matrix_origin(origin, &ox, &oy);
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            const uint64_t row = transpose_matrix ? oy + c : oy + r;
            const uint64_t col = transpose_matrix ? ox + r : ox + c;
            d.e[r][c] = T(src[ptrdiff_t(row * elements_per_row + col)]);
        }
    }
}

template <class T, int C, int R, class P, class O = int>
inline void simdgroup_store(const simdgroup_matrix<T, C, R>& s, P dst, uint64_t elements_per_row = 8, O origin = O(0),
                            bool transpose_matrix = false) {
    uint64_t ox, oy;
    msl_rt::matrix_origin(origin, &ox, &oy);
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            const uint64_t row = transpose_matrix ? oy + c : oy + r;
            const uint64_t col = transpose_matrix ? ox + r : ox + c;
            dst[ptrdiff_t(row * elements_per_row + col)] = s.e[r][c];
        }
    }
}

template <class T>
inline void simdgroup_multiply_accumulate(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                                          const simdgroup_matrix<T, 8, 8>& b, const simdgroup_matrix<T, 8, 8>& c,
                                          MSL_RT_SITE_PARAMS) {
    msl_rt::matrix_operands<simdgroup_matrix<T, 8, 8>> ops{&a, &b, &c};
    simdgroup_matrix<T, 8, 8> out;
    msl_rt::collective(MSL_RT_SITE("simdgroup_multiply_accumulate"), &msl_rt::matrix_multiply_fn<T, true>, &ops, &out);
    d = out;
}

template <class T>
inline void simdgroup_multiply(simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a,
                               const simdgroup_matrix<T, 8, 8>& b, MSL_RT_SITE_PARAMS) {
    msl_rt::matrix_operands<simdgroup_matrix<T, 8, 8>> ops{&a, &b, nullptr};
    simdgroup_matrix<T, 8, 8> out;
    msl_rt::collective(MSL_RT_SITE("simdgroup_multiply"), &msl_rt::matrix_multiply_fn<T, false>, &ops, &out);
    d = out;
}

}  // namespace metal
