/*
 * model.bin layout v1: parsing and validation over a byte range.
 *
 * Everything here works on a (pointer, size, name) triple and never reads outside
 * [data, data + size), so a truncated or hostile file is reported, not followed. The layout
 * arithmetic is the same as python/gpt_oss_metal/model_bin.py (compute_layout); tests check
 * that the two agree. See docs/model-bin.md for the format.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gpt-oss/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Fixed offsets of the file header. */
#define GPTOSS_MODEL_FILE_MAGIC_SIZE 16
#define GPTOSS_MODEL_UUID_OFFSET 16
#define GPTOSS_MODEL_HEADER_OFFSET 32
#define GPTOSS_MODEL_HEADER_SIZE 68
#define GPTOSS_LAYOUT_UUID_OFFSET 100
#define GPTOSS_TOKENIZER_UUID_OFFSET 116
#define GPTOSS_TOKENIZER_HEADER_OFFSET 132
#define GPTOSS_SPECIAL_UUIDS_OFFSET 148

/* Every tensor starts on a 16-byte boundary; the weights and each MoE section on a 16 KiB one. */
#define GPTOSS_TENSOR_ALIGNMENT 16
#define GPTOSS_SECTION_ALIGNMENT 16384

/* Values per MXFP4 block (16 bytes of nibbles + 1 scale byte). */
#define GPTOSS_MXFP4_BLOCK 32

/*
 * Sanity bounds on header values. They are far above the released models (gpt-oss-120b: 36 blocks,
 * 128 experts, D = I = 2880, 64 heads, context 131072, 200014 tokens) and low enough that no size
 * computed from them comes near 2^64; the size arithmetic is overflow-checked regardless.
 */
#define GPTOSS_MAX_CONTEXT_LENGTH (UINT32_C(1) << 24)
#define GPTOSS_MAX_BLOCKS 1024
#define GPTOSS_MAX_EXPERTS 1024
#define GPTOSS_MAX_EMBEDDING_DIM 65536
#define GPTOSS_MAX_MLP_DIM 65536
#define GPTOSS_MAX_HEAD_DIM 1024
#define GPTOSS_MAX_HEADS 1024
#define GPTOSS_MAX_ATTENTION_WINDOW (UINT32_C(1) << 24)
#define GPTOSS_MAX_SPECIAL_TOKENS 65536
#define GPTOSS_MAX_TEXT_TOKENS (UINT32_C(1) << 24)
#define GPTOSS_MAX_REGEX_SIZE 65536

/* The only head size the kernels implement; other valid files give unsupported_argument. */
#define GPTOSS_SUPPORTED_HEAD_DIM 64

/*
 * What the kernels can run (launch-moe.c, launch-routing.c, launch-attention.c and the kernels); a valid file outside these limits gives
 * unsupported_argument at load, naming the field, its value and the supported range:
 *   num_heads = 8 x num_kv_heads     attention: 8 query heads share a KV head (GPTOSS_ATTENTION_GROUP)
 *   num_experts <= 256               router / MoE: per-expert threadgroup arrays (GPTOSS_ROUTER_MAX_EXPERTS)
 *   num_active_experts <= 8          router: top-k in threadgroup memory (GPTOSS_ROUTER_MAX_ACTIVE)
 *   embedding_dim <= 7680            router: one fp32 row in 30720 bytes of threadgroup memory
 * (embedding_dim and mlp_dim must be multiples of 32, the MXFP4 block: checked as a format rule.)
 */
#define GPTOSS_SUPPORTED_QUERY_HEADS_PER_KV_HEAD 8
#define GPTOSS_SUPPORTED_MAX_EXPERTS 256
#define GPTOSS_SUPPORTED_MAX_ACTIVE_EXPERTS 8
#define GPTOSS_SUPPORTED_MAX_EMBEDDING_DIM 7680

/*
 * Bytes a file may have beyond the end of its last tensor: only zero padding up to the next
 * 16 KiB boundary (the official converter writes none). Anything longer means the header
 * describes less than the file holds (e.g. num_blocks too small), which would run garbage:
 * gptoss_model_file_parse refuses it with invalid_file.
 */
/* The o200k pre-tokenizer pattern, the only regex a model file may carry (NUL-terminated). */
extern const char gptoss_o200k_pattern[];

/* The 17 fields of the model header, in file order. */
struct gptoss_model_header {
    uint32_t context_length;
    uint32_t num_blocks;
    uint32_t num_experts;
    uint32_t num_active_experts;
    uint32_t embedding_dim;
    uint32_t mlp_dim;
    float swiglu_limit;
    uint32_t head_dim;
    uint32_t num_heads;
    uint32_t num_kv_heads;
    uint32_t attention_window;
    float rope_theta;
    float interpolation_scale;
    float yarn_offset;
    float yarn_scale;
    float yarn_multiplier;
    float rmsnorm_epsilon;
};

/* Dense (bf16) tensors of one block, in file order. */
enum gptoss_block_tensor {
    gptoss_block_tensor_attn_norm = 0,    /* [D] */
    gptoss_block_tensor_qkv_weight = 1,   /* [(Hq + 2 Hkv) d, D] */
    gptoss_block_tensor_qkv_bias = 2,     /* [(Hq + 2 Hkv) d] */
    gptoss_block_tensor_sinks = 3,        /* [Hq] */
    gptoss_block_tensor_out_weight = 4,   /* [D, Hq d] */
    gptoss_block_tensor_out_bias = 5,     /* [D] */
    gptoss_block_tensor_mlp_norm = 6,     /* [D] */
    gptoss_block_tensor_gate_weight = 7,  /* [E, D] (router) */
    gptoss_block_tensor_gate_bias = 8,    /* [E] */
    gptoss_block_tensor_count = 9,
};

/* Parts of one expert inside a MoE section, in file order. */
enum gptoss_expert_tensor {
    gptoss_expert_tensor_mlp1_blocks = 0,  /* [2I, D/32, 16] u8 */
    gptoss_expert_tensor_mlp1_scales = 1,  /* [2I, D/32] u8 */
    gptoss_expert_tensor_mlp1_bias = 2,    /* [2I] bf16 */
    gptoss_expert_tensor_mlp2_blocks = 3,  /* [D, I/32, 16] u8 */
    gptoss_expert_tensor_mlp2_scales = 4,  /* [D, I/32] u8 */
    gptoss_expert_tensor_mlp2_bias = 5,    /* [D] bf16 */
    gptoss_expert_tensor_count = 6,
};

struct gptoss_byte_span {
    uint64_t offset;
    uint64_t size;
};

/*
 * Where every byte lives. Blocks are regular, so one block's tensors (relative to the block) and
 * a stride describe them all; likewise for experts and MoE sections. Offsets marked "absolute"
 * are file offsets.
 */
struct gptoss_model_layout {
    uint64_t special_uuids_offset;  /* absolute */
    uint64_t regex_offset;          /* absolute */
    uint64_t tokens_offset;         /* absolute: the token table */
    uint64_t tokens_end;            /* absolute: end of the token table */
    uint64_t weights_offset;        /* absolute, multiple of 16 KiB: start of the weights region */
    uint32_t vocab_size;            /* num_text_tokens + num_special_tokens: embedding rows */

    struct gptoss_byte_span embedding;  /* absolute */
    uint64_t blocks_offset;             /* absolute start of block 0's dense tensors */
    uint64_t block_stride;              /* bytes from one block's dense tensors to the next */
    struct gptoss_byte_span block_tensors[gptoss_block_tensor_count];  /* relative to the block */
    struct gptoss_byte_span final_norm;   /* absolute */
    struct gptoss_byte_span unembedding;  /* absolute */
    uint64_t dense_end;                   /* absolute end of the dense region (16-byte aligned) */

    uint64_t moe_offset;   /* absolute start of block 0's MoE section (multiple of 16 KiB) */
    uint64_t moe_stride;   /* bytes between MoE sections (multiple of 16 KiB) */
    uint64_t moe_size;     /* bytes of tensors in one MoE section: num_experts * expert_size */
    uint64_t expert_size;  /* bytes of one expert (multiple of 16) */
    struct gptoss_byte_span expert_tensors[gptoss_expert_tensor_count];  /* relative to the expert */

    uint64_t file_size;  /* minimal file size: end of the last tensor */
};

/* A parsed, fully validated model file. Offsets refer to the byte range it was parsed from. */
struct gptoss_model_file {
    struct gptoss_model_header header;
    uint32_t num_special_tokens;
    uint32_t num_text_tokens;
    uint32_t regex_size;    /* bytes of the regex section, NUL included */
    uint32_t tokens_size;   /* bytes of the token table */
    uint32_t regex_length;  /* strlen of the regex */
    /* Token id of each special-token role (index: enum gptoss_special_token); UINT32_MAX if unnamed. */
    uint32_t special_token_ids[gptoss_special_token_max];
    struct gptoss_model_layout layout;
};

/*
 * Parses and validates a whole model file held in [data, data + size); name (usually the path)
 * prefixes every error message. Checks magic, UUIDs, header ranges, the tokenizer section (every
 * token-table entry), the layout (overflow-checked) against size. Returns success,
 * invalid_file (message names the field or section, the value and the offset) or
 * unsupported_argument (a valid file this runtime cannot run, e.g. head_dim != 64).
 */
enum gptoss_status gptoss_model_file_parse(
    const void* data, size_t size, const char* name, struct gptoss_model_file* file_out);

/*
 * Fills entry_offsets[0 .. num_text_tokens] with the offset (relative to the token table) of each
 * token's u16 length field, plus the table size at index num_text_tokens, so that token i has
 * entry_offsets[i + 1] - entry_offsets[i] - 2 bytes starting at entry_offsets[i] + 2.
 * Only for a range gptoss_model_file_parse accepted.
 */
void gptoss_model_file_index_tokens(
    const struct gptoss_model_file* file, const void* data, uint32_t* entry_offsets);

/* Absolute offset of a dense tensor of block `block`. */
uint64_t gptoss_model_layout_block_tensor_offset(
    const struct gptoss_model_layout* layout, uint32_t block, enum gptoss_block_tensor tensor);

/* Absolute offset of a part of expert `expert` of block `block`. */
uint64_t gptoss_model_layout_expert_tensor_offset(
    const struct gptoss_model_layout* layout, uint32_t block, uint32_t expert, enum gptoss_expert_tensor tensor);

/* Short names matching model_bin.py ("qkv_weight", "mlp1_blocks", ...). */
const char* gptoss_block_tensor_name(enum gptoss_block_tensor tensor);
const char* gptoss_expert_tensor_name(enum gptoss_expert_tensor tensor);

/* The parsed file of a loaded model (defined in model.c); valid while the model lives. */
const struct gptoss_model_file* gptoss_model_get_file(gptoss_model_t model);

/* Name of a special-token role ("return", "start", ...) or NULL for an invalid value. */
const char* gptoss_special_token_role_name(enum gptoss_special_token role);

#ifdef __cplusplus
}  // extern "C"
#endif
