/*
 * Argument structs shared by the C launch wrappers and the MSL kernels.
 *
 * Included by C (launch-*.c) and by MSL (`#include <internal/kernel-args.h>` in kernels/*.metal), so
 * each struct has one definition and the two sides agree on its layout by construction. Only types
 * both languages spell the same way are used (uint32_t/int32_t/float via the typedefs below); no
 * pointers, no bool (its size differs), members ordered to avoid padding surprises.
 * Each kernel family owns one section.
 */
#pragma once

#ifdef __METAL_VERSION__
  typedef uint uint32_t;
  typedef int int32_t;
  typedef ulong uint64_t;
#else
  #include <stdint.h>
#endif

/* ---- embeddings / norm / dense matmul (matmul.metal, embeddings.metal) ---- */

/* ---- attention (attention.metal) ---- */

/* ---- routing and MoE (routing.metal, moe.metal) ---- */

/* ---- sampling (sampling.metal) ---- */
