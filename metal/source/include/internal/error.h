/* Per-thread last-error recording shared by every layer of the runtime. */
#pragma once

#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
  #define GPTOSS_PRINTF_FORMAT(fmt_index, args_index) __attribute__((format(printf, fmt_index, args_index)))
#else
  #define GPTOSS_PRINTF_FORMAT(fmt_index, args_index)
#endif

/*
 * Records status and a printf-formatted message as this thread's last error and returns status,
 * so failures read `return gptoss_set_error(gptoss_status_invalid_file, "%s: ...", path);`.
 */
enum gptoss_status gptoss_set_error(enum gptoss_status status, const char* format, ...) GPTOSS_PRINTF_FORMAT(2, 3);

/* Clears this thread's last error (called at the start of public entry points). */
void gptoss_clear_error(void);

#ifdef __cplusplus
}  // extern "C"
#endif
