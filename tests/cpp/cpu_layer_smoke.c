/*
 * Smallest end-to-end check of a C core + CPU execution layer build (tests/test_build_clang_libcxx.py
 * builds it with clang and libc++): the launch wrappers' self-test, then one truncated sampling step
 * (top-k + top-p + min-p, penalties) over logits with masked (-inf) and NaN entries through the
 * sampling kernels, compared with the host reference. Prints "ok" and exits 0 on success.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <gpt-oss/functions.h>

#include "internal/device.h"
#include "internal/launch-common.h"
#include "internal/sampling.h"

#define V 3001u

static int fail(const char* what) {
    fprintf(stderr, "FAIL %s: %s\n", what, gptoss_get_last_error_message());
    return 1;
}

int main(void) {
    static char report[1 << 16];
    const int failures = gptoss_launch_selftest(report, sizeof(report));
    if (failures != 0) {
        fprintf(stderr, "launch self-test: %d failures\n%s\n", failures, report);
        return 1;
    }

    static float logits[V];
    uint32_t state = 12345u;
    for (uint32_t i = 0; i < V; i++) {
        state = state * 1664525u + 1013904223u;
        logits[i] = (float) (state >> 8) * 0x1.0p-24f * 8.0f - 4.0f;
        if (i % 3 == 0) logits[i] = -INFINITY;  /* masked */
        if (i % 7 == 0) logits[i] = NAN;        /* never sampled */
    }
    logits[2101] = 9.0f;  /* an unmasked maximum */
    const uint32_t history[4] = {7, 2101, 5, 6};

    struct gptoss_device* device = NULL;
    if (gptoss_device_create(gptoss_device_kind_cpu, &device) != gptoss_status_success) return fail("device");
    struct gptoss_sampling_functions functions;
    if (gptoss_sampling_functions_create(device, &functions) != gptoss_status_success) return fail("functions");
    gptoss_sampler_t sampler = NULL;
    if (gptoss_sampler_create(&sampler) != gptoss_status_success ||
        gptoss_sampler_set_temperature(sampler, 0.9f) != gptoss_status_success ||
        gptoss_sampler_set_top_k(sampler, 50) != gptoss_status_success ||
        gptoss_sampler_set_top_p(sampler, 0.9f) != gptoss_status_success ||
        gptoss_sampler_set_min_p(sampler, 0.01f) != gptoss_status_success ||
        gptoss_sampler_set_repetition_penalty(sampler, 1.2f) != gptoss_status_success ||
        gptoss_sampler_set_seed(sampler, 42) != gptoss_status_success) {
        return fail("sampler");
    }
    int bad = 0;
    for (uint64_t position = 0; position < 4; position++) {
        struct gptoss_buffer logits_buffer = {0}, history_buffer = {0};
        struct gptoss_sampling_scratch scratch = {0};
        struct gptoss_command_buffer* cb = NULL;
        uint32_t token = 0, expected = 0;
        if (gptoss_buffer_create(device, sizeof(logits), logits, &logits_buffer) != gptoss_status_success ||
            gptoss_buffer_create(device, sizeof(history), history, &history_buffer) != gptoss_status_success ||
            gptoss_sampling_scratch_create(device, V, &scratch) != gptoss_status_success ||
            gptoss_command_buffer_create(device, &cb) != gptoss_status_success ||
            gptoss_sampler_encode(sampler, cb, &functions, &logits_buffer, 0, V, &history_buffer, 0, 4, 2,
                                  position, &scratch) != gptoss_status_success ||
            gptoss_command_buffer_commit(cb) != gptoss_status_success ||
            gptoss_command_buffer_wait(cb) != gptoss_status_success ||
            gptoss_sampler_finish(sampler, &scratch, &token) != gptoss_status_success ||
            gptoss_sampler_sample_host(sampler, logits, V, history, 4, 2, position, NULL, &expected) != gptoss_status_success) {
            return fail("sampling step");
        }
        if (token != expected || token % 3 == 0 || token % 7 == 0) {
            fprintf(stderr, "position %llu: kernels sampled %u, host reference %u (masked or NaN ids are multiples of 3 or 7)\n",
                    (unsigned long long) position, token, expected);
            bad = 1;
        }
        gptoss_command_buffer_release(cb);
        gptoss_sampling_scratch_release(&scratch);
        gptoss_buffer_release(&history_buffer);
        gptoss_buffer_release(&logits_buffer);
    }
    gptoss_sampler_release(sampler);
    gptoss_sampling_functions_release(&functions);
    gptoss_device_release(device);
    if (bad) return 1;
    printf("ok\n");
    return 0;
}
