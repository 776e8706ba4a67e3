// Sampling on the device: kernel lookup, scratch layout and encoding of the sampling passes
// (semantics: internal/sampling.h). The host half (finish, reference) is in sampler.c.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <gpt-oss/types.h>

#include "internal/device.h"
#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/launch-common.h"
#include "internal/sampling.h"
#include "internal/sampling-layout.h"

enum gptoss_status gptoss_sampling_functions_create(
    struct gptoss_device* device, struct gptoss_sampling_functions* functions_out)
{
    if (device == NULL || functions_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampling_functions_create: NULL argument");
    }
    struct gptoss_sampling_functions f;
    memset(&f, 0, sizeof(f));
    struct { const char* name; struct gptoss_function** slot; } table[] = {
        {GPTOSS_SAMPLING_KERNEL_CLEAR_COUNTS, &f.clear_counts},
        {GPTOSS_SAMPLING_KERNEL_COUNT_HISTORY, &f.count_history},
        {GPTOSS_SAMPLING_KERNEL_PREPARE, &f.prepare},
        {GPTOSS_SAMPLING_KERNEL_HISTOGRAM, &f.histogram},
        {GPTOSS_SAMPLING_KERNEL_SELECT, &f.select},
        {GPTOSS_SAMPLING_KERNEL_GATHER_RACE, &f.gather_race},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const enum gptoss_status status = gptoss_function_create(device, table[i].name, table[i].slot);
        if (status != gptoss_status_success) {
            gptoss_sampling_functions_release(&f);
            return status;
        }
    }
    *functions_out = f;
    return gptoss_status_success;
}

void gptoss_sampling_functions_release(struct gptoss_sampling_functions* functions)
{
    if (functions == NULL) {
        return;
    }
    struct gptoss_function** slots[] = {
        &functions->clear_counts, &functions->count_history, &functions->prepare,
        &functions->histogram, &functions->select, &functions->gather_race,
    };
    for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
        if (*slots[i] != NULL) {
            gptoss_function_release(*slots[i]);
            *slots[i] = NULL;
        }
    }
}

/* Every scratch region starts on a 256-byte boundary. */
static size_t align_up(size_t x) { return (size_t) gptoss_launch_align_up(x, 256); }

struct gptoss_sampling_layout gptoss_sampling_layout(uint32_t vocabulary_size)
{
    struct gptoss_sampling_layout l;
    const size_t v = vocabulary_size;
    size_t o = 0;
    l.counts = o;           o = align_up(o + v * sizeof(uint32_t));
    l.present = o;          o = align_up(o + v * sizeof(uint32_t));
    l.scaled = o;           o = align_up(o + v * sizeof(float));
    l.partials = o;         o = align_up(o + GPTOSS_SAMPLING_MAX_CHUNKS * sizeof(struct gptoss_sampling_partial));
    l.histogram_counts = o; o = align_up(o + (size_t) GPTOSS_SAMPLING_MAX_CHUNKS * GPTOSS_SAMPLING_NUM_BUCKETS * sizeof(uint32_t));
    l.histogram_mass = o;   o = align_up(o + (size_t) GPTOSS_SAMPLING_MAX_CHUNKS * GPTOSS_SAMPLING_NUM_BUCKETS * sizeof(float));
    l.selection = o;        o = align_up(o + sizeof(struct gptoss_sampling_selection));
    l.candidate_count = o;  o = align_up(o + sizeof(uint32_t));
    l.candidates = o;       o = align_up(o + (v == 0 ? 1 : v) * sizeof(uint32_t));
    l.total = o;
    // Chunks of at least 1024 tokens (so each threadgroup has work), at most MAX_CHUNKS of them.
    uint32_t chunks = (uint32_t) ((v + 1023) / 1024);
    if (chunks == 0) chunks = 1;
    if (chunks > GPTOSS_SAMPLING_MAX_CHUNKS) chunks = GPTOSS_SAMPLING_MAX_CHUNKS;
    l.chunk_size = (uint32_t) ((v + chunks - 1) / chunks);
    if (l.chunk_size == 0) l.chunk_size = 1;
    l.num_chunks = (uint32_t) ((v + l.chunk_size - 1) / l.chunk_size);
    if (l.num_chunks == 0) l.num_chunks = 1;
    return l;
}

size_t gptoss_sampler_scratch_size(uint32_t vocabulary_size)
{
    return gptoss_sampling_layout(vocabulary_size).total;
}

enum gptoss_status gptoss_sampling_scratch_create(
    struct gptoss_device* device, uint32_t vocabulary_size, struct gptoss_sampling_scratch* scratch_out)
{
    if (device == NULL || scratch_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampling_scratch_create: NULL argument");
    }
    if (vocabulary_size == 0) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampling_scratch_create: vocabulary_size is 0");
    }
    struct gptoss_sampling_scratch s;
    memset(&s, 0, sizeof(s));
    const enum gptoss_status status =
        gptoss_buffer_create(device, gptoss_sampler_scratch_size(vocabulary_size), NULL, &s.buffer);
    if (status != gptoss_status_success) {
        return status;
    }
    s.vocabulary_size = vocabulary_size;
    *scratch_out = s;
    return gptoss_status_success;
}

void gptoss_sampling_scratch_release(struct gptoss_sampling_scratch* scratch)
{
    if (scratch != NULL) {
        gptoss_buffer_release(&scratch->buffer);
        memset(scratch, 0, sizeof(*scratch));
    }
}

const float* gptoss_sampling_scratch_scaled_logits(const struct gptoss_sampling_scratch* scratch)
{
    const struct gptoss_sampling_layout l = gptoss_sampling_layout(scratch->vocabulary_size);
    return (const float*) ((const char*) scratch->buffer.ptr + l.scaled);
}

static const char wrapper[] = "gptoss_sampler_encode";

/* Every sampling pass is a 1-D grid of 1-D threadgroups taking the one gptoss_sampling_args struct. */
static enum gptoss_status dispatch(
    struct gptoss_command_buffer* command_buffer, const struct gptoss_function* function,
    uint32_t threadgroups, uint32_t threads, const struct gptoss_sampling_args* args,
    const struct gptoss_kernel_arg* buffers, size_t num_buffers)
{
    return gptoss_launch_encode(wrapper, command_buffer, function, threadgroups, 1, 1, threads, args, sizeof(*args),
                                buffers, num_buffers);
}

enum gptoss_status gptoss_sampler_encode(
    const struct gptoss_sampler* sampler,
    struct gptoss_command_buffer* command_buffer,
    const struct gptoss_sampling_functions* functions,
    const struct gptoss_buffer* logits_buffer, size_t logits_offset,
    uint32_t vocabulary_size,
    const struct gptoss_buffer* history_buffer, size_t history_offset,
    uint32_t history_count, uint32_t num_prompt_tokens,
    uint64_t position,
    struct gptoss_sampling_scratch* scratch)
{
    if (sampler == NULL || command_buffer == NULL || functions == NULL || logits_buffer == NULL || scratch == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_encode: NULL argument");
    }
    if (vocabulary_size == 0 || vocabulary_size != scratch->vocabulary_size) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_encode: vocabulary_size %u does not match the scratch (%u)",
            vocabulary_size, scratch->vocabulary_size);
    }
    if (!gptoss_launch_span_fits(logits_buffer, logits_offset, sizeof(float),
                                 (uint64_t) vocabulary_size * sizeof(float))) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_encode: logits at offset %zu do not hold %u floats in a buffer of %zu bytes",
            logits_offset, vocabulary_size, logits_buffer->size);
    }
    if (history_count != 0 &&
        !gptoss_launch_span_fits(history_buffer, history_offset, sizeof(uint32_t),
                                 (uint64_t) history_count * sizeof(uint32_t))) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_encode: history of %u tokens at offset %zu does not fit its buffer", history_count,
            history_offset);
    }
    if (num_prompt_tokens > history_count) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_encode: num_prompt_tokens %u exceeds history_count %u", num_prompt_tokens, history_count);
    }
    const struct gptoss_sampling_layout l = gptoss_sampling_layout(vocabulary_size);
    struct gptoss_sampling_args args;
    memset(&args, 0, sizeof(args));
    const enum gptoss_sampling_mode mode = gptoss_sampling_mode_of(sampler, vocabulary_size, &args.flags);
    const bool penalties = (args.flags & GPTOSS_SAMPLING_FLAG_PENALTIES) != 0 && history_count != 0;
    if (!penalties) {
        args.flags &= ~GPTOSS_SAMPLING_FLAG_PENALTIES;
    }
    gptoss_sampling_fill_args(sampler, vocabulary_size, position, &args);
    args.chunk_size = l.chunk_size;
    args.num_chunks = l.num_chunks;
    args.history_count = history_count;
    args.num_prompt_tokens = num_prompt_tokens;

    const struct gptoss_buffer* s = &scratch->buffer;
    const struct gptoss_kernel_arg logits = gptoss_launch_buffer_arg(1, logits_buffer, logits_offset);
    const struct gptoss_kernel_arg history = gptoss_launch_buffer_arg(2, history_count != 0 ? history_buffer : s,
                                                                      history_count != 0 ? history_offset : l.counts);
    const struct gptoss_kernel_arg counts = gptoss_launch_buffer_arg(3, s, l.counts);
    const struct gptoss_kernel_arg present = gptoss_launch_buffer_arg(4, s, l.present);
    const struct gptoss_kernel_arg scaled = gptoss_launch_buffer_arg(5, s, l.scaled);
    const struct gptoss_kernel_arg partials = gptoss_launch_buffer_arg(6, s, l.partials);
    const struct gptoss_kernel_arg hist_counts = gptoss_launch_buffer_arg(7, s, l.histogram_counts);
    const struct gptoss_kernel_arg hist_mass = gptoss_launch_buffer_arg(8, s, l.histogram_mass);
    const struct gptoss_kernel_arg selection = gptoss_launch_buffer_arg(9, s, l.selection);
    const struct gptoss_kernel_arg candidate_count = gptoss_launch_buffer_arg(10, s, l.candidate_count);
    const struct gptoss_kernel_arg candidates = gptoss_launch_buffer_arg(11, s, l.candidates);
    /* Threads per threadgroup of each pass, within its pipeline's maximum: every sampling kernel but
     * the histogram (one SIMD group) strides by threads_per_threadgroup and reduces over
     * (threads + 31) / 32 SIMD groups, with ties broken by token id, so any multiple of 32 gives the
     * same result. */
    uint32_t t_clear = 0, t_count = 0, t_prepare = 0, t_gather = 0, t_select = 0;
    enum gptoss_status status;
    if ((status = gptoss_launch_threads(wrapper, functions->prepare, GPTOSS_SAMPLING_THREADS, 32, &t_prepare)) !=
        gptoss_status_success) {
        return status;
    }
    if (penalties &&
        ((status = gptoss_launch_threads(wrapper, functions->clear_counts, GPTOSS_SAMPLING_THREADS, 32, &t_clear)) !=
             gptoss_status_success ||
         (status = gptoss_launch_threads(wrapper, functions->count_history, GPTOSS_SAMPLING_THREADS, 32, &t_count)) !=
             gptoss_status_success)) {
        return status;
    }
    if (mode == gptoss_sampling_mode_truncated &&
        ((status = gptoss_launch_threads(wrapper, functions->gather_race, GPTOSS_SAMPLING_THREADS, 32, &t_gather)) !=
             gptoss_status_success ||
         (status = gptoss_launch_threads(wrapper, functions->select, GPTOSS_SAMPLING_SELECT_THREADS, 32, &t_select)) !=
             gptoss_status_success)) {
        return status;
    }

    scratch->encoded = 0;
    if (penalties) {
        const struct gptoss_kernel_arg b1[] = {counts, present};
        status = dispatch(command_buffer, functions->clear_counts, gptoss_launch_ceil_div(vocabulary_size, t_clear), t_clear, &args,
                          b1, 2);
        if (status != gptoss_status_success) return status;
        const struct gptoss_kernel_arg b2[] = {history, counts, present};
        status = dispatch(command_buffer, functions->count_history, gptoss_launch_ceil_div(history_count, t_count), t_count, &args,
                          b2, 3);
        if (status != gptoss_status_success) return status;
    }
    {
        const struct gptoss_kernel_arg b[] = {logits, counts, present, scaled, partials};
        status = dispatch(command_buffer, functions->prepare, l.num_chunks, t_prepare, &args, b, 5);
        if (status != gptoss_status_success) return status;
    }
    if (mode == gptoss_sampling_mode_truncated) {
        const struct gptoss_kernel_arg b1[] = {scaled, partials, hist_counts, hist_mass};
        status = dispatch(command_buffer, functions->histogram, l.num_chunks, GPTOSS_SAMPLING_HISTOGRAM_THREADS, &args,
                          b1, 4);
        if (status != gptoss_status_success) return status;
        const struct gptoss_kernel_arg b2[] = {partials, hist_counts, hist_mass, selection, candidate_count};
        status = dispatch(command_buffer, functions->select, 1, t_select, &args, b2, 5);
        if (status != gptoss_status_success) return status;
        const struct gptoss_kernel_arg b3[] = {scaled, partials, selection, candidate_count, candidates};
        status = dispatch(command_buffer, functions->gather_race, l.num_chunks, t_gather, &args, b3, 5);
        if (status != gptoss_status_success) return status;
    }
    scratch->encoded = 1;
    scratch->mode = (uint32_t) mode;
    scratch->position = position;
    scratch->log_min_p = args.log_min_p;
    return gptoss_status_success;
}
