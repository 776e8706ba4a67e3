// The sampler object (public API), the host half of the two-phase sampling step (finish) and the
// host reference implementation. Semantics: internal/sampling.h and gpt-oss/functions.h.
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gpt-oss.h>

#include "internal/error.h"
#include "internal/kernel-args.h"
#include "internal/sampling.h"
#include "internal/sampling-layout.h"

#define NO_ID UINT32_MAX
#define MAX_STOP_TOKENS 1024
#define MIN_TEMPERATURE 1.0e-4f
#define MAX_TEMPERATURE 1.0e4f

/* ---------------------------------------------------------------- the object */

enum gptoss_status gptoss_sampler_create(gptoss_sampler_t* sampler_out)
{
    gptoss_clear_error();
    if (sampler_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_create: sampler_out is NULL");
    }
    *sampler_out = NULL;
    struct gptoss_sampler* s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_sampler_create: out of memory");
    }
    atomic_init(&s->ref_count, 1);
    atomic_flag_clear(&s->lock);
    s->temperature = 1.0f;
    s->top_p = 1.0f;
    s->top_k = 0;
    s->min_p = 0.0f;
    s->repetition_penalty = 1.0f;
    *sampler_out = s;
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_retain(gptoss_sampler_t sampler)
{
    gptoss_clear_error();
    if (sampler == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_retain: sampler is NULL");
    }
    atomic_fetch_add_explicit(&sampler->ref_count, 1, memory_order_relaxed);
    return gptoss_status_success;
}

/* Release does not clear the thread's last error: it is called on cleanup paths after a failure. */
enum gptoss_status gptoss_sampler_release(gptoss_sampler_t sampler)
{
    if (sampler == NULL) {
        return gptoss_status_success;
    }
    if (atomic_fetch_sub_explicit(&sampler->ref_count, 1, memory_order_acq_rel) == 1) {
        free(sampler->stop_tokens);
        free(sampler);
    }
    return gptoss_status_success;
}

static void lock_sampler(struct gptoss_sampler* sampler)
{
    while (atomic_flag_test_and_set_explicit(&sampler->lock, memory_order_acquire)) {
        /* spin: the holder stores a few fields or copies at most MAX_STOP_TOKENS ids */
    }
}

static void unlock_sampler(struct gptoss_sampler* sampler)
{
    atomic_flag_clear_explicit(&sampler->lock, memory_order_release);
}

/* Stores value into *field under the sampler's lock. */
#define STORE_SETTING(field, value) \
    do { \
        lock_sampler(sampler); \
        sampler->field = (value); \
        unlock_sampler(sampler); \
    } while (0)

enum gptoss_status gptoss_sampler_clone(gptoss_sampler_t sampler, gptoss_sampler_t* clone_out)
{
    if (sampler == NULL || clone_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_clone: %s is NULL",
                                sampler == NULL ? "sampler" : "clone_out");
    }
    *clone_out = NULL;
    struct gptoss_sampler* c = calloc(1, sizeof(*c));
    uint32_t* stops = malloc(MAX_STOP_TOKENS * sizeof(uint32_t));
    if (c == NULL || stops == NULL) {
        free(c);
        free(stops);
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_sampler_clone: out of memory");
    }
    lock_sampler(sampler);
    c->temperature = sampler->temperature;
    c->top_p = sampler->top_p;
    c->top_k = sampler->top_k;
    c->min_p = sampler->min_p;
    c->presence_penalty = sampler->presence_penalty;
    c->frequency_penalty = sampler->frequency_penalty;
    c->repetition_penalty = sampler->repetition_penalty;
    c->seed = sampler->seed;
    c->num_stop_tokens = sampler->num_stop_tokens;
    if (sampler->num_stop_tokens != 0) {
        memcpy(stops, sampler->stop_tokens, sampler->num_stop_tokens * sizeof(uint32_t));
    }
    unlock_sampler(sampler);
    atomic_init(&c->ref_count, 1);
    atomic_flag_clear(&c->lock);
    if (c->num_stop_tokens == 0) {
        free(stops);
        stops = NULL;
    }
    c->stop_tokens = stops;
    *clone_out = c;
    return gptoss_status_success;
}

#define CHECK_SAMPLER(fn) \
    do { \
        gptoss_clear_error(); \
        if (sampler == NULL) return gptoss_set_error(gptoss_status_invalid_argument, fn ": sampler is NULL"); \
    } while (0)

enum gptoss_status gptoss_sampler_set_temperature(gptoss_sampler_t sampler, float temperature)
{
    CHECK_SAMPLER("gptoss_sampler_set_temperature");
    if (!(temperature == 0.0f || (temperature >= MIN_TEMPERATURE && temperature <= MAX_TEMPERATURE))) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_set_temperature: temperature %g must be 0 (greedy) or in [%g, %g]",
            (double) temperature, (double) MIN_TEMPERATURE, (double) MAX_TEMPERATURE);
    }
    STORE_SETTING(temperature, temperature);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_top_p(gptoss_sampler_t sampler, float top_p)
{
    CHECK_SAMPLER("gptoss_sampler_set_top_p");
    if (!(top_p > 0.0f && top_p <= 1.0f)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_set_top_p: top_p %g must be in (0, 1]", (double) top_p);
    }
    STORE_SETTING(top_p, top_p);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_top_k(gptoss_sampler_t sampler, uint32_t top_k)
{
    CHECK_SAMPLER("gptoss_sampler_set_top_k");
    STORE_SETTING(top_k, top_k);  // every value is valid: 0 disables, >= vocabulary keeps all
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_min_p(gptoss_sampler_t sampler, float min_p)
{
    CHECK_SAMPLER("gptoss_sampler_set_min_p");
    if (!(min_p >= 0.0f && min_p <= 1.0f)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_set_min_p: min_p %g must be in [0, 1]", (double) min_p);
    }
    STORE_SETTING(min_p, min_p);
    return gptoss_status_success;
}

static enum gptoss_status set_additive_penalty(struct gptoss_sampler* sampler, float* slot, float value,
                                               const char* fn, const char* name)
{
    if (!(value >= -2.0f && value <= 2.0f)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "%s: %s %g must be in [-2, 2]", fn, name, (double) value);
    }
    lock_sampler(sampler);
    *slot = value;
    unlock_sampler(sampler);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_presence_penalty(gptoss_sampler_t sampler, float presence_penalty)
{
    CHECK_SAMPLER("gptoss_sampler_set_presence_penalty");
    return set_additive_penalty(sampler, &sampler->presence_penalty, presence_penalty,
                                "gptoss_sampler_set_presence_penalty", "presence_penalty");
}

enum gptoss_status gptoss_sampler_set_frequency_penalty(gptoss_sampler_t sampler, float frequency_penalty)
{
    CHECK_SAMPLER("gptoss_sampler_set_frequency_penalty");
    return set_additive_penalty(sampler, &sampler->frequency_penalty, frequency_penalty,
                                "gptoss_sampler_set_frequency_penalty", "frequency_penalty");
}

enum gptoss_status gptoss_sampler_set_repetition_penalty(gptoss_sampler_t sampler, float repetition_penalty)
{
    CHECK_SAMPLER("gptoss_sampler_set_repetition_penalty");
    if (!(repetition_penalty >= 0.01f && repetition_penalty <= 100.0f)) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_set_repetition_penalty: repetition_penalty %g must be in [0.01, 100] (1 = off)", (double) repetition_penalty);
    }
    STORE_SETTING(repetition_penalty, repetition_penalty);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_seed(gptoss_sampler_t sampler, uint64_t seed)
{
    CHECK_SAMPLER("gptoss_sampler_set_seed");
    STORE_SETTING(seed, seed);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_set_stop_tokens(gptoss_sampler_t sampler, const uint32_t* tokens, size_t count)
{
    CHECK_SAMPLER("gptoss_sampler_set_stop_tokens");
    if (count != 0 && tokens == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_set_stop_tokens: tokens is NULL with count %zu", count);
    }
    if (count > MAX_STOP_TOKENS) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_set_stop_tokens: %zu stop tokens: at most %d are allowed", count, MAX_STOP_TOKENS);
    }
    uint32_t* copy = NULL;
    if (count != 0) {
        copy = malloc(count * sizeof(uint32_t));
        if (copy == NULL) {
            return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_sampler_set_stop_tokens: out of memory");
        }
        memcpy(copy, tokens, count * sizeof(uint32_t));
    }
    lock_sampler(sampler);
    uint32_t* old = sampler->stop_tokens;
    sampler->stop_tokens = copy;
    sampler->num_stop_tokens = count;
    unlock_sampler(sampler);
    free(old);
    return gptoss_status_success;
}

enum gptoss_status gptoss_sampler_get_stop_tokens(gptoss_sampler_t sampler, const uint32_t** tokens_out, size_t* count_out)
{
    CHECK_SAMPLER("gptoss_sampler_get_stop_tokens");
    if (tokens_out == NULL || count_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_get_stop_tokens: NULL output");
    }
    *tokens_out = sampler->stop_tokens;
    *count_out = sampler->num_stop_tokens;
    return gptoss_status_success;
}

bool gptoss_sampler_is_stop_token(const struct gptoss_sampler* sampler, uint32_t token)
{
    for (size_t i = 0; i < sampler->num_stop_tokens; i++) {
        if (sampler->stop_tokens[i] == token) return true;
    }
    return false;
}

/* ---------------------------------------------------------------- shared arithmetic (== sampling.metal) */

static uint32_t philox_first_word(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t) 0xD2511F53u * c0;
        const uint64_t p1 = (uint64_t) 0xCD9E8D57u * c2;
        const uint32_t hi0 = (uint32_t) (p0 >> 32), lo0 = (uint32_t) p0;
        const uint32_t hi1 = (uint32_t) (p1 >> 32), lo1 = (uint32_t) p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

float gptoss_sampling_uniform(uint64_t seed, uint64_t position, uint32_t id)
{
    const uint32_t r = philox_first_word(id, (uint32_t) position, (uint32_t) (position >> 32), 0,
                                         (uint32_t) seed, (uint32_t) (seed >> 32));
    return (float) (r >> 9) * 0x1.0p-23f + 0x1.0p-24f;
}

static float gumbel(uint64_t seed, uint64_t position, uint32_t id)
{
    return -logf(-logf(gptoss_sampling_uniform(seed, position, id)));
}

static bool better(float a_score, uint32_t a_id, float b_score, uint32_t b_id)
{
    return a_score > b_score || (a_score == b_score && a_id < b_id);
}

enum gptoss_sampling_mode gptoss_sampling_mode_of(
    const struct gptoss_sampler* sampler, uint32_t vocabulary_size, uint32_t* flags_out)
{
    uint32_t flags = 0;
    if (sampler->presence_penalty != 0.0f || sampler->frequency_penalty != 0.0f || sampler->repetition_penalty != 1.0f) {
        flags |= GPTOSS_SAMPLING_FLAG_PENALTIES;
    }
    if (sampler->temperature == 0.0f) {
        *flags_out = flags;
        return gptoss_sampling_mode_greedy;
    }
    if (sampler->top_k != 0 && sampler->top_k < vocabulary_size) flags |= GPTOSS_SAMPLING_FLAG_TOP_K;
    if (sampler->top_p < 1.0f) flags |= GPTOSS_SAMPLING_FLAG_TOP_P;
    if (sampler->min_p > 0.0f) flags |= GPTOSS_SAMPLING_FLAG_MIN_P;
    if ((flags & (GPTOSS_SAMPLING_FLAG_TOP_K | GPTOSS_SAMPLING_FLAG_TOP_P | GPTOSS_SAMPLING_FLAG_MIN_P)) == 0) {
        *flags_out = flags | GPTOSS_SAMPLING_FLAG_RACE;
        return gptoss_sampling_mode_race;
    }
    *flags_out = flags;
    return gptoss_sampling_mode_truncated;
}

void gptoss_sampling_fill_args(
    const struct gptoss_sampler* sampler, uint32_t vocabulary_size, uint64_t position,
    struct gptoss_sampling_args* args)
{
    args->vocabulary_size = vocabulary_size;
    args->top_k = sampler->top_k;
    args->seed_lo = (uint32_t) sampler->seed;
    args->seed_hi = (uint32_t) (sampler->seed >> 32);
    args->position_lo = (uint32_t) position;
    args->position_hi = (uint32_t) (position >> 32);
    args->inv_temperature = sampler->temperature == 0.0f ? 1.0f : 1.0f / sampler->temperature;
    args->presence_penalty = sampler->presence_penalty;
    args->frequency_penalty = sampler->frequency_penalty;
    args->repetition_penalty = sampler->repetition_penalty;
    args->inv_repetition_penalty = 1.0f / sampler->repetition_penalty;
    args->top_p = sampler->top_p;
    args->log_min_p = sampler->min_p > 0.0f ? logf(sampler->min_p) : -INFINITY;
}

static float scaled_logit(const struct gptoss_sampling_args* args, float logit, uint32_t count, uint32_t present)
{
    float l = logit;
    if (isnan(l)) return -INFINITY;
    if ((args->flags & GPTOSS_SAMPLING_FLAG_PENALTIES) != 0) {
        if (present != 0) {
            l = l > 0.0f ? l * args->inv_repetition_penalty : l * args->repetition_penalty;
        }
        if (count != 0) {
            l = l - fmaf(args->frequency_penalty, (float) count, args->presence_penalty);
        }
    }
    return l * args->inv_temperature;
}

/* ---------------------------------------------------------------- exact cuts over a sorted list */

struct candidate { float z; uint32_t id; };

static int by_z_desc_id_asc(const void* a, const void* b)
{
    const struct candidate* x = a;
    const struct candidate* y = b;
    if (x->z > y->z) return -1;
    if (x->z < y->z) return 1;
    return x->id < y->id ? -1 : (x->id > y->id ? 1 : 0);
}

/*
 * The cuts over sorted tokens c[0..n) that follow `count_before` tokens of mass `mass_before` (all
 * kept), within a vocabulary of total_count tokens and total mass total_mass. Returns how many of
 * c[] are kept. Masses are exp(z - max). Order: top-k, then top-p on the renormalised top-k mass,
 * then min-p (relative to the max, unaffected by the renormalisation).
 */
static size_t kept_prefix(const struct gptoss_sampler* sampler, uint32_t flags, float max, float log_min_p,
                          const struct candidate* c, size_t n, uint32_t count_before, double mass_before,
                          uint32_t total_count, double total_mass)
{
    size_t keep = n;
    double s = total_mass;
    if ((flags & GPTOSS_SAMPLING_FLAG_TOP_K) != 0 && sampler->top_k < total_count) {
        const size_t room = sampler->top_k > count_before ? sampler->top_k - count_before : 0;
        keep = room < n ? room : n;
        s = mass_before;
        for (size_t j = 0; j < keep; j++) s += (double) expf(c[j].z - max);
    }
    if ((flags & GPTOSS_SAMPLING_FLAG_TOP_P) != 0) {
        const double target = (double) sampler->top_p * s;
        double cum = mass_before;
        size_t j = 0;
        while (j < keep && cum < target) {
            cum += (double) expf(c[j].z - max);
            j++;
        }
        keep = j;
    }
    if ((flags & GPTOSS_SAMPLING_FLAG_MIN_P) != 0) {
        const float threshold = max + log_min_p;
        size_t j = 0;
        while (j < keep && c[j].z >= threshold) j++;
        keep = j;
    }
    if (keep == 0 && count_before == 0 && n != 0) keep = 1;  // the most likely token is always kept
    return keep;
}

/* ---------------------------------------------------------------- phase 2 */

enum gptoss_status gptoss_sampler_finish(
    const struct gptoss_sampler* sampler, struct gptoss_sampling_scratch* scratch, uint32_t* token_out)
{
    if (sampler == NULL || scratch == NULL || token_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_finish: NULL argument");
    }
    if (!scratch->encoded) {
        return gptoss_set_error(gptoss_status_invalid_state, "gptoss_sampler_finish: no sampling step was encoded");
    }
    scratch->encoded = 0;
    const struct gptoss_sampling_layout l = gptoss_sampling_layout(scratch->vocabulary_size);
    const char* base = scratch->buffer.ptr;
    const struct gptoss_sampling_partial* partials = (const void*) (base + l.partials);
    float best_score = -INFINITY;
    uint32_t best_id = NO_ID;
    if (scratch->mode == gptoss_sampling_mode_greedy) {
        for (uint32_t g = 0; g < l.num_chunks; g++) {
            if (partials[g].argmax != NO_ID && better(partials[g].max, partials[g].argmax, best_score, best_id)) {
                best_score = partials[g].max;
                best_id = partials[g].argmax;
            }
        }
    } else {
        for (uint32_t g = 0; g < l.num_chunks; g++) {
            if (partials[g].race_id != NO_ID && better(partials[g].race_score, partials[g].race_id, best_score, best_id)) {
                best_score = partials[g].race_score;
                best_id = partials[g].race_id;
            }
        }
    }
    if (scratch->mode == gptoss_sampling_mode_truncated) {
        const struct gptoss_sampling_selection* sel = (const void*) (base + l.selection);
        const uint32_t n = *(const uint32_t*) (base + l.candidate_count);
        const uint32_t* ids = (const uint32_t*) (base + l.candidates);
        const float* z = (const float*) (base + l.scaled);
        if (n > scratch->vocabulary_size) {
            return gptoss_set_error(gptoss_status_device_error, "gptoss_sampler_finish: %u candidates exceed the vocabulary", n);
        }
        struct candidate* c = malloc((n == 0 ? 1 : n) * sizeof(*c));
        if (c == NULL) {
            return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_sampler_finish: out of memory");
        }
        for (uint32_t j = 0; j < n; j++) {
            c[j].id = ids[j];
            c[j].z = z[ids[j]];
        }
        qsort(c, n, sizeof(*c), by_z_desc_id_asc);
        uint32_t flags;
        (void) gptoss_sampling_mode_of(sampler, scratch->vocabulary_size, &flags);
        const size_t keep = kept_prefix(sampler, flags, sel->max, scratch->log_min_p, c, n, sel->count_before,
                                        (double) sel->mass_before, sel->total_count, (double) sel->total_mass);
        for (size_t j = 0; j < keep; j++) {
            const float s = c[j].z + gumbel(sampler->seed, scratch->position, c[j].id);
            if (better(s, c[j].id, best_score, best_id)) {
                best_score = s;
                best_id = c[j].id;
            }
        }
        free(c);
    }
    if (best_id == NO_ID) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_finish: every logit is -inf or NaN: nothing can be sampled");
    }
    *token_out = best_id;
    return gptoss_status_success;
}

/* ---------------------------------------------------------------- host reference */

enum gptoss_status gptoss_sampler_sample_host(
    const struct gptoss_sampler* sampler,
    const float* logits, uint32_t vocabulary_size,
    const uint32_t* history, uint32_t history_count, uint32_t num_prompt_tokens,
    uint64_t position,
    float* scaled_logits_out,
    uint32_t* token_out)
{
    if (sampler == NULL || logits == NULL || token_out == NULL || (history_count != 0 && history == NULL)) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_sampler_sample_host: NULL argument");
    }
    if (vocabulary_size == 0 || num_prompt_tokens > history_count) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_sample_host: vocabulary_size %u, num_prompt_tokens %u > history_count %u",
            vocabulary_size, num_prompt_tokens, history_count);
    }
    struct gptoss_sampling_args args;
    memset(&args, 0, sizeof(args));
    const enum gptoss_sampling_mode mode = gptoss_sampling_mode_of(sampler, vocabulary_size, &args.flags);
    if (history_count == 0) args.flags &= ~GPTOSS_SAMPLING_FLAG_PENALTIES;
    gptoss_sampling_fill_args(sampler, vocabulary_size, position, &args);

    uint32_t* counts = NULL;
    uint32_t* present = NULL;
    struct candidate* c = malloc(vocabulary_size * sizeof(*c));
    if ((args.flags & GPTOSS_SAMPLING_FLAG_PENALTIES) != 0) {
        counts = calloc(vocabulary_size, sizeof(uint32_t));
        present = calloc(vocabulary_size, sizeof(uint32_t));
    }
    if (c == NULL || ((args.flags & GPTOSS_SAMPLING_FLAG_PENALTIES) != 0 && (counts == NULL || present == NULL))) {
        free(c); free(counts); free(present);
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_sampler_sample_host: out of memory");
    }
    if (counts != NULL) {
        for (uint32_t j = 0; j < history_count; j++) {
            const uint32_t t = history[j];
            if (t >= vocabulary_size) continue;
            present[t]++;
            if (j >= num_prompt_tokens) counts[t]++;
        }
    }
    size_t n = 0;
    for (uint32_t i = 0; i < vocabulary_size; i++) {
        const float zi = scaled_logit(&args, logits[i], counts ? counts[i] : 0, present ? present[i] : 0);
        if (scaled_logits_out != NULL) scaled_logits_out[i] = zi;
        if (zi != -INFINITY) {
            c[n].z = zi;
            c[n].id = i;
            n++;
        }
    }
    free(counts);
    free(present);
    if (n == 0) {
        free(c);
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_sampler_sample_host: every logit is -inf or NaN: nothing can be sampled");
    }
    float best_score = -INFINITY;
    uint32_t best_id = NO_ID;
    if (mode == gptoss_sampling_mode_greedy) {
        for (size_t j = 0; j < n; j++) {
            if (better(c[j].z, c[j].id, best_score, best_id)) { best_score = c[j].z; best_id = c[j].id; }
        }
    } else {
        size_t keep = n;
        if (mode == gptoss_sampling_mode_truncated) {
            qsort(c, n, sizeof(*c), by_z_desc_id_asc);
            const float max = c[0].z;
            double total = 0.0;
            for (size_t j = 0; j < n; j++) total += (double) expf(c[j].z - max);
            keep = kept_prefix(sampler, args.flags, max, args.log_min_p, c, n, 0, 0.0, (uint32_t) n, total);
        }
        for (size_t j = 0; j < keep; j++) {
            const float s = c[j].z + gumbel(sampler->seed, position, c[j].id);
            if (better(s, c[j].id, best_score, best_id)) { best_score = s; best_id = c[j].id; }
        }
    }
    free(c);
    *token_out = best_id;
    return gptoss_status_success;
}
