/* The model and tokenizer objects behind gptoss_model_t and gptoss_tokenizer_t. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reference counts: C11 atomics; the same object representation as std::atomic for C++ readers. */
#ifdef __cplusplus
  #include <atomic>
  typedef std::atomic<uint_least64_t> gptoss_ref_count_t;
#else
  #include <stdatomic.h>
  typedef atomic_uint_least64_t gptoss_ref_count_t;
#endif

#include <gpt-oss/types.h>

#include "internal/device.h"
#include "internal/model-file.h"

#include "internal/sampling.h"

/*
 * Every kernel the forward pass uses, looked up by name once at model load (model.c lists the
 * names). A kernel missing from this build stays NULL: loading and tokenizing keep working, and
 * context creation fails with unsupported_system naming it (gptoss_model_check_kernels).
 */
struct gptoss_model_kernels {
    struct gptoss_function* embeddings;        /* gptoss_embeddings_bf16 */
    struct gptoss_function* rmsnorm;           /* gptoss_rmsnorm */
    struct gptoss_function* matvec;            /* gptoss_matvec_bf16 (decode dense, unembedding) */
    struct gptoss_function* gemm;              /* gptoss_gemm_bf16 (prefill dense) */
    struct gptoss_function* qkv_rope_kv[2];    /* gptoss_qkv_rope_kv16 / _kv32 (decode, [fp32 KV]) */
    struct gptoss_function* rope_kv[2];        /* gptoss_rope_kv16 / _kv32 (prefill) */
    struct gptoss_function* attention_decode[2];
    struct gptoss_function* attention_prefill[2];
    struct gptoss_function* attention_combine;
    struct gptoss_function* router;
    struct gptoss_function* moe_mlp1_decode;
    struct gptoss_function* moe_mlp2_decode;
    struct gptoss_function* moe_scatter;
    struct gptoss_function* moe_mlp1_prefill;
    struct gptoss_function* moe_mlp2_prefill;
    struct gptoss_function* moe_gather;
};

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The read-only memory mapping of a whole model.bin, shared (reference counted) by the model and
 * its tokenizer so that either may outlive the other.
 */
struct gptoss_file_mapping {
    gptoss_ref_count_t ref_count;
    void* ptr;     /* page-aligned start of the mapping (the file's byte 0) */
    size_t size;   /* file size in bytes */
    /*
     * The descriptor stays open (read-only, close-on-exec) so gptoss_model_check_file can fstat
     * the very inode that is mapped (one syscall, ~1 us); -1 when closed.
     */
    int fd;
    /* The identity and version of the file at load, compared by gptoss_model_check_file. */
    uint64_t st_dev;
    uint64_t st_ino;
    int64_t mtime_sec;
    int64_t mtime_nsec;
    int guard_slot;  /* slot in the SIGBUS guard's table (model.c), -1 if unguarded */
    /* Set once a change was detected (or a SIGBUS in the mapping was caught): sticky. */
#ifdef __cplusplus
    std::atomic<bool> changed;
#else
    _Atomic bool changed;
#endif
};

struct gptoss_file_mapping* gptoss_file_mapping_retain(struct gptoss_file_mapping* mapping);
void gptoss_file_mapping_release(struct gptoss_file_mapping* mapping);

struct gptoss_bpe_index;  /* bpe.c: the rank hash map of the text tokens */

struct gptoss_tokenizer {
    gptoss_ref_count_t ref_count;
    struct gptoss_file_mapping* mapping;  /* keeps the token table, regex and UUIDs alive */

    uint32_t num_text_tokens;
    uint32_t num_special_tokens;
    const char* regex;                 /* NUL-terminated, inside the mapping */
    const uint8_t* special_uuids;      /* num_special_tokens x 16 bytes, inside the mapping */
    const uint8_t* token_table;        /* start of the token table, inside the mapping */
    /* Offset of each entry in the token table, plus the table size at [num_text_tokens]: O(1) decode. */
    uint32_t* token_entry_offsets;
    /* Token id per role (index: enum gptoss_special_token); UINT32_MAX if the file does not name it. */
    uint32_t special_token_ids[gptoss_special_token_max];
    /* Built by the first BPE encode (bpe.c), freed with the tokenizer; NULL until then. */
#ifdef __cplusplus
    std::atomic<struct gptoss_bpe_index*> bpe_index;
#else
    struct gptoss_bpe_index* _Atomic bpe_index;
#endif
};

/* Builds the tokenizer of a parsed file (retains mapping). */
enum gptoss_status gptoss_tokenizer_create(
    struct gptoss_file_mapping* mapping, const struct gptoss_model_file* file, const char* path,
    struct gptoss_tokenizer** tokenizer_out);

struct gptoss_model {
    gptoss_ref_count_t ref_count;
    char* path;                          /* for messages: the path given, bytes that are not UTF-8 as \\xNN */
    char* os_path;                       /* the path exactly as given to gptoss_model_create_from_file */
    struct gptoss_file_mapping* mapping;
    struct gptoss_model_file file;       /* validated header, tokenizer sizes and the full layout */
    struct gptoss_tokenizer* tokenizer;  /* one reference owned by the model */

    /*
     * The weights region: [weights_ptr, weights_ptr + weights_size) = file bytes
     * [layout.weights_offset, layout.file_size). weights_ptr is page-aligned (weights_offset is a
     * multiple of 16 KiB and the mapping is page-aligned), so the device layer can wrap it without
     * copying (gptoss_buffer_wrap). The mapping covers whole pages: rounding weights_size up to
     * the page size stays inside it.
     */
    void* weights_ptr;
    size_t weights_size;

    /*
     * ---- Device and weight buffers (inference layer; see context.c) ----
     * Created at load and immutable afterwards, so contexts on several threads can share them.
     * The weights are wrapped without copying in several buffers, each at most the device's
     * max_buffer_length (a single MTLBuffer is capped, e.g. to about half the RAM, and 120b has
     * ~65 GB of weights), as the original gpt-oss Metal runtime does:
     *   dense_weights  wraps [weights_offset, moe_offset): embedding, attention, router, norms,
     *                  unembedding; a dense tensor is (dense_weights, file offset - weights_offset);
     *   moe_weights[n] wraps block n's MoE section [moe_offset + n moe_stride, + moe_size), which
     *                  starts on a 16 KiB file boundary (page-aligned on 16 KiB pages); an expert
     *                  tensor is (moe_weights[n], offset within the section).
     */
    struct gptoss_device* device;
    struct gptoss_buffer dense_weights;
    struct gptoss_buffer* moe_weights;          /* [num_blocks] */
    /*
     * Set at load when the weights exceed the device's recommended working set (they still run:
     * Metal pages), else NULL. Returned by gptoss_model_get_load_warning.
     */
    char* load_warning;
    /*
     * Every kernel the forward pass uses, looked up by name once at load (index: enum
     * gptoss_model_kernel, names in gptoss_model_kernel_names). A kernel missing from this build
     * stays NULL: loading and tokenizing still work, and context creation fails with
     * unsupported_system naming it (gptoss_model_check_kernels).
     */
    struct gptoss_model_kernels kernels;
    const char* missing_kernel;                 /* first kernel name not found, or NULL */
    struct gptoss_sampling_functions sampling;  /* all-or-nothing */
    bool has_sampling;
};

/* unsupported_system naming the first kernel this build lacks, else success. */
enum gptoss_status gptoss_model_check_kernels(const struct gptoss_model* model);

/*
 * Checks that the model file was not changed since it was loaded: fstat on the mapped file's
 * descriptor (size and modification time) and stat on the path (if the path still names the
 * same inode, its size and modification time). Replacing the file by rename (a new inode at the
 * path) is fine: the loaded inode stays mapped and unchanged, and this returns success.
 * Returns success, or invalid_file with "<path>: the model file changed after it was loaded
 * (size X → Y bytes); reload the model" (or the modification time that changed). A detected
 * change is sticky: every later call fails too. Costs two syscalls (~1-2 us); thread-safe.
 *
 * Call it at the start of every unit of work that reads weights (gptoss_context_process,
 * gptoss_context_sample*): a truncated file would otherwise kill the process with SIGBUS when a
 * kernel reads a page past the new end, and an in-place overwrite would silently change the
 * weights. Calling it again at the end of the unit of work detects a change made while the
 * kernels ran (the results of that unit must then be discarded). Residual window: a change
 * between the check and the kernels' reads is not detected in time (see docs/model-bin.md,
 * "Replacing a model file").
 */
enum gptoss_status gptoss_model_check_file(const struct gptoss_model* model);

#ifdef __cplusplus
}  // extern "C"
#endif
