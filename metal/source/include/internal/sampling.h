/*
 * Sampling: the sampler object, its GPU kernels and the host side of the two-phase sampling step.
 *
 * Semantics (the public contract is documented in gpt-oss/functions.h, "Sampler"):
 *   z_i = penalise(logit_i) * (1 / temperature)           (temperature 0: greedy, argmax, ties -> lowest id)
 *   keep = top-k ∘ top-p ∘ min-p over the order (z desc, id asc)
 *   token = argmax over kept i of  z_i + Gumbel_i,  Gumbel_i = -log(-log(u(seed, position, i)))
 * The Gumbel-max race samples exactly from softmax(z) restricted to the kept set, and its noise
 * depends only on (seed, position, token id) through a counter-based RNG (Philox-4x32-10), so the
 * same seed and context give the same token, on the GPU and in the host reference.
 *
 * GPU/host split (one command buffer per decoded token, shared with the forward pass):
 *   gptoss_sampler_encode   encodes the O(V) passes after the forward pass:
 *     [clear_counts, count_history]  only if a penalty is active: per-token occurrence counts
 *     prepare      z = penalised logits * 1/T into scratch; per-threadgroup max / argmax / min and,
 *                  when nothing is truncated, the Gumbel race
 *     histogram    (truncation only) per-threadgroup histogram of z in NB buckets below the max:
 *                  count and sum of exp(z - max), accumulated in a fixed order (deterministic)
 *     select       (truncation only, 1 threadgroup) sums the histograms, finds the range of
 *                  buckets [lo, hi] in which a top-k / top-p / min-p cut can fall
 *     gather_race  (truncation only) tokens in buckets < lo race on the GPU; tokens in [lo, hi]
 *                  are appended to a candidate list; tokens in buckets > hi are dropped
 *   gptoss_sampler_finish   after the wait: O(threadgroups + candidates·log candidates) host work —
 *                  exact cuts inside the boundary buckets, race among the kept candidates,
 *                  comparison with the GPU's best.
 */
#pragma once

#ifndef __cplusplus
  #include <stdatomic.h>
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#include "internal/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef __cplusplus  /* C++ (the bindings) uses the object only through the API */
struct gptoss_sampler {
    atomic_uint_least64_t ref_count;
    /*
     * Held (a spin lock: every critical section is a few stores or one copy) by the setters and by
     * gptoss_sampler_clone, so that a sampling call snapshots consistent settings even while another
     * thread changes them. The sampling code reads the fields of its private clone without it.
     */
    atomic_flag lock;
    float temperature;          /* >= 0; 0 = greedy. Default 1 */
    float top_p;                /* (0, 1]; 1 = off. Default 1 */
    uint32_t top_k;             /* 0 = off. Default 0 */
    float min_p;                /* [0, 1]; 0 = off. Default 0 */
    float presence_penalty;     /* [-2, 2]; default 0 */
    float frequency_penalty;    /* [-2, 2]; default 0 */
    float repetition_penalty;   /* (0, +inf) finite; 1 = off. Default 1 */
    uint64_t seed;              /* default 0 */
    uint32_t* stop_tokens;      /* malloc'ed copy, num_stop_tokens entries (NULL if none) */
    size_t num_stop_tokens;
};
#endif

/*
 * A new sampler (reference count 1, release it) with a copy of sampler's settings and stop tokens,
 * taken as one consistent snapshot. Sampling calls (gptoss_context_sample_with_sampler, the Python
 * Sampler) run on such a private copy: a sampler may be changed from another thread meanwhile.
 */
enum gptoss_status gptoss_sampler_clone(gptoss_sampler_t sampler, gptoss_sampler_t* clone_out);

/* True if token is one of the sampler's stop tokens. */
bool gptoss_sampler_is_stop_token(const struct gptoss_sampler* sampler, uint32_t token);

/* Kernel names (in kernels/sampling.metal), resolved once per model by gptoss_sampling_functions_create. */
#define GPTOSS_SAMPLING_KERNEL_CLEAR_COUNTS  "gptoss_sampling_clear_counts"
#define GPTOSS_SAMPLING_KERNEL_COUNT_HISTORY "gptoss_sampling_count_history"
#define GPTOSS_SAMPLING_KERNEL_PREPARE       "gptoss_sampling_prepare"
#define GPTOSS_SAMPLING_KERNEL_HISTOGRAM     "gptoss_sampling_histogram"
#define GPTOSS_SAMPLING_KERNEL_SELECT        "gptoss_sampling_select"
#define GPTOSS_SAMPLING_KERNEL_GATHER_RACE   "gptoss_sampling_gather_race"

struct gptoss_sampling_functions {
    struct gptoss_function* clear_counts;
    struct gptoss_function* count_history;
    struct gptoss_function* prepare;
    struct gptoss_function* histogram;
    struct gptoss_function* select;
    struct gptoss_function* gather_race;
};

/* Resolves all sampling kernels on device (all-or-nothing); release with _release (zeroes the struct). */
enum gptoss_status gptoss_sampling_functions_create(
    struct gptoss_device* device, struct gptoss_sampling_functions* functions_out);
void gptoss_sampling_functions_release(struct gptoss_sampling_functions* functions);

/*
 * Per-context scratch for one sampling step over a vocabulary of vocabulary_size tokens: a single
 * shared buffer (counts, penalised logits, per-threadgroup partials and histograms, candidate list)
 * of gptoss_sampler_scratch_size(vocabulary_size) bytes. Not shareable between concurrent steps.
 */
struct gptoss_sampling_scratch {
    struct gptoss_buffer buffer;
    uint32_t vocabulary_size;
    /* Filled by encode, read by finish. */
    uint32_t encoded;           /* 1 between a successful encode and finish */
    uint32_t mode;              /* internal: greedy / race-only / truncated */
    uint64_t position;
    float log_min_p;
};

size_t gptoss_sampler_scratch_size(uint32_t vocabulary_size);
enum gptoss_status gptoss_sampling_scratch_create(
    struct gptoss_device* device, uint32_t vocabulary_size, struct gptoss_sampling_scratch* scratch_out);
void gptoss_sampling_scratch_release(struct gptoss_sampling_scratch* scratch);

/*
 * Phase 1: encodes the sampling kernels into command_buffer (after the forward pass that writes
 * the logits). logits: vocabulary_size f32 at logits_buffer + logits_offset. History (for the
 * penalties): history_count u32 token ids at history_buffer + history_offset (the context's tokens
 * [0, n)); the first num_prompt_tokens of them are the prompt, the rest were generated in this
 * sampling call (presence/frequency count only those; repetition counts all). history_buffer may be
 * NULL when history_count == 0. position: the context position the sampled token will occupy
 * (the RNG counter). The sampler's settings are captured at encode time.
 */
enum gptoss_status gptoss_sampler_encode(
    const struct gptoss_sampler* sampler,
    struct gptoss_command_buffer* command_buffer,
    const struct gptoss_sampling_functions* functions,
    const struct gptoss_buffer* logits_buffer, size_t logits_offset,
    uint32_t vocabulary_size,
    const struct gptoss_buffer* history_buffer, size_t history_offset,
    uint32_t history_count, uint32_t num_prompt_tokens,
    uint64_t position,
    struct gptoss_sampling_scratch* scratch);

/* Phase 2, after the command buffer completed: the sampled token. */
enum gptoss_status gptoss_sampler_finish(
    const struct gptoss_sampler* sampler,
    struct gptoss_sampling_scratch* scratch,
    uint32_t* token_out);

/* After finish (or the wait): the penalised, temperature-scaled logits z (vocabulary_size f32, host
 * pointer into the scratch buffer). For T = 0 they are the penalised logits (no scaling). */
const float* gptoss_sampling_scratch_scaled_logits(const struct gptoss_sampling_scratch* scratch);

/*
 * Host reference of the whole step, same semantics and same RNG (used by tests and as a fallback).
 * scaled_logits_out (optional, vocabulary_size floats) receives z as defined above.
 */
enum gptoss_status gptoss_sampler_sample_host(
    const struct gptoss_sampler* sampler,
    const float* logits, uint32_t vocabulary_size,
    const uint32_t* history, uint32_t history_count, uint32_t num_prompt_tokens,
    uint64_t position,
    float* scaled_logits_out,
    uint32_t* token_out);

/* The uniform variate in (0, 1) of token id at (seed, position): u = (r >> 9) * 2^-23 + 2^-24,
 * r = first word of Philox-4x32-10(counter = {id, position lo, position hi, 0}, key = {seed lo, seed hi}). */
float gptoss_sampling_uniform(uint64_t seed, uint64_t position, uint32_t id);

#ifdef __cplusplus
}  // extern "C"
#endif
