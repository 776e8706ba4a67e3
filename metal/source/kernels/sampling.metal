// Sampling kernels: penalties, temperature, max/argmax, value histogram, cut selection, Gumbel race.
// Semantics and the GPU/host split: metal/source/include/internal/sampling.h.
#include <metal_stdlib>
#include <internal/kernel-args.h>

using namespace metal;

#define NB GPTOSS_SAMPLING_NUM_BUCKETS
#define NO_ID 0xFFFFFFFFu

// Philox-4x32-10 (Salmon et al., SC'11), first output word. Must match the host (sampler.c).
static inline uint philox_first_word(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1) {
    for (uint round = 0; round < 10; round++) {
        const ulong p0 = ulong(0xD2511F53u) * ulong(c0);
        const ulong p1 = ulong(0xCD9E8D57u) * ulong(c2);
        const uint hi0 = uint(p0 >> 32), lo0 = uint(p0);
        const uint hi1 = uint(p1 >> 32), lo1 = uint(p1);
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return c0;
}

// Gumbel noise of token id: -log(-log(u)), u = (2*(r >> 9) + 1) * 2^-24, exactly representable in (0, 1).
// precise:: because u close to 1 gives -log(u) ~ 6e-8, where a fast log has no relative accuracy.
static inline float gumbel(constant gptoss_sampling_args& args, uint id) {
    const uint r = philox_first_word(id, args.position_lo, args.position_hi, 0u, args.seed_lo, args.seed_hi);
    const float u = float(r >> 9) * 0x1.0p-23f + 0x1.0p-24f;
    return -precise::log(-precise::log(u));
}

// NaN and -inf (docs/metal.md, "One numerical contract"): a -inf logit is a masked token and a NaN
// logit is treated as -inf; neither is ever sampled (if every logit is one of them, the host reports
// invalid_argument). The tests below read the IEEE bits instead of using isnan / == -INFINITY, so
// they stay right even if these kernels were compiled with fast math, which assumes no NaN/Inf and
// may fold such comparisons (the build turns fast math off on Metal and on the CPU layer anyway).
static inline bool is_nan_bits(float x) { return (as_type<uint>(x) & 0x7FFFFFFFu) > 0x7F800000u; }
static inline bool is_finite_bits(float x) { return (as_type<uint>(x) & 0x7FFFFFFFu) < 0x7F800000u; }
static inline bool is_minus_inf_bits(float x) { return as_type<uint>(x) == 0xFF800000u; }

// Penalties then temperature. fma and the host-rounded reciprocals make the host reference bit-identical.
static inline float scaled_logit(constant gptoss_sampling_args& args, float logit, uint id,
                                 const device uint* counts, const device uint* present) {
    float l = logit;
    if (is_nan_bits(l)) {
        return -INFINITY;  // a NaN logit is never sampled
    }
    if ((args.flags & GPTOSS_SAMPLING_FLAG_PENALTIES) != 0) {
        if (present[id] != 0) {
            l = l > 0.0f ? l * args.inv_repetition_penalty : l * args.repetition_penalty;
        }
        const uint count = counts[id];
        if (count != 0) {
            l = l - fma(args.frequency_penalty, float(count), args.presence_penalty);
        }
    }
    return l * args.inv_temperature;
}

// (a_score, a_id) better than (b_score, b_id): higher score, ties -> lower id. NO_ID (no token yet,
// score -inf) loses to every token; decided from the ids, not by comparing with the -inf score.
static inline bool better(float a_score, uint a_id, float b_score, uint b_id) {
    if (a_id == NO_ID) return false;
    if (b_id == NO_ID) return true;
    return a_score > b_score || (a_score == b_score && a_id < b_id);
}

static inline void simd_best(thread float& score, thread uint& id) {
    for (ushort offset = 16; offset > 0; offset >>= 1) {
        const float other_score = simd_shuffle_xor(score, offset);
        const uint other_id = simd_shuffle_xor(id, offset);
        if (better(other_score, other_id, score, id)) {
            score = other_score;
            id = other_id;
        }
    }
}

// M (max z) and the bucket scale, from the partials of prepare; the same expression everywhere.
static inline void value_range(constant gptoss_sampling_args& args, const device gptoss_sampling_partial* partials,
                               thread float& max_out, thread float& scale_out) {
    float m = -INFINITY;
    float lowest = INFINITY;
    for (uint g = 0; g < args.num_chunks; g++) {
        m = max(m, partials[g].max);
        lowest = min(lowest, partials[g].min);
    }
    // Buckets span [M - range, M]; below that everything shares the last bucket (exp(-64) ~ 1.6e-28
    // of the max probability). A zero range (all equal) puts every token in bucket 0.
    const float range = min(m - lowest, 64.0f);
    max_out = m;
    scale_out = (range > 0.0f && is_finite_bits(range)) ? float(NB) / range : 0.0f;
}

static inline uint bucket_of(float z, float m, float scale) {
    const float position = min((m - z) * scale, float(NB - 1));
    return uint(max(position, 0.0f));
}

kernel void gptoss_sampling_clear_counts(
    constant gptoss_sampling_args& args [[buffer(0)]],
    device uint* counts [[buffer(3)]],
    device uint* present [[buffer(4)]],
    uint gid [[thread_position_in_grid]])
{
    if (gid < args.vocabulary_size) {
        counts[gid] = 0;
        present[gid] = 0;
    }
}

kernel void gptoss_sampling_count_history(
    constant gptoss_sampling_args& args [[buffer(0)]],
    const device uint* history [[buffer(2)]],
    device atomic_uint* counts [[buffer(3)]],
    device atomic_uint* present [[buffer(4)]],
    uint gid [[thread_position_in_grid]])
{
    if (gid >= args.history_count) {
        return;
    }
    const uint token = history[gid];
    if (token >= args.vocabulary_size) {
        return;  // not a vocabulary token: nothing to penalise
    }
    atomic_fetch_add_explicit(&present[token], 1u, memory_order_relaxed);
    if (gid >= args.num_prompt_tokens) {
        atomic_fetch_add_explicit(&counts[token], 1u, memory_order_relaxed);
    }
}

// One threadgroup per chunk: z into scaled, and the chunk's max / argmax / min (and the race).
kernel void gptoss_sampling_prepare(
    constant gptoss_sampling_args& args [[buffer(0)]],
    const device float* logits [[buffer(1)]],
    const device uint* counts [[buffer(3)]],
    const device uint* present [[buffer(4)]],
    device float* scaled [[buffer(5)]],
    device gptoss_sampling_partial* partials [[buffer(6)]],
    uint tg [[threadgroup_position_in_grid]],
    uint tid [[thread_position_in_threadgroup]],
    uint threads [[threads_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint simd [[simdgroup_index_in_threadgroup]])
{
    threadgroup float tg_max[32];
    threadgroup float tg_min[32];
    threadgroup float tg_score[32];
    threadgroup uint tg_argmax[32];
    threadgroup uint tg_id[32];

    const uint begin = tg * args.chunk_size;
    const uint end = min(begin + args.chunk_size, args.vocabulary_size);
    const bool race = (args.flags & GPTOSS_SAMPLING_FLAG_RACE) != 0;
    float best = -INFINITY, lowest = INFINITY, score = -INFINITY;
    uint best_id = NO_ID, score_id = NO_ID;
    for (uint i = begin + tid; i < end; i += threads) {
        const float z = scaled_logit(args, logits[i], i, counts, present);
        scaled[i] = z;
        if (better(z, i, best, best_id) && !is_minus_inf_bits(z)) {
            best = z;
            best_id = i;
        }
        if (!is_minus_inf_bits(z)) {
            lowest = min(lowest, z);
            if (race) {
                const float s = z + gumbel(args, i);
                if (better(s, i, score, score_id)) {
                    score = s;
                    score_id = i;
                }
            }
        }
    }
    simd_best(best, best_id);
    simd_best(score, score_id);
    lowest = simd_min(lowest);
    if (lane == 0) {
        tg_max[simd] = best; tg_argmax[simd] = best_id; tg_min[simd] = lowest;
        tg_score[simd] = score; tg_id[simd] = score_id;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        const uint num_simd = (threads + 31) / 32;
        for (uint s = 1; s < num_simd; s++) {
            if (better(tg_max[s], tg_argmax[s], best, best_id)) { best = tg_max[s]; best_id = tg_argmax[s]; }
            if (better(tg_score[s], tg_id[s], score, score_id)) { score = tg_score[s]; score_id = tg_id[s]; }
            lowest = min(lowest, tg_min[s]);
        }
        gptoss_sampling_partial p;
        p.max = best; p.argmax = best_id; p.min = lowest;
        p.race_score = score; p.race_id = score_id;
        p.pad0 = 0; p.pad1 = 0; p.pad2 = 0;
        partials[tg] = p;
    }
}

// One SIMD group per chunk: count and mass (sum of exp(z - M)) per bucket. Bucket b is updated only
// by lane b % 32, in token order, so the float sums are the same on every run (no float atomics).
kernel void gptoss_sampling_histogram(
    constant gptoss_sampling_args& args [[buffer(0)]],
    const device float* scaled [[buffer(5)]],
    const device gptoss_sampling_partial* partials [[buffer(6)]],
    device uint* histogram_counts [[buffer(7)]],
    device float* histogram_mass [[buffer(8)]],
    uint tg [[threadgroup_position_in_grid]],
    uint lane [[thread_index_in_simdgroup]])
{
    threadgroup uint counts[NB];
    threadgroup float mass[NB];
    for (uint b = lane; b < NB; b += 32) {
        counts[b] = 0;
        mass[b] = 0.0f;
    }
    simdgroup_barrier(mem_flags::mem_threadgroup);
    float m, scale;
    value_range(args, partials, m, scale);
    const uint begin = tg * args.chunk_size;
    const uint end = min(begin + args.chunk_size, args.vocabulary_size);
    for (uint base = begin; base < end; base += 32) {
        const uint i = base + lane;
        uint b = NB;  // NB: no token (past the chunk, or z = -inf)
        float e = 0.0f;
        if (i < end) {
            const float z = scaled[i];
            if (!is_minus_inf_bits(z)) {
                b = bucket_of(z, m, scale);
                e = precise::exp(z - m);
            }
        }
        for (ushort source = 0; source < 32; source++) {
            const uint sb = simd_shuffle(b, source);
            const float se = simd_shuffle(e, source);
            if (sb < NB && (sb & 31u) == lane) {
                counts[sb] += 1;
                mass[sb] += se;
            }
        }
    }
    simdgroup_barrier(mem_flags::mem_threadgroup);
    for (uint b = lane; b < NB; b += 32) {
        histogram_counts[tg * NB + b] = counts[b];
        histogram_mass[tg * NB + b] = mass[b];
    }
}

// One threadgroup: sums the chunk histograms (chunk order) and finds the bucket range [lo, hi]
// where a cut can fall. Serial scan of NB buckets by one thread: ~NB steps, negligible.
kernel void gptoss_sampling_select(
    constant gptoss_sampling_args& args [[buffer(0)]],
    const device gptoss_sampling_partial* partials [[buffer(6)]],
    const device uint* histogram_counts [[buffer(7)]],
    const device float* histogram_mass [[buffer(8)]],
    device gptoss_sampling_selection* selection [[buffer(9)]],
    device atomic_uint* candidate_count [[buffer(10)]],
    uint tid [[thread_position_in_threadgroup]],
    uint threads [[threads_per_threadgroup]])
{
    threadgroup uint counts[NB];
    threadgroup float mass[NB];
    for (uint b = tid; b < NB; b += threads) {
        uint c = 0;
        float s = 0.0f;
        for (uint g = 0; g < args.num_chunks; g++) {
            c += histogram_counts[g * NB + b];
            s += histogram_mass[g * NB + b];
        }
        counts[b] = c;
        mass[b] = s;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid != 0) {
        return;
    }
    float m, scale;
    value_range(args, partials, m, scale);
    uint total_count = 0;
    float total_mass = 0.0f;
    for (uint b = 0; b < NB; b++) {
        total_count += counts[b];
        total_mass += mass[b];
    }
    uint lo = NB, hi = NB;   // NB: no cut of that kind
    // top-k: bucket k_bucket holds the k-th token; S (the mass top-p renormalises by) lies between the
    // mass before k_bucket and the mass through it.
    uint k_bucket = NB;
    float s_low = total_mass, s_high = total_mass;
    if ((args.flags & GPTOSS_SAMPLING_FLAG_TOP_K) != 0 && args.top_k < total_count) {
        uint c = 0;
        float s = 0.0f;
        for (uint b = 0; b < NB; b++) {
            if (c + counts[b] >= args.top_k) {
                k_bucket = b;
                s_low = s;
                s_high = s + mass[b];
                break;
            }
            c += counts[b];
            s += mass[b];
        }
        lo = min(lo, k_bucket);
        hi = min(hi, k_bucket);
    }
    if ((args.flags & GPTOSS_SAMPLING_FLAG_TOP_P) != 0) {
        // The cut is in the first bucket whose inclusive cumulative mass reaches top_p * S.
        uint p_low = NB, p_high = NB;
        float s = 0.0f;
        uint last_nonempty = 0;
        for (uint b = 0; b < NB; b++) {
            if (counts[b] == 0) continue;
            last_nonempty = b;
            s += mass[b];
            if (p_low == NB && s >= args.top_p * s_low) p_low = b;
            if (p_high == NB && s >= args.top_p * s_high) { p_high = b; break; }
        }
        if (p_low == NB) p_low = last_nonempty;   // rounding: the cut is at the end
        if (p_high == NB) p_high = last_nonempty;
        lo = min(lo, p_low);
        hi = min(hi, p_high);
        if (k_bucket != NB) {
            hi = max(hi, k_bucket);  // the host needs all of k_bucket to compute S exactly
        }
    }
    if ((args.flags & GPTOSS_SAMPLING_FLAG_MIN_P) != 0) {
        const uint b = bucket_of(m + args.log_min_p, m, scale);
        lo = min(lo, b);
        if ((args.flags & (GPTOSS_SAMPLING_FLAG_TOP_K | GPTOSS_SAMPLING_FLAG_TOP_P)) ==
                (GPTOSS_SAMPLING_FLAG_TOP_K | GPTOSS_SAMPLING_FLAG_TOP_P) && k_bucket != NB) {
            hi = min(hi, max(b, k_bucket));
        } else {
            hi = min(hi, b);
        }
    }
    if (hi == NB) hi = NB - 1;
    if (lo > hi) lo = hi;
    uint count_before = 0;
    float mass_before = 0.0f;
    for (uint b = 0; b < lo; b++) {
        count_before += counts[b];
        mass_before += mass[b];
    }
    gptoss_sampling_selection sel;
    sel.max = m; sel.bucket_scale = scale; sel.mass_before = mass_before; sel.total_mass = total_mass;
    sel.lo = lo; sel.hi = hi; sel.count_before = count_before; sel.total_count = total_count;
    *selection = sel;
    atomic_store_explicit(candidate_count, 0u, memory_order_relaxed);
}

// Tokens in buckets < lo race (z + Gumbel) on the GPU; tokens in [lo, hi] become candidates for the
// host's exact cut (their order in the list is arbitrary; the host sorts them).
kernel void gptoss_sampling_gather_race(
    constant gptoss_sampling_args& args [[buffer(0)]],
    const device float* scaled [[buffer(5)]],
    device gptoss_sampling_partial* partials [[buffer(6)]],
    const device gptoss_sampling_selection* selection [[buffer(9)]],
    device atomic_uint* candidate_count [[buffer(10)]],
    device uint* candidates [[buffer(11)]],
    uint tg [[threadgroup_position_in_grid]],
    uint tid [[thread_position_in_threadgroup]],
    uint threads [[threads_per_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint simd [[simdgroup_index_in_threadgroup]])
{
    threadgroup float tg_score[32];
    threadgroup uint tg_id[32];
    const float m = selection->max;
    const float scale = selection->bucket_scale;
    const uint lo = selection->lo;
    const uint hi = selection->hi;
    const uint begin = tg * args.chunk_size;
    const uint end = min(begin + args.chunk_size, args.vocabulary_size);
    float score = -INFINITY;
    uint score_id = NO_ID;
    for (uint i = begin + tid; i < end; i += threads) {
        const float z = scaled[i];
        if (is_minus_inf_bits(z)) continue;
        const uint b = bucket_of(z, m, scale);
        if (b < lo) {
            const float s = z + gumbel(args, i);
            if (better(s, i, score, score_id)) {
                score = s;
                score_id = i;
            }
        } else if (b <= hi) {
            const uint slot = atomic_fetch_add_explicit(candidate_count, 1u, memory_order_relaxed);
            candidates[slot] = i;
        }
    }
    simd_best(score, score_id);
    if (lane == 0) {
        tg_score[simd] = score;
        tg_id[simd] = score_id;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    if (tid == 0) {
        const uint num_simd = (threads + 31) / 32;
        for (uint s = 1; s < num_simd; s++) {
            if (better(tg_score[s], tg_id[s], score, score_id)) { score = tg_score[s]; score_id = tg_id[s]; }
        }
        partials[tg].race_score = score;
        partials[tg].race_id = score_id;
    }
}
