/* Internals shared by sampler.c and launch-sampling.c: scratch layout, modes, kernel arguments. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "internal/kernel-args.h"
#include "internal/sampling.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Byte offsets of the regions of the scratch buffer, and the chunking of the O(V) passes. */
struct gptoss_sampling_layout {
    size_t counts, present, scaled, partials, histogram_counts, histogram_mass;
    size_t selection, candidate_count, candidates, total;
    uint32_t chunk_size, num_chunks;
};
struct gptoss_sampling_layout gptoss_sampling_layout(uint32_t vocabulary_size);

enum gptoss_sampling_mode {
    gptoss_sampling_mode_greedy = 0,     /* temperature 0: argmax */
    gptoss_sampling_mode_race = 1,       /* no cut active: Gumbel race over all tokens in prepare */
    gptoss_sampling_mode_truncated = 2,  /* top-k / top-p / min-p: histogram, select, gather_race */
};

/* The mode and the GPTOSS_SAMPLING_FLAG_* bits the sampler's settings call for. */
enum gptoss_sampling_mode gptoss_sampling_mode_of(
    const struct gptoss_sampler* sampler, uint32_t vocabulary_size, uint32_t* flags_out);

/* Fills every field of args except flags, chunk_size, num_chunks, history_count, num_prompt_tokens. */
void gptoss_sampling_fill_args(
    const struct gptoss_sampler* sampler, uint32_t vocabulary_size, uint64_t position,
    struct gptoss_sampling_args* args);

#ifdef __cplusplus
}  // extern "C"
#endif
