#include <stdarg.h>
#include <stdio.h>

#include <gpt-oss.h>

#include "internal/error.h"

/* Long enough for a path plus a precise description; longer messages are truncated. */
#define GPTOSS_ERROR_MESSAGE_CAPACITY 2048

static _Thread_local char last_error_message[GPTOSS_ERROR_MESSAGE_CAPACITY];
static _Thread_local enum gptoss_status last_error_status = gptoss_status_success;

enum gptoss_status gptoss_set_error(enum gptoss_status status, const char* format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error_message, sizeof(last_error_message), format, args);
    va_end(args);
    last_error_status = status;
    return status;
}

void gptoss_clear_error(void) {
    last_error_message[0] = '\0';
    last_error_status = gptoss_status_success;
}

const char* gptoss_get_last_error_message(void) {
    return last_error_message;
}

enum gptoss_status gptoss_get_last_error_status(void) {
    return last_error_status;
}

const char* gptoss_status_to_string(enum gptoss_status status) {
    switch (status) {
        case gptoss_status_success: return "success";
        case gptoss_status_invalid_argument: return "invalid_argument";
        case gptoss_status_unsupported_argument: return "unsupported_argument";
        case gptoss_status_invalid_state: return "invalid_state";
        case gptoss_status_io_error: return "io_error";
        case gptoss_status_insufficient_memory: return "insufficient_memory";
        case gptoss_status_insufficient_resources: return "insufficient_resources";
        case gptoss_status_unsupported_system: return "unsupported_system";
        case gptoss_status_context_overflow: return "context_overflow";
        case gptoss_status_invalid_file: return "invalid_file";
        case gptoss_status_cancelled: return "cancelled";
        case gptoss_status_device_error: return "device_error";
    }
    return "unknown_status";
}
