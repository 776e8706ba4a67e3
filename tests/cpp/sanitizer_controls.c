/*
 * Controls for a GPTOSS_SANITIZE build (tests/test_sanitizers.py), linked against gptoss and
 * gptoss_cpu_device built with the sanitizers:
 *
 *   sanitizer_controls heap-overflow   reads one byte past a malloc'd block: ASan MUST report it
 *   sanitizer_controls signed-overflow overflows a signed int: UBSan MUST report it (and abort)
 *   sanitizer_controls clean PATH      loads PATH with the C loader (any outcome), prints "ok" and its
 *                                      status: a run of the instrumented core with nothing to report
 *
 * The fiber-switching CPU layer's positive control is tests/cpp/cpu_layer_smoke.c (kernels on fibers).
 * Test-only code: never part of the library.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpt-oss.h>

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s heap-overflow|signed-overflow|clean PATH\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "heap-overflow") == 0) {
        const size_t n = (size_t) (argc + 14);  /* 16 */
        volatile char* block = malloc(n);
        if (block == NULL) return 3;
        memset((char*) block, 1, n);
        const int past_end = block[n];  /* the intentional bug */
        free((char*) block);
        printf("not detected %d\n", past_end);
        return 0;
    }
    if (strcmp(argv[1], "signed-overflow") == 0) {
        volatile int big = INT_MAX - 1 + (argc - 2);  /* INT_MAX - 1 */
        const int sum = big + argc;                      /* INT_MAX + 1: the intentional bug */
        printf("not detected %d\n", sum);
        return 0;
    }
    if (strcmp(argv[1], "clean") == 0 && argc == 3) {
        gptoss_model_t model = NULL;
        const enum gptoss_status status = gptoss_model_create_from_file(argv[2], &model);
        if (status == gptoss_status_success) {
            gptoss_model_release(model);
        }
        printf("ok %d %s\n", (int) status, status == gptoss_status_success ? "" : gptoss_get_last_error_message());
        return 0;
    }
    fprintf(stderr, "unknown control %s\n", argv[1]);
    return 2;
}
