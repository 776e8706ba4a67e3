/*
 * model.bin layout v1: parsing and validation over a byte range (see internal/model-file.h).
 *
 * Every read is preceded by a check that the bytes lie inside the range, and every size is
 * computed with overflow-checked 64-bit arithmetic, so a hostile header can neither make us read
 * outside the mapping nor wrap a size into a small number.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <gpt-oss.h>

#include "internal/error.h"
#include "internal/model-file.h"
#include "internal/uuid.h"

const uint8_t gptoss_model_uuid[GPTOSS_UUID_SIZE] = {
    0xDF, 0x52, 0xDC, 0x86, 0x17, 0x89, 0x4E, 0xD0, 0xA2, 0x95, 0x66, 0xF1, 0x05, 0x08, 0x14, 0x5B};
const uint8_t gptoss_layout_uuid[GPTOSS_UUID_SIZE] = {
    0x22, 0x91, 0x77, 0xA8, 0x57, 0x75, 0x42, 0x68, 0xBF, 0xD8, 0xD5, 0x88, 0xB3, 0x51, 0xC5, 0x6D};
const uint8_t gptoss_tokenizer_uuid[GPTOSS_UUID_SIZE] = {
    0x74, 0x01, 0xAD, 0xED, 0x2A, 0x95, 0x40, 0xCB, 0xB7, 0x82, 0x9C, 0xCE, 0xBA, 0xAF, 0xE7, 0x2B};

const uint8_t gptoss_special_token_uuids[gptoss_special_token_max][GPTOSS_UUID_SIZE] = {
    [gptoss_special_token_return] = {  /* <|return|> f799ff69-1992-43c4-a3d8-d831f475dc75 */
        0xF7, 0x99, 0xFF, 0x69, 0x19, 0x92, 0x43, 0xC4, 0xA3, 0xD8, 0xD8, 0x31, 0xF4, 0x75, 0xDC, 0x75},
    [gptoss_special_token_start] = {  /* <|start|> 55a77c2f-8a01-4c54-8ac2-313bfc7e208d */
        0x55, 0xA7, 0x7C, 0x2F, 0x8A, 0x01, 0x4C, 0x54, 0x8A, 0xC2, 0x31, 0x3B, 0xFC, 0x7E, 0x20, 0x8D},
    [gptoss_special_token_message] = {  /* <|message|> 16e40431-f47f-4b22-b59b-8b278fc30a54 */
        0x16, 0xE4, 0x04, 0x31, 0xF4, 0x7F, 0x4B, 0x22, 0xB5, 0x9B, 0x8B, 0x27, 0x8F, 0xC3, 0x0A, 0x54},
    [gptoss_special_token_end] = {  /* <|end|> fcac2f6d-4705-4f6b-b228-642accac7238 */
        0xFC, 0xAC, 0x2F, 0x6D, 0x47, 0x05, 0x4F, 0x6B, 0xB2, 0x28, 0x64, 0x2A, 0xCC, 0xAC, 0x72, 0x38},
    [gptoss_special_token_refusal] = {  /* <|refusal|> e15ba702-28c4-4292-ab8f-ffa434709128 */
        0xE1, 0x5B, 0xA7, 0x02, 0x28, 0xC4, 0x42, 0x92, 0xAB, 0x8F, 0xFF, 0xA4, 0x34, 0x70, 0x91, 0x28},
    [gptoss_special_token_constrain] = {  /* <|constrain|> c0bb14c7-6022-49da-ad08-792d67e8b470 */
        0xC0, 0xBB, 0x14, 0xC7, 0x60, 0x22, 0x49, 0xDA, 0xAD, 0x08, 0x79, 0x2D, 0x67, 0xE8, 0xB4, 0x70},
    [gptoss_special_token_channel] = {  /* <|channel|> fd3dda11-c8ab-4033-876e-d93deb172c93 */
        0xFD, 0x3D, 0xDA, 0x11, 0xC8, 0xAB, 0x40, 0x33, 0x87, 0x6E, 0xD9, 0x3D, 0xEB, 0x17, 0x2C, 0x93},
    [gptoss_special_token_call] = {  /* <|call|> 1220f796-e388-4de5-b487-fe2eb5fe03c0 */
        0x12, 0x20, 0xF7, 0x96, 0xE3, 0x88, 0x4D, 0xE5, 0xB4, 0x87, 0xFE, 0x2E, 0xB5, 0xFE, 0x03, 0xC0},
    [gptoss_special_token_untrusted] = {  /* <|untrusted|> 07d7da55-b346-4cff-8b37-7cefacf8a3e8 */
        0x07, 0xD7, 0xDA, 0x55, 0xB3, 0x46, 0x4C, 0xFF, 0x8B, 0x37, 0x7C, 0xEF, 0xAC, 0xF8, 0xA3, 0xE8},
    [gptoss_special_token_end_untrusted] = {  /* <|end_untrusted|> f265bd9c-c717-469e-a447-920687d65d90 */
        0xF2, 0x65, 0xBD, 0x9C, 0xC7, 0x17, 0x46, 0x9E, 0xA4, 0x47, 0x92, 0x06, 0x87, 0xD6, 0x5D, 0x90},
};

static const char model_file_magic[GPTOSS_MODEL_FILE_MAGIC_SIZE] = "GPT-OSS v1.0\0\0\0";

/*
 * The one pre-tokenizer this runtime implements: tiktoken's o200k pat_str (o200k_base and
 * o200k_harmony; python/gpt_oss_metal/vocab.py O200K_PATTERN), which the official converter
 * writes (o200k_base._pat_str) and bpe.c hard-wires. A file with another regex is refused, so
 * Tokenizer.encode (tiktoken with the file's regex) and the C encoder agree by construction.
 */
const char gptoss_o200k_pattern[] =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*"
    "|\\s*[\\r\\n]+"
    "|\\s+(?!\\S)"
    "|\\s+";

static const char* const block_tensor_names[gptoss_block_tensor_count] = {
    "attn_norm", "qkv_weight", "qkv_bias", "sinks", "out_weight", "out_bias",
    "mlp_norm", "gate_weight", "gate_bias",
};

static const char* const expert_tensor_names[gptoss_expert_tensor_count] = {
    "mlp1_blocks", "mlp1_scales", "mlp1_bias", "mlp2_blocks", "mlp2_scales", "mlp2_bias",
};

static const char* const special_token_role_names[gptoss_special_token_max] = {
    [gptoss_special_token_return] = "return",
    [gptoss_special_token_start] = "start",
    [gptoss_special_token_message] = "message",
    [gptoss_special_token_end] = "end",
    [gptoss_special_token_refusal] = "refusal",
    [gptoss_special_token_constrain] = "constrain",
    [gptoss_special_token_channel] = "channel",
    [gptoss_special_token_call] = "call",
    [gptoss_special_token_untrusted] = "untrusted",
    [gptoss_special_token_end_untrusted] = "end_untrusted",
};

const char* gptoss_block_tensor_name(enum gptoss_block_tensor tensor) {
    return (unsigned) tensor < gptoss_block_tensor_count ? block_tensor_names[tensor] : "?";
}

const char* gptoss_expert_tensor_name(enum gptoss_expert_tensor tensor) {
    return (unsigned) tensor < gptoss_expert_tensor_count ? expert_tensor_names[tensor] : "?";
}

const char* gptoss_special_token_role_name(enum gptoss_special_token role) {
    if (role <= gptoss_special_token_invalid || role >= gptoss_special_token_max) {
        return NULL;
    }
    return special_token_role_names[role];
}

/* ---- Little-endian reads (the file format is little-endian whatever the host) ---- */

static uint16_t read_u16(const uint8_t* p) {
    return (uint16_t) (p[0] | (p[1] << 8));
}

static uint32_t read_u32(const uint8_t* p) {
    return (uint32_t) p[0] | ((uint32_t) p[1] << 8) | ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static float read_f32(const uint8_t* p) {
    const uint32_t bits = read_u32(p);
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

/* ---- Overflow-checked arithmetic: a failed step sets *overflow and the result is unused ---- */

static uint64_t add_u64(uint64_t a, uint64_t b, bool* overflow) {
    uint64_t result;
    if (__builtin_add_overflow(a, b, &result)) {
        *overflow = true;
    }
    return result;
}

static uint64_t mul_u64(uint64_t a, uint64_t b, bool* overflow) {
    uint64_t result;
    if (__builtin_mul_overflow(a, b, &result)) {
        *overflow = true;
    }
    return result;
}

/* alignment is a power of two */
static uint64_t align_up_u64(uint64_t value, uint64_t alignment, bool* overflow) {
    return add_u64(value, alignment - 1, overflow) & ~(alignment - 1);
}

/* ---- Error helpers ---- */

static enum gptoss_status truncated(
    const char* name, size_t size, const char* what, uint64_t offset, uint64_t length)
{
    return gptoss_set_error(gptoss_status_invalid_file,
        "%s: file is truncated: %s needs bytes [%" PRIu64 ", %" PRIu64 ") but the file has only %zu bytes",
        name, what, offset, offset + length, size);
}

/* Is [offset, offset + length) inside a range of `size` bytes? (overflow-safe) */
static bool in_range(size_t size, uint64_t offset, uint64_t length) {
    return offset <= (uint64_t) size && length <= (uint64_t) size - offset;
}

/* ---- Header ---- */

static enum gptoss_status check_uuid(
    const char* name, const uint8_t* data, size_t size, uint64_t offset, const uint8_t* expected, const char* what)
{
    if (!in_range(size, offset, GPTOSS_UUID_SIZE)) {
        char section[64];
        snprintf(section, sizeof(section), "the %s", what);
        return truncated(name, size, section, offset, GPTOSS_UUID_SIZE);
    }
    if (!gptoss_uuid_equal(data + offset, expected)) {
        char found[GPTOSS_UUID_STRING_SIZE], wanted[GPTOSS_UUID_STRING_SIZE];
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: %s at offset %" PRIu64 " is %s, expected %s (not a gpt-oss model.bin layout v1)",
            name, what, offset, gptoss_uuid_format(data + offset, found), gptoss_uuid_format(expected, wanted));
    }
    return gptoss_status_success;
}

/* Offset of header field number `index` (0..16). */
static uint32_t header_field_offset(uint32_t index) {
    return GPTOSS_MODEL_HEADER_OFFSET + 4 * index;
}

static enum gptoss_status check_u32_field(
    const char* name, const char* field, uint32_t index, uint32_t value, uint32_t min, uint32_t max)
{
    if (value < min || value > max) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: model header field %s at offset %" PRIu32 " is %" PRIu32 "; must be in [%" PRIu32 ", %" PRIu32 "]",
            name, field, header_field_offset(index), value, min, max);
    }
    return gptoss_status_success;
}

static enum gptoss_status check_multiple_of_32(const char* name, const char* field, uint32_t index, uint32_t value) {
    if (value % GPTOSS_MXFP4_BLOCK != 0) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: model header field %s at offset %" PRIu32 " is %" PRIu32 "; must be a multiple of %d (MXFP4 block size)",
            name, field, header_field_offset(index), value, GPTOSS_MXFP4_BLOCK);
    }
    return gptoss_status_success;
}

/*
 * Checks a float field is finite and within [min, max], with min excluded if min_exclusive.
 * Pass -INFINITY / INFINITY for an open bound.
 */
static enum gptoss_status check_f32_field(
    const char* name, const char* field, uint32_t index, float value, float min, bool min_exclusive, float max)
{
    const bool bad_low = min_exclusive ? !(value > min) : !(value >= min);
    if (!isfinite(value) || bad_low || value > max) {
        char range[96];
        if (isinf(min) && isinf(max)) {
            snprintf(range, sizeof(range), "a finite number");
        } else if (isinf(max)) {
            snprintf(range, sizeof(range), "a finite number %s %g", min_exclusive ? ">" : ">=", (double) min);
        } else {
            snprintf(range, sizeof(range), "a finite number in %s%g, %g]", min_exclusive ? "(" : "[", (double) min, (double) max);
        }
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: model header field %s at offset %" PRIu32 " is %g; must be %s",
            name, field, header_field_offset(index), (double) value, range);
    }
    return gptoss_status_success;
}

static enum gptoss_status parse_model_header(
    const char* name, const uint8_t* data, struct gptoss_model_header* h)
{
    const uint8_t* p = data + GPTOSS_MODEL_HEADER_OFFSET;
    h->context_length = read_u32(p + 0);
    h->num_blocks = read_u32(p + 4);
    h->num_experts = read_u32(p + 8);
    h->num_active_experts = read_u32(p + 12);
    h->embedding_dim = read_u32(p + 16);
    h->mlp_dim = read_u32(p + 20);
    h->swiglu_limit = read_f32(p + 24);
    h->head_dim = read_u32(p + 28);
    h->num_heads = read_u32(p + 32);
    h->num_kv_heads = read_u32(p + 36);
    h->attention_window = read_u32(p + 40);
    h->rope_theta = read_f32(p + 44);
    h->interpolation_scale = read_f32(p + 48);
    h->yarn_offset = read_f32(p + 52);
    h->yarn_scale = read_f32(p + 56);
    h->yarn_multiplier = read_f32(p + 60);
    h->rmsnorm_epsilon = read_f32(p + 64);

    enum gptoss_status status;
#define CHECK(call) do { if ((status = (call)) != gptoss_status_success) return status; } while (0)
    CHECK(check_u32_field(name, "context_length", 0, h->context_length, 1, GPTOSS_MAX_CONTEXT_LENGTH));
    CHECK(check_u32_field(name, "num_blocks", 1, h->num_blocks, 1, GPTOSS_MAX_BLOCKS));
    CHECK(check_u32_field(name, "num_experts", 2, h->num_experts, 1, GPTOSS_MAX_EXPERTS));
    CHECK(check_u32_field(name, "num_active_experts", 3, h->num_active_experts, 1, h->num_experts));
    CHECK(check_u32_field(name, "embedding_dim", 4, h->embedding_dim, GPTOSS_MXFP4_BLOCK, GPTOSS_MAX_EMBEDDING_DIM));
    CHECK(check_multiple_of_32(name, "embedding_dim", 4, h->embedding_dim));
    CHECK(check_u32_field(name, "mlp_dim", 5, h->mlp_dim, GPTOSS_MXFP4_BLOCK, GPTOSS_MAX_MLP_DIM));
    CHECK(check_multiple_of_32(name, "mlp_dim", 5, h->mlp_dim));
    CHECK(check_f32_field(name, "swiglu_limit", 6, h->swiglu_limit, 0.0f, true, INFINITY));
    CHECK(check_u32_field(name, "head_dim", 7, h->head_dim, 1, GPTOSS_MAX_HEAD_DIM));
    CHECK(check_u32_field(name, "num_heads", 8, h->num_heads, 1, GPTOSS_MAX_HEADS));
    CHECK(check_u32_field(name, "num_kv_heads", 9, h->num_kv_heads, 1, h->num_heads));
    if (h->num_heads % h->num_kv_heads != 0) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: model header field num_kv_heads at offset %" PRIu32 " is %" PRIu32
            "; must divide num_heads (%" PRIu32 ")",
            name, header_field_offset(9), h->num_kv_heads, h->num_heads);
    }
    CHECK(check_u32_field(name, "attention_window", 10, h->attention_window, 1, GPTOSS_MAX_ATTENTION_WINDOW));
    CHECK(check_f32_field(name, "rope_theta", 11, h->rope_theta, 0.0f, true, INFINITY));
    CHECK(check_f32_field(name, "interpolation_scale", 12, h->interpolation_scale, 0.0f, true, 1.0f));
    CHECK(check_f32_field(name, "yarn_offset", 13, h->yarn_offset, -INFINITY, false, INFINITY));
    CHECK(check_f32_field(name, "yarn_scale", 14, h->yarn_scale, -INFINITY, false, INFINITY));
    CHECK(check_f32_field(name, "yarn_multiplier", 15, h->yarn_multiplier, 0.0f, true, INFINITY));
    CHECK(check_f32_field(name, "rmsnorm_epsilon", 16, h->rmsnorm_epsilon, 0.0f, true, 1.0f));
#undef CHECK
    return gptoss_status_success;
}

static enum gptoss_status check_tokenizer_field(
    const char* name, const char* field, uint32_t index, uint32_t value, uint32_t min, uint32_t max)
{
    if (value < min || value > max) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: tokenizer header field %s at offset %d is %" PRIu32 "; must be in [%" PRIu32 ", %" PRIu32 "]",
            name, field, GPTOSS_TOKENIZER_HEADER_OFFSET + 4 * (int) index, value, min, max);
    }
    return gptoss_status_success;
}

/* ---- Tokenizer section ---- */

static enum gptoss_status check_regex(
    const char* name, const uint8_t* data, uint64_t regex_offset, uint32_t regex_size, uint32_t* length_out)
{
    const uint8_t* regex = data + regex_offset;
    const uint8_t* nul = memchr(regex, 0, regex_size);
    if (nul == NULL) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: regex at offset %" PRIu64 " is not NUL-terminated within its regex_size of %" PRIu32 " bytes",
            name, regex_offset, regex_size);
    }
    const uint32_t length = (uint32_t) (nul - regex);
    if (length == 0) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: regex at offset %" PRIu64 " is empty", name, regex_offset);
    }
    for (uint32_t i = 0; i < length; i++) {
        if (regex[i] < 0x20 || regex[i] > 0x7E) {
            return gptoss_set_error(gptoss_status_invalid_file,
                "%s: regex byte 0x%02x at offset %" PRIu64 " is not printable ASCII",
                name, regex[i], regex_offset + i);
        }
    }
    if (length != sizeof(gptoss_o200k_pattern) - 1 || memcmp(regex, gptoss_o200k_pattern, length) != 0) {
        uint32_t at = 0;
        while (at < length && at < sizeof(gptoss_o200k_pattern) - 1 && regex[at] == (uint8_t) gptoss_o200k_pattern[at]) {
            at++;
        }
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: tokenizer field regex at offset %" PRIu64 " (%" PRIu32 " characters) is not the o200k pre-tokenizer "
            "pattern (%zu characters; it differs from character %" PRIu32 " on): this runtime's encoder implements "
            "only o200k's pattern, so a model file must carry exactly it",
            name, regex_offset, length, sizeof(gptoss_o200k_pattern) - 1, at);
    }
    *length_out = length;
    return gptoss_status_success;
}

/* Walks every entry: each u16 length must stay inside the table and the walk must end exactly at its end. */
static enum gptoss_status check_token_table(
    const char* name, const uint8_t* data, uint64_t tokens_offset, uint32_t tokens_size, uint32_t num_text_tokens)
{
    const uint8_t* table = data + tokens_offset;
    uint64_t position = 0;
    for (uint32_t id = 0; id < num_text_tokens; id++) {
        if (position + 2 > tokens_size) {
            return gptoss_set_error(gptoss_status_invalid_file,
                "%s: token table entry %" PRIu32 " at offset %" PRIu64 ": its length field runs past the end of "
                "the token table (tokens_size %" PRIu32 ", table ends at offset %" PRIu64 ")",
                name, id, tokens_offset + position, tokens_size, tokens_offset + tokens_size);
        }
        const uint32_t length = read_u16(table + position);
        if (position + 2 + length > tokens_size) {
            return gptoss_set_error(gptoss_status_invalid_file,
                "%s: token table entry %" PRIu32 " at offset %" PRIu64 " has length %" PRIu32
                ", which points past the end of the token table at offset %" PRIu64,
                name, id, tokens_offset + position, length, tokens_offset + tokens_size);
        }
        position += 2 + length;
    }
    if (position != tokens_size) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: token table walk of %" PRIu32 " entries ends at offset %" PRIu64
            " but tokens_size %" PRIu32 " says it ends at offset %" PRIu64 " (%" PRIu64 " unaccounted bytes)",
            name, num_text_tokens, tokens_offset + position, tokens_size, tokens_offset + tokens_size,
            (uint64_t) tokens_size - position);
    }
    return gptoss_status_success;
}

void gptoss_model_file_index_tokens(
    const struct gptoss_model_file* file, const void* data, uint32_t* entry_offsets)
{
    const uint8_t* table = (const uint8_t*) data + file->layout.tokens_offset;
    uint32_t position = 0;
    for (uint32_t id = 0; id < file->num_text_tokens; id++) {
        entry_offsets[id] = position;
        position += 2 + read_u16(table + position);
    }
    entry_offsets[file->num_text_tokens] = position;
}

static void map_special_tokens(const uint8_t* data, struct gptoss_model_file* file) {
    for (int role = 0; role < gptoss_special_token_max; role++) {
        file->special_token_ids[role] = UINT32_MAX;
    }
    /* Unknown and all-zero slots are tolerated (the original converter left some unnamed); if a
     * role's UUID appears twice, the lowest id wins. */
    for (uint32_t slot = 0; slot < file->num_special_tokens; slot++) {
        const uint8_t* uuid = data + GPTOSS_SPECIAL_UUIDS_OFFSET + (uint64_t) slot * GPTOSS_UUID_SIZE;
        if (gptoss_uuid_is_zero(uuid)) {
            continue;
        }
        for (int role = gptoss_special_token_invalid + 1; role < gptoss_special_token_max; role++) {
            if (gptoss_uuid_equal(uuid, gptoss_special_token_uuids[role]) && file->special_token_ids[role] == UINT32_MAX) {
                file->special_token_ids[role] = file->num_text_tokens + slot;
            }
        }
    }
}

/* ---- Layout ---- */

/* Appends a tensor of `size` bytes at *offset (16-byte aligned) and advances *offset past it. */
static struct gptoss_byte_span place_tensor(uint64_t* offset, uint64_t size, bool* overflow) {
    const struct gptoss_byte_span span = {.offset = *offset, .size = size};
    *offset = align_up_u64(add_u64(*offset, size, overflow), GPTOSS_TENSOR_ALIGNMENT, overflow);
    return span;
}

/* Computes the layout; returns false if any size overflows 64 bits. */
static bool compute_layout(const struct gptoss_model_file* file, struct gptoss_model_layout* layout) {
    const struct gptoss_model_header* h = &file->header;
    bool overflow = false;
    memset(layout, 0, sizeof(*layout));

    layout->special_uuids_offset = GPTOSS_SPECIAL_UUIDS_OFFSET;
    layout->regex_offset = add_u64(GPTOSS_SPECIAL_UUIDS_OFFSET,
        mul_u64(file->num_special_tokens, GPTOSS_UUID_SIZE, &overflow), &overflow);
    layout->tokens_offset = add_u64(layout->regex_offset, file->regex_size, &overflow);
    layout->tokens_end = add_u64(layout->tokens_offset, file->tokens_size, &overflow);
    layout->weights_offset = align_up_u64(layout->tokens_end, GPTOSS_SECTION_ALIGNMENT, &overflow);
    const uint64_t vocab_size = (uint64_t) file->num_text_tokens + file->num_special_tokens;
    layout->vocab_size = (uint32_t) vocab_size;  /* both counts are bounded far below 2^31 */

    const uint64_t d = h->embedding_dim;
    const uint64_t bf16 = 2;
    const uint64_t qkv_dim = mul_u64((uint64_t) h->num_heads + 2 * (uint64_t) h->num_kv_heads, h->head_dim, &overflow);
    uint64_t offset = layout->weights_offset;
    layout->embedding = place_tensor(&offset, mul_u64(mul_u64(vocab_size, d, &overflow), bf16, &overflow), &overflow);

    /* One block's dense tensors, laid out from a relative offset of 0. */
    uint64_t block_size = 0;
    const uint64_t block_tensor_elements[gptoss_block_tensor_count] = {
        [gptoss_block_tensor_attn_norm] = d,
        [gptoss_block_tensor_qkv_weight] = mul_u64(qkv_dim, d, &overflow),
        [gptoss_block_tensor_qkv_bias] = qkv_dim,
        [gptoss_block_tensor_sinks] = h->num_heads,
        [gptoss_block_tensor_out_weight] = mul_u64(d, mul_u64(h->num_heads, h->head_dim, &overflow), &overflow),
        [gptoss_block_tensor_out_bias] = d,
        [gptoss_block_tensor_mlp_norm] = d,
        [gptoss_block_tensor_gate_weight] = mul_u64(h->num_experts, d, &overflow),
        [gptoss_block_tensor_gate_bias] = h->num_experts,
    };
    for (int t = 0; t < gptoss_block_tensor_count; t++) {
        layout->block_tensors[t] = place_tensor(&block_size, mul_u64(block_tensor_elements[t], bf16, &overflow), &overflow);
    }
    /* block_size is a multiple of 16 and the blocks start 16-byte aligned, so blocks are regular. */
    layout->blocks_offset = offset;
    layout->block_stride = block_size;
    offset = add_u64(offset, mul_u64(block_size, h->num_blocks, &overflow), &overflow);
    layout->final_norm = place_tensor(&offset, mul_u64(d, bf16, &overflow), &overflow);
    layout->unembedding = place_tensor(&offset, mul_u64(mul_u64(vocab_size, d, &overflow), bf16, &overflow), &overflow);
    layout->dense_end = offset;

    /* One expert, from a relative offset of 0. */
    const uint64_t i2 = 2 * (uint64_t) h->mlp_dim;
    const uint64_t d_blocks = d / GPTOSS_MXFP4_BLOCK;
    const uint64_t i_blocks = h->mlp_dim / GPTOSS_MXFP4_BLOCK;
    const uint64_t expert_tensor_bytes[gptoss_expert_tensor_count] = {
        [gptoss_expert_tensor_mlp1_blocks] = mul_u64(mul_u64(i2, d_blocks, &overflow), 16, &overflow),
        [gptoss_expert_tensor_mlp1_scales] = mul_u64(i2, d_blocks, &overflow),
        [gptoss_expert_tensor_mlp1_bias] = mul_u64(i2, bf16, &overflow),
        [gptoss_expert_tensor_mlp2_blocks] = mul_u64(mul_u64(d, i_blocks, &overflow), 16, &overflow),
        [gptoss_expert_tensor_mlp2_scales] = mul_u64(d, i_blocks, &overflow),
        [gptoss_expert_tensor_mlp2_bias] = mul_u64(d, bf16, &overflow),
    };
    uint64_t expert_size = 0;
    for (int t = 0; t < gptoss_expert_tensor_count; t++) {
        layout->expert_tensors[t] = place_tensor(&expert_size, expert_tensor_bytes[t], &overflow);
    }
    layout->expert_size = expert_size;
    layout->moe_size = mul_u64(expert_size, h->num_experts, &overflow);
    layout->moe_offset = align_up_u64(layout->dense_end, GPTOSS_SECTION_ALIGNMENT, &overflow);
    layout->moe_stride = align_up_u64(layout->moe_size, GPTOSS_SECTION_ALIGNMENT, &overflow);
    layout->file_size = add_u64(
        add_u64(layout->moe_offset, mul_u64(layout->moe_stride, h->num_blocks - 1, &overflow), &overflow),
        layout->moe_size, &overflow);
    return !overflow;
}

uint64_t gptoss_model_layout_block_tensor_offset(
    const struct gptoss_model_layout* layout, uint32_t block, enum gptoss_block_tensor tensor)
{
    return layout->blocks_offset + (uint64_t) block * layout->block_stride + layout->block_tensors[tensor].offset;
}

uint64_t gptoss_model_layout_expert_tensor_offset(
    const struct gptoss_model_layout* layout, uint32_t block, uint32_t expert, enum gptoss_expert_tensor tensor)
{
    return layout->moe_offset + (uint64_t) block * layout->moe_stride + (uint64_t) expert * layout->expert_size +
        layout->expert_tensors[tensor].offset;
}

/* Names (into buffer) the first tensor that does not fit in `size` bytes; the layout needs more than size. */
static void describe_first_cut_tensor(
    const struct gptoss_model_file* file, size_t size, char* buffer, size_t buffer_size, struct gptoss_byte_span* span)
{
    const struct gptoss_model_layout* layout = &file->layout;
    const uint64_t end_of_file = size;
    *span = layout->embedding;
    if (layout->embedding.offset + layout->embedding.size > end_of_file) {
        snprintf(buffer, buffer_size, "embedding");
        return;
    }
    for (uint32_t b = 0; b < file->header.num_blocks; b++) {
        for (int t = 0; t < gptoss_block_tensor_count; t++) {
            span->offset = gptoss_model_layout_block_tensor_offset(layout, b, (enum gptoss_block_tensor) t);
            span->size = layout->block_tensors[t].size;
            if (span->offset + span->size > end_of_file) {
                snprintf(buffer, buffer_size, "block.%" PRIu32 ".%s", b, block_tensor_names[t]);
                return;
            }
        }
    }
    *span = layout->final_norm;
    if (span->offset + span->size > end_of_file) {
        snprintf(buffer, buffer_size, "final_norm");
        return;
    }
    *span = layout->unembedding;
    if (span->offset + span->size > end_of_file) {
        snprintf(buffer, buffer_size, "unembedding");
        return;
    }
    for (uint32_t b = 0; b < file->header.num_blocks; b++) {
        const uint64_t section = layout->moe_offset + (uint64_t) b * layout->moe_stride;
        if (section + layout->moe_size <= end_of_file) {
            continue;  /* this whole section fits */
        }
        for (uint32_t e = 0; e < file->header.num_experts; e++) {
            for (int t = 0; t < gptoss_expert_tensor_count; t++) {
                span->offset = gptoss_model_layout_expert_tensor_offset(layout, b, e, (enum gptoss_expert_tensor) t);
                span->size = layout->expert_tensors[t].size;
                if (span->offset + span->size > end_of_file) {
                    snprintf(buffer, buffer_size, "block.%" PRIu32 ".expert.%" PRIu32 ".%s", b, e, expert_tensor_names[t]);
                    return;
                }
            }
        }
    }
    span->offset = layout->file_size;
    span->size = 0;
    snprintf(buffer, buffer_size, "the weights");
}

/* ---- Limits of the kernels ---- */

static enum gptoss_status unsupported_field(
    const char* name, const char* field, uint32_t index, uint32_t value, const char* supported)
{
    return gptoss_set_error(gptoss_status_unsupported_argument,
        "%s: model header field %s at offset %" PRIu32 " is %" PRIu32 "; the kernels of this runtime support %s",
        name, field, header_field_offset(index), value, supported);
}

/* A well-formed header the kernels cannot run (see GPTOSS_SUPPORTED_* in model-file.h). */
static enum gptoss_status check_kernel_limits(const char* name, const struct gptoss_model_header* h) {
    char supported[160];
    if ((uint64_t) h->num_heads != (uint64_t) h->num_kv_heads * GPTOSS_SUPPORTED_QUERY_HEADS_PER_KV_HEAD) {
        snprintf(supported, sizeof(supported),
            "only num_heads = %d x num_kv_heads (num_kv_heads is %" PRIu32 ", so num_heads must be %" PRIu64 ")",
            GPTOSS_SUPPORTED_QUERY_HEADS_PER_KV_HEAD, h->num_kv_heads,
            (uint64_t) h->num_kv_heads * GPTOSS_SUPPORTED_QUERY_HEADS_PER_KV_HEAD);
        return unsupported_field(name, "num_heads", 8, h->num_heads, supported);
    }
    if (h->num_experts > GPTOSS_SUPPORTED_MAX_EXPERTS) {
        snprintf(supported, sizeof(supported), "1..%d experts", GPTOSS_SUPPORTED_MAX_EXPERTS);
        return unsupported_field(name, "num_experts", 2, h->num_experts, supported);
    }
    if (h->num_active_experts > GPTOSS_SUPPORTED_MAX_ACTIVE_EXPERTS) {
        snprintf(supported, sizeof(supported), "1..%d active experts per token", GPTOSS_SUPPORTED_MAX_ACTIVE_EXPERTS);
        return unsupported_field(name, "num_active_experts", 3, h->num_active_experts, supported);
    }
    if (h->embedding_dim > GPTOSS_SUPPORTED_MAX_EMBEDDING_DIM) {
        snprintf(supported, sizeof(supported), "multiples of %d in %d..%d", GPTOSS_MXFP4_BLOCK, GPTOSS_MXFP4_BLOCK,
            GPTOSS_SUPPORTED_MAX_EMBEDDING_DIM);
        return unsupported_field(name, "embedding_dim", 4, h->embedding_dim, supported);
    }
    return gptoss_status_success;
}

/* ---- Trailing bytes ---- */

/*
 * The file may end exactly after its last tensor (as the official converter writes it) or carry
 * zero padding up to the next 16 KiB boundary. More means the header describes less than the
 * file holds; the message says which single header value would describe the file exactly.
 */
static enum gptoss_status check_trailing_bytes(
    const uint8_t* data, size_t size, const char* name, const struct gptoss_model_file* file)
{
    const uint64_t end = file->layout.file_size;
    if ((uint64_t) size == end) {
        return gptoss_status_success;
    }
    const uint64_t padded_end = (end + GPTOSS_SECTION_ALIGNMENT - 1) / GPTOSS_SECTION_ALIGNMENT * GPTOSS_SECTION_ALIGNMENT;
    if ((uint64_t) size <= padded_end) {
        for (uint64_t i = end; i < (uint64_t) size; i++) {
            if (data[i] != 0) {
                return gptoss_set_error(gptoss_status_invalid_file,
                    "%s: byte %" PRIu64 " after the end of the last tensor (offset %" PRIu64 ") is 0x%02x; only zero "
                    "padding up to the next 16 KiB boundary may follow the weights", name, i, end, data[i]);
            }
        }
        return gptoss_status_success;
    }
    /* Which single header value would make the layout end where the file does? */
    char hint[192] = "";
    struct gptoss_model_file trial = *file;
    static const struct { const char* field; size_t offset; uint32_t max; } candidates[] = {
        {"num_blocks", offsetof(struct gptoss_model_header, num_blocks), GPTOSS_MAX_BLOCKS},
        {"num_experts", offsetof(struct gptoss_model_header, num_experts), GPTOSS_MAX_EXPERTS},
    };
    for (size_t c = 0; c < sizeof(candidates) / sizeof(candidates[0]) && hint[0] == '\0'; c++) {
        trial.header = file->header;
        uint32_t* field = (uint32_t*) ((char*) &trial.header + candidates[c].offset);
        const uint32_t stored = *field;
        for (uint32_t value = stored + 1; value <= candidates[c].max; value++) {
            *field = value;
            struct gptoss_model_layout layout;
            if (!compute_layout(&trial, &layout) || layout.file_size > (uint64_t) size) {
                break;  /* the layout only grows with the value */
            }
            const uint64_t padded = (layout.file_size + GPTOSS_SECTION_ALIGNMENT - 1) / GPTOSS_SECTION_ALIGNMENT *
                GPTOSS_SECTION_ALIGNMENT;
            if ((uint64_t) size <= padded) {
                snprintf(hint, sizeof(hint), "; with %s %" PRIu32 " instead of %" PRIu32 " the layout would match the file",
                    candidates[c].field, value, stored);
                break;
            }
        }
    }
    return gptoss_set_error(gptoss_status_invalid_file,
        "%s: the file has %zu bytes but the layout computed from its header ends at %" PRIu64 " (%" PRIu64
        " bytes unaccounted for): the header fields num_blocks (%" PRIu32 "), num_experts (%" PRIu32 "), "
        "embedding_dim (%" PRIu32 "), mlp_dim (%" PRIu32 "), num_heads (%" PRIu32 ") or num_kv_heads (%" PRIu32 ") "
        "do not describe this file%s",
        name, size, end, (uint64_t) size - end, file->header.num_blocks, file->header.num_experts,
        file->header.embedding_dim, file->header.mlp_dim, file->header.num_heads, file->header.num_kv_heads, hint);
}

/* ---- Entry point ---- */

enum gptoss_status gptoss_model_file_parse(
    const void* data_ptr, size_t size, const char* name, struct gptoss_model_file* file)
{
    const uint8_t* data = (const uint8_t*) data_ptr;
    enum gptoss_status status;
    memset(file, 0, sizeof(*file));

    if (size == 0) {
        return gptoss_set_error(gptoss_status_invalid_file, "%s: file is empty (0 bytes); not a gpt-oss model.bin", name);
    }
    if (size < GPTOSS_MODEL_FILE_MAGIC_SIZE) {
        return truncated(name, size, "the magic", 0, GPTOSS_MODEL_FILE_MAGIC_SIZE);
    }
    if (memcmp(data, model_file_magic, GPTOSS_MODEL_FILE_MAGIC_SIZE) != 0) {
        char shown[4 * GPTOSS_MODEL_FILE_MAGIC_SIZE + 1];
        size_t n = 0;
        for (int i = 0; i < GPTOSS_MODEL_FILE_MAGIC_SIZE; i++) {
            n += (size_t) snprintf(shown + n, sizeof(shown) - n, (data[i] >= 0x20 && data[i] < 0x7F) ? "%c" : "\\x%02x", data[i]);
        }
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: bad magic at offset 0: \"%s\", expected \"GPT-OSS v1.0\" followed by 4 zero bytes "
            "(not a gpt-oss model.bin)", name, shown);
    }
    if ((status = check_uuid(name, data, size, GPTOSS_MODEL_UUID_OFFSET, gptoss_model_uuid, "model UUID")) != gptoss_status_success) {
        return status;
    }
    if (!in_range(size, GPTOSS_MODEL_HEADER_OFFSET, GPTOSS_MODEL_HEADER_SIZE)) {
        return truncated(name, size, "the model header", GPTOSS_MODEL_HEADER_OFFSET, GPTOSS_MODEL_HEADER_SIZE);
    }
    if ((status = parse_model_header(name, data, &file->header)) != gptoss_status_success) {
        return status;
    }
    if ((status = check_uuid(name, data, size, GPTOSS_LAYOUT_UUID_OFFSET, gptoss_layout_uuid, "layout UUID")) != gptoss_status_success) {
        return status;
    }
    if ((status = check_uuid(name, data, size, GPTOSS_TOKENIZER_UUID_OFFSET, gptoss_tokenizer_uuid, "tokenizer UUID")) != gptoss_status_success) {
        return status;
    }
    if (!in_range(size, GPTOSS_TOKENIZER_HEADER_OFFSET, 16)) {
        return truncated(name, size, "the tokenizer header", GPTOSS_TOKENIZER_HEADER_OFFSET, 16);
    }
    file->num_special_tokens = read_u32(data + GPTOSS_TOKENIZER_HEADER_OFFSET);
    file->num_text_tokens = read_u32(data + GPTOSS_TOKENIZER_HEADER_OFFSET + 4);
    file->regex_size = read_u32(data + GPTOSS_TOKENIZER_HEADER_OFFSET + 8);
    file->tokens_size = read_u32(data + GPTOSS_TOKENIZER_HEADER_OFFSET + 12);
    if ((status = check_tokenizer_field(name, "num_special_tokens", 0, file->num_special_tokens, 1, GPTOSS_MAX_SPECIAL_TOKENS)) != gptoss_status_success ||
        (status = check_tokenizer_field(name, "num_text_tokens", 1, file->num_text_tokens, 1, GPTOSS_MAX_TEXT_TOKENS)) != gptoss_status_success ||
        (status = check_tokenizer_field(name, "regex_size", 2, file->regex_size, 1, GPTOSS_MAX_REGEX_SIZE)) != gptoss_status_success)
    {
        return status;
    }
    /* Every entry has at least its 2-byte length field. */
    if ((uint64_t) file->tokens_size < 2 * (uint64_t) file->num_text_tokens) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: tokenizer header field tokens_size at offset %d is %" PRIu32
            "; too small for %" PRIu32 " token entries of at least 2 bytes",
            name, GPTOSS_TOKENIZER_HEADER_OFFSET + 12, file->tokens_size, file->num_text_tokens);
    }

    /* A valid header describing a model the kernels cannot run: say so before judging the rest. */
    if (file->header.head_dim != GPTOSS_SUPPORTED_HEAD_DIM) {
        return gptoss_set_error(gptoss_status_unsupported_argument,
            "%s: model header field head_dim at offset %" PRIu32 " is %" PRIu32 "; this runtime supports only %d",
            name, header_field_offset(7), file->header.head_dim, GPTOSS_SUPPORTED_HEAD_DIM);
    }

    if (!compute_layout(file, &file->layout)) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: the sizes in the header overflow 64-bit arithmetic (hostile or corrupt header)", name);
    }
    const struct gptoss_model_layout* layout = &file->layout;
    char what[128];
    if (!in_range(size, layout->special_uuids_offset, layout->regex_offset - layout->special_uuids_offset)) {
        snprintf(what, sizeof(what), "the special-token UUID table (num_special_tokens %" PRIu32 ")",
            file->num_special_tokens);
        return truncated(name, size, what,
            layout->special_uuids_offset, layout->regex_offset - layout->special_uuids_offset);
    }
    if (!in_range(size, layout->regex_offset, file->regex_size)) {
        snprintf(what, sizeof(what), "the regex (regex_size %" PRIu32 " at offset %d)",
            file->regex_size, GPTOSS_TOKENIZER_HEADER_OFFSET + 8);
        return truncated(name, size, what, layout->regex_offset, file->regex_size);
    }
    if ((status = check_regex(name, data, layout->regex_offset, file->regex_size, &file->regex_length)) != gptoss_status_success) {
        return status;
    }
    if (!in_range(size, layout->tokens_offset, file->tokens_size)) {
        snprintf(what, sizeof(what), "the token table (tokens_size %" PRIu32 " at offset %d)",
            file->tokens_size, GPTOSS_TOKENIZER_HEADER_OFFSET + 12);
        return truncated(name, size, what, layout->tokens_offset, file->tokens_size);
    }
    if ((status = check_token_table(name, data, layout->tokens_offset, file->tokens_size, file->num_text_tokens)) != gptoss_status_success) {
        return status;
    }
    map_special_tokens(data, file);

    if (layout->file_size > (uint64_t) size) {
        char tensor[96];
        struct gptoss_byte_span span;
        describe_first_cut_tensor(file, size, tensor, sizeof(tensor), &span);
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: file is truncated: it has %zu bytes but the weights need %" PRIu64 " (vocabulary %" PRIu32
            " = %" PRIu32 " text + %" PRIu32 " special tokens); tensor %s at bytes [%" PRIu64 ", %" PRIu64 ") is cut off",
            name, size, layout->file_size, layout->vocab_size, file->num_text_tokens, file->num_special_tokens,
            tensor, span.offset, span.offset + span.size);
    }
    if ((status = check_kernel_limits(name, &file->header)) != gptoss_status_success) {
        return status;
    }
    if ((status = check_trailing_bytes(data, size, name, file)) != gptoss_status_success) {
        return status;
    }
    return gptoss_status_success;
}
