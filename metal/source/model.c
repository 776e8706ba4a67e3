/*
 * Model loading: open + fstat + mmap the whole model.bin read-only, validate it completely
 * (model-file.c), then build the tokenizer. Weights stay in the mapping; nothing is copied.
 */
/* POSIX.1-2008 for O_CLOEXEC under strict -std=c11 (macOS exposes everything by default). */
#if !defined(_POSIX_C_SOURCE) && !defined(__APPLE__)
  #define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gpt-oss.h>

#include "internal/error.h"
#include "internal/model-file.h"
#include "internal/model.h"

/* ---- File mapping ---- */

struct gptoss_file_mapping* gptoss_file_mapping_retain(struct gptoss_file_mapping* mapping) {
    atomic_fetch_add_explicit(&mapping->ref_count, 1, memory_order_relaxed);
    return mapping;
}

void gptoss_file_mapping_release(struct gptoss_file_mapping* mapping) {
    if (mapping == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&mapping->ref_count, 1, memory_order_acq_rel) == 1) {
        if (mapping->ptr != NULL) {
            munmap(mapping->ptr, mapping->size);
        }
        free(mapping);
    }
}

/*
 * Records an OS failure. errno is left as the failing call set it, so callers (the Python
 * bindings) can raise an OSError with the right errno after the call returns.
 */
static enum gptoss_status os_error(const char* path, const char* action, int error_number) {
    gptoss_set_error(gptoss_status_io_error, "%s: cannot %s model file: %s (errno %d)",
        path, action, strerror(error_number), error_number);
    errno = error_number;
    return gptoss_status_io_error;
}

/* Maps the whole file read-only; a zero-byte file gives a mapping with ptr NULL and size 0. */
static enum gptoss_status map_file(const char* path, struct gptoss_file_mapping** mapping_out) {
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return os_error(path, "open", errno);
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
        const int error_number = errno;
        close(fd);
        return os_error(path, "stat", error_number);
    }
    if (S_ISDIR(info.st_mode)) {
        close(fd);
        return os_error(path, "read", EISDIR);
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        gptoss_set_error(gptoss_status_io_error,
            "%s: cannot map model file: not a regular file (mode 0%o)", path, (unsigned) info.st_mode);
        errno = EINVAL;
        return gptoss_status_io_error;
    }
    if (info.st_size < 0 || (uint64_t) info.st_size > (uint64_t) SIZE_MAX) {
        close(fd);
        gptoss_set_error(gptoss_status_io_error, "%s: file size %jd cannot be mapped", path, (intmax_t) info.st_size);
        errno = EFBIG;
        return gptoss_status_io_error;
    }
    struct gptoss_file_mapping* mapping = calloc(1, sizeof(*mapping));
    if (mapping == NULL) {
        close(fd);
        return gptoss_set_error(gptoss_status_insufficient_memory, "%s: out of memory for the file mapping", path);
    }
    atomic_init(&mapping->ref_count, 1);
    mapping->size = (size_t) info.st_size;
    if (mapping->size != 0) {
        void* ptr = mmap(NULL, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (ptr == MAP_FAILED) {
            const int error_number = errno;
            close(fd);
            free(mapping);
            return os_error(path, "map", error_number);
        }
        mapping->ptr = ptr;
    }
    close(fd);  /* the mapping stays valid without the descriptor */
    *mapping_out = mapping;
    return gptoss_status_success;
}

/* ---- Model ---- */

static void model_destroy(struct gptoss_model* model) {
    /* Device resources (added by the inference layer) are released here, before the mapping. */
    if (model->tokenizer != NULL) {
        gptoss_tokenizer_release(model->tokenizer);
    }
    gptoss_file_mapping_release(model->mapping);
    free(model->path);
    free(model);
}

enum gptoss_status gptoss_model_create_from_file(const char* path, gptoss_model_t* model_out) {
    gptoss_clear_error();
    if (model_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_model_create_from_file: model_out is NULL");
    }
    *model_out = NULL;
    if (path == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_model_create_from_file: path is NULL");
    }

    struct gptoss_model* model = calloc(1, sizeof(*model));
    const size_t path_size = strlen(path) + 1;
    char* path_copy = malloc(path_size);
    if (model == NULL || path_copy == NULL) {
        free(model);
        free(path_copy);
        return gptoss_set_error(gptoss_status_insufficient_memory, "%s: out of memory for the model", path);
    }
    memcpy(path_copy, path, path_size);
    atomic_init(&model->ref_count, 1);
    model->path = path_copy;

    enum gptoss_status status = map_file(path, &model->mapping);
    if (status != gptoss_status_success) {
        const int error_number = errno;
        model_destroy(model);
        errno = error_number;
        return status;
    }
    status = gptoss_model_file_parse(model->mapping->ptr, model->mapping->size, path, &model->file);
    if (status == gptoss_status_success) {
        status = gptoss_tokenizer_create(model->mapping, &model->file, path, &model->tokenizer);
    }
    if (status != gptoss_status_success) {
        model_destroy(model);
        return status;
    }
    model->weights_ptr = (uint8_t*) model->mapping->ptr + model->file.layout.weights_offset;
    model->weights_size = (size_t) (model->file.layout.file_size - model->file.layout.weights_offset);
    *model_out = model;
    return gptoss_status_success;
}

const struct gptoss_model_file* gptoss_model_get_file(gptoss_model_t model) {
    return model != NULL ? &model->file : NULL;
}

enum gptoss_status gptoss_model_get_tokenizer(gptoss_model_t model, gptoss_tokenizer_t* tokenizer_out) {
    gptoss_clear_error();
    if (model == NULL || tokenizer_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_model_get_tokenizer: %s is NULL", model == NULL ? "model" : "tokenizer_out");
    }
    gptoss_tokenizer_retain(model->tokenizer);
    *tokenizer_out = model->tokenizer;
    return gptoss_status_success;
}

enum gptoss_status gptoss_model_get_max_context_length(gptoss_model_t model, size_t* max_context_length_out) {
    gptoss_clear_error();
    if (model == NULL || max_context_length_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_model_get_max_context_length: %s is NULL", model == NULL ? "model" : "max_context_length_out");
    }
    *max_context_length_out = model->file.header.context_length;
    return gptoss_status_success;
}

enum gptoss_status gptoss_model_retain(gptoss_model_t model) {
    if (model == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_model_retain: model is NULL");
    }
    atomic_fetch_add_explicit(&model->ref_count, 1, memory_order_relaxed);
    return gptoss_status_success;
}

enum gptoss_status gptoss_model_release(gptoss_model_t model) {
    if (model == NULL) {
        return gptoss_status_success;  /* like free(NULL) */
    }
    if (atomic_fetch_sub_explicit(&model->ref_count, 1, memory_order_acq_rel) == 1) {
        model_destroy(model);
    }
    return gptoss_status_success;
}
