/*
 * The UUIDs that identify model.bin layout v1 and its special tokens (RFC 4122 byte order, i.e.
 * Python's uuid.UUID(...).bytes). Defined in model-file.c.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPTOSS_UUID_SIZE 16
/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus NUL. */
#define GPTOSS_UUID_STRING_SIZE 37

extern const uint8_t gptoss_model_uuid[GPTOSS_UUID_SIZE];      /* df52dc86-1789-4ed0-a295-66f10508145b */
extern const uint8_t gptoss_layout_uuid[GPTOSS_UUID_SIZE];     /* 229177a8-5775-4268-bfd8-d588b351c56d */
extern const uint8_t gptoss_tokenizer_uuid[GPTOSS_UUID_SIZE];  /* 7401aded-2a95-40cb-b782-9ccebaafe72b */

/* UUID naming each special-token role; index = enum gptoss_special_token (index 0 is all zero). */
extern const uint8_t gptoss_special_token_uuids[gptoss_special_token_max][GPTOSS_UUID_SIZE];

static inline bool gptoss_uuid_equal(const uint8_t* a, const uint8_t* b) {
    return memcmp(a, b, GPTOSS_UUID_SIZE) == 0;
}

static inline bool gptoss_uuid_is_zero(const uint8_t* uuid) {
    for (int i = 0; i < GPTOSS_UUID_SIZE; i++) {
        if (uuid[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Formats uuid as lowercase 8-4-4-4-12 hex into out. Returns out. */
static inline char* gptoss_uuid_format(const uint8_t* uuid, char out[GPTOSS_UUID_STRING_SIZE]) {
    snprintf(out, GPTOSS_UUID_STRING_SIZE,
        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
        uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7],
        uuid[8], uuid[9], uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15]);
    return out;
}

#ifdef __cplusplus
}  // extern "C"
#endif
