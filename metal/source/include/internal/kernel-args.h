/*
 * Argument structs shared by the C launch wrappers and the MSL kernels.
 *
 * Included by C (launch-*.c) and by MSL (`#include <internal/kernel-args.h>` in the .metal files of kernels/), so
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

/* gptoss_embeddings_bf16: residual[t, :] = embedding[tokens[t], :] (bf16 -> f32). */
struct gptoss_embeddings_args {
    uint32_t num_tokens;
    uint32_t dim;          /* D, a multiple of 8 */
    uint32_t vocab_size;   /* ids >= vocab_size produce a zero row (never read out of bounds) */
};

/* gptoss_rmsnorm: out[t, :] = in[t, :] / sqrt(mean(in[t, :]^2) + epsilon) * gain (bf16). */
struct gptoss_rmsnorm_args {
    uint32_t num_tokens;
    uint32_t dim;          /* a multiple of 4 */
    float epsilon;
};

/* Decode mat-vec geometry (gptoss_matvec_bf16, gptoss_qkv_rope_kv*): a SIMD group owns
 * GPTOSS_MATVEC_ROWS consecutive output rows for up to GPTOSS_MATVEC_TOKENS tokens (each weight row
 * is read once per group of that many tokens); a threadgroup is GPTOSS_MATVEC_SIMDGROUPS SIMD groups. */
#define GPTOSS_MATVEC_ROWS 4
#define GPTOSS_MATVEC_TOKENS 4
#define GPTOSS_MATVEC_SIMDGROUPS 8
/* Prefill GEMM tile (gptoss_gemm_bf16): GPTOSS_GEMM_BM tokens x GPTOSS_GEMM_BN outputs per threadgroup
 * of 4 SIMD groups, stepping GPTOSS_GEMM_BK inputs at a time. */
#define GPTOSS_GEMM_BM 32
#define GPTOSS_GEMM_BN 64
#define GPTOSS_GEMM_BK 32
#define GPTOSS_GEMM_THREADS 128

/* Flags of gptoss_matvec_args / gptoss_gemm_args. */
#define GPTOSS_DENSE_FLAG_BIAS 1u          /* add bias[n] (bf16) */
#define GPTOSS_DENSE_FLAG_ADD_RESIDUAL 2u  /* output += result instead of output = result */
#define GPTOSS_DENSE_FLAG_RMSNORM 4u       /* mat-vec only: input is RMSNorm(input) * gain (fused) */

/* gptoss_matvec_bf16 (decode) and gptoss_gemm_bf16 (prefill): out[t, n] (+)= sum_k x[t, k] w[n, k] (+ bias[n]). */
struct gptoss_matvec_args {
    uint32_t num_tokens;   /* T */
    uint32_t k;            /* input width, a multiple of 8 (16-byte rows) */
    uint32_t n;            /* output rows */
    uint32_t flags;        /* GPTOSS_DENSE_FLAG_* */
    float epsilon;         /* RMSNorm epsilon when GPTOSS_DENSE_FLAG_RMSNORM */
};

struct gptoss_gemm_args {
    uint32_t num_tokens;   /* T (rows of x and out) */
    uint32_t k;            /* a multiple of 8 */
    uint32_t n;
    uint32_t flags;        /* GPTOSS_DENSE_FLAG_BIAS | GPTOSS_DENSE_FLAG_ADD_RESIDUAL */
};

/* RoPE (YaRN) parameters shared by the decode QKV kernel and the prefill RoPE + KV-write kernel. The
 * per-pair inverse frequencies are computed by the host in double precision exactly as the reference
 * model does and rounded to float once, so the kernels see bit-identical frequencies. */
#define GPTOSS_ROPE_PAIRS 32   /* head_dim 64 / 2 */
struct gptoss_qkv_args {
    uint32_t num_tokens;   /* T */
    uint32_t dim;          /* D (input width), a multiple of 8 */
    uint32_t num_heads;    /* Hq */
    uint32_t num_kv_heads; /* Hkv */
    uint32_t position;     /* absolute position of token 0; token t is at position + t */
    uint32_t kv_slots;     /* ring size of the KV cache of this block: token at p goes to slot p % kv_slots */
    float epsilon;         /* RMSNorm epsilon (decode kernel only) */
    float yarn_multiplier; /* cos and sin are multiplied by it */
    float inv_freq[GPTOSS_ROPE_PAIRS];
};

/* ---- attention (attention.metal) ---- */

/*
 * gptoss_attention_{decode,prefill}_{f16,f32} and gptoss_attention_combine (see kernels-attention.h).
 * Head dim is 64 and 8 query heads share a KV head (num_q_heads = 8 * num_kv_heads); both are kernel
 * constants checked by the launch wrapper.
 */
struct gptoss_attention_args {
    uint32_t num_tokens;        /* T: queries at absolute positions first_position .. first_position + T - 1 */
    uint32_t first_position;
    uint32_t num_q_heads;       /* Hq */
    uint32_t num_kv_heads;      /* Hkv */
    uint32_t window;            /* 0: full causal (keys 0..p); W: keys max(0, p - W + 1)..p */
    uint32_t num_slots;         /* KV cache slots; position p lives in slot p % num_slots */
    uint32_t num_splits;        /* decode: threadgroups sharing one query's key range (1: no combine pass) */
    uint32_t keys_per_split;    /* decode: keys per split, a multiple of 128 */
};

/* ---- routing and MoE (routing.metal, moe.metal) ---- */
/* gptoss_router: one threadgroup per token (see kernels-moe.h). */
struct gptoss_router_args {
    uint32_t num_tokens;
    uint32_t embedding_dim;     /* D, a multiple of 32 */
    uint32_t num_experts;       /* E <= 256 */
    uint32_t num_active;        /* k <= 8 (4 in gpt-oss) */
    float epsilon;              /* RMSNorm epsilon from the model header */
    uint32_t padding0;
};

/*
 * All MoE kernels (moe.metal). The weights binding starts at a block's MoE section; expert e's part P
 * is at byte e * expert_size + P_offset (offsets computed by the launch wrappers like compute_layout).
 */
struct gptoss_moe_args {
    uint64_t expert_size;
    uint64_t mlp1_blocks_offset;
    uint64_t mlp1_scales_offset;
    uint64_t mlp1_bias_offset;
    uint64_t mlp2_blocks_offset;
    uint64_t mlp2_scales_offset;
    uint64_t mlp2_bias_offset;
    uint32_t num_tokens;        /* T */
    uint32_t embedding_dim;     /* D, a multiple of 32 */
    uint32_t mlp_dim;           /* I, a multiple of 32 */
    uint32_t num_experts;       /* E */
    uint32_t num_active;        /* k */
    float swiglu_limit;
    uint32_t max_row_tiles;     /* prefill GEMMs: threadgroups along y (upper bound on row tiles) */
    uint32_t padding0;
};

/* ---- sampling (sampling.metal) ---- */
/* Buckets of the value histogram used to locate top-k / top-p / min-p cuts (see sampling.h). */
#define GPTOSS_SAMPLING_NUM_BUCKETS 1024u
/* Upper bound on the threadgroups of the O(V) passes (each owns one contiguous chunk of tokens). */
#define GPTOSS_SAMPLING_MAX_CHUNKS 128u
/* Threads per threadgroup: prepare / gather_race / clear / count (256), histogram (one SIMD group:
 * its deterministic accumulation order needs a single SIMD group), select (1 threadgroup of 1024). */
#define GPTOSS_SAMPLING_THREADS 256u
#define GPTOSS_SAMPLING_HISTOGRAM_THREADS 32u
#define GPTOSS_SAMPLING_SELECT_THREADS 1024u

#define GPTOSS_SAMPLING_FLAG_PENALTIES 1u   /* apply penalties from the counts buffers */
#define GPTOSS_SAMPLING_FLAG_RACE      2u   /* prepare runs the Gumbel race over every token */
#define GPTOSS_SAMPLING_FLAG_TOP_K     4u
#define GPTOSS_SAMPLING_FLAG_TOP_P     8u
#define GPTOSS_SAMPLING_FLAG_MIN_P     16u

/* One struct for every sampling kernel ([[buffer(0)]]). */
struct gptoss_sampling_args {
    uint32_t vocabulary_size;
    uint32_t chunk_size;            /* tokens per threadgroup in the O(V) passes */
    uint32_t num_chunks;            /* threadgroups of the O(V) passes, <= GPTOSS_SAMPLING_MAX_CHUNKS */
    uint32_t history_count;
    uint32_t num_prompt_tokens;
    uint32_t flags;
    uint32_t top_k;
    uint32_t seed_lo;
    uint32_t seed_hi;
    uint32_t position_lo;
    uint32_t position_hi;
    float inv_temperature;          /* 1/T rounded to float once on the host (1 for greedy) */
    float presence_penalty;
    float frequency_penalty;
    float repetition_penalty;
    float inv_repetition_penalty;
    float top_p;
    float log_min_p;                /* logf(min_p) */
    uint32_t pad0;
    uint32_t pad1;
};

/* Per-threadgroup results of prepare (max/argmax/min) and of the race (prepare or gather_race). */
struct gptoss_sampling_partial {
    float max;                      /* -inf if the chunk has no finite-or-+inf z */
    uint32_t argmax;                /* lowest id among the maxima (0xFFFFFFFF if none) */
    float min;                      /* smallest z > -inf (+inf if none) */
    float race_score;               /* best z + Gumbel (-inf if none) */
    uint32_t race_id;               /* its id, lowest on ties (0xFFFFFFFF if none) */
    uint32_t pad0;
    uint32_t pad1;
    uint32_t pad2;
};

/* Written by select, read by gather_race and the host. */
struct gptoss_sampling_selection {
    float max;                      /* M */
    float bucket_scale;             /* bucket(z) = min(NB-1, floor((M - z) * scale)) */
    float mass_before;              /* sum of exp(z - M) over buckets < lo */
    float total_mass;               /* over all buckets */
    uint32_t lo;                    /* buckets < lo: kept by every cut (race on the GPU) */
    uint32_t hi;                    /* buckets in [lo, hi]: candidates; > hi: dropped */
    uint32_t count_before;          /* tokens in buckets < lo */
    uint32_t total_count;           /* tokens with z > -inf */
};
