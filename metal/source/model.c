/*
 * Model loading: open + fstat + mmap the whole model.bin read-only, validate it completely
 * (model-file.c), then build the tokenizer. Weights stay in the mapping; nothing is copied.
 */
/* POSIX.1-2008 for O_CLOEXEC under strict -std=c11 (macOS exposes everything by default);
 * _DEFAULT_SOURCE for MAP_ANONYMOUS (the SIGBUS guard) on glibc. */
#if !defined(_POSIX_C_SOURCE) && !defined(__APPLE__)
  #define _POSIX_C_SOURCE 200809L
#endif
#if !defined(_DEFAULT_SOURCE) && !defined(__APPLE__)
  #define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <fcntl.h>
#include <stddef.h>
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

/*
 * ---- SIGBUS guard ----
 *
 * A read of a mapped page that lies past the end of a file truncated after it was mapped raises
 * SIGBUS, which kills the process (the CPU execution layer and the tokenizer read the mapping
 * directly). gptoss_model_check_file catches a truncation before each unit of work, but not one
 * that happens while kernels run. This guard covers that window: a SIGBUS at an address inside a
 * registered model mapping replaces the faulting page with a page of zeros (the read then
 * completes) and marks the mapping changed, so the next gptoss_model_check_file fails and the
 * results of the unit of work in flight must be discarded. A SIGBUS anywhere else goes to the
 * handler that was installed before (or the default action: the process dies as it would have).
 *
 * The handler is installed when the first model is loaded. A handler installed later by someone
 * else (e.g. faulthandler.enable() after the load) replaces it, and then a truncation during a
 * kernel kills the process again. GPTOSS_SIGBUS_GUARD=0 in the environment disables the guard.
 */
#define GUARD_SLOTS 256

static struct {
    _Atomic(struct gptoss_file_mapping*) mapping;
    _Atomic uintptr_t start;
    _Atomic uintptr_t end;
} guard_slots[GUARD_SLOTS];

static struct sigaction previous_sigbus_action;
static uintptr_t guard_page_size;
static atomic_int guard_state;  /* 0: not tried, 1: installing, 2: installed, 3: disabled */

static void sigbus_handler(int signal_number, siginfo_t* info, void* context) {
    const uintptr_t address = (uintptr_t) info->si_addr;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        struct gptoss_file_mapping* mapping = atomic_load_explicit(&guard_slots[i].mapping, memory_order_acquire);
        if (mapping == NULL) {
            continue;
        }
        const uintptr_t start = atomic_load_explicit(&guard_slots[i].start, memory_order_relaxed);
        const uintptr_t end = atomic_load_explicit(&guard_slots[i].end, memory_order_relaxed);
        if (address >= start && address < end) {
            void* page = (void*) (address & ~(guard_page_size - 1));
            /* mmap is a plain system call (async-signal-safe in practice, though POSIX does not list it). */
            if (mmap(page, (size_t) guard_page_size, PROT_READ, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
                atomic_store_explicit(&mapping->changed, true, memory_order_relaxed);
                return;  /* the faulting read is retried and reads zeros */
            }
            break;
        }
    }
    if (previous_sigbus_action.sa_flags & SA_SIGINFO) {
        previous_sigbus_action.sa_sigaction(signal_number, info, context);
    } else if (previous_sigbus_action.sa_handler == SIG_DFL || previous_sigbus_action.sa_handler == SIG_IGN) {
        /* Restore the default action; returning retries the read, which faults again and terminates. */
        struct sigaction default_action;
        memset(&default_action, 0, sizeof(default_action));
        default_action.sa_handler = SIG_DFL;
        sigemptyset(&default_action.sa_mask);
        sigaction(SIGBUS, &default_action, NULL);
    } else {
        previous_sigbus_action.sa_handler(signal_number);
    }
}

static void guard_install_once(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&guard_state, &expected, 1)) {
        while (atomic_load(&guard_state) == 1) {
            /* another thread is installing: wait (a few microseconds) */
        }
        return;
    }
    const char* setting = getenv("GPTOSS_SIGBUS_GUARD");
    if (setting != NULL && strcmp(setting, "0") == 0) {
        atomic_store(&guard_state, 3);
        return;
    }
    guard_page_size = (uintptr_t) sysconf(_SC_PAGESIZE);
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = sigbus_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&action.sa_mask);
    atomic_store(&guard_state, sigaction(SIGBUS, &action, &previous_sigbus_action) == 0 ? 2 : 3);
}

static void guard_register(struct gptoss_file_mapping* mapping) {
    if (mapping->ptr == NULL) {
        return;
    }
    guard_install_once();
    if (atomic_load(&guard_state) != 2) {
        return;
    }
    /* Claim a free slot by its start (0 -> ptr); the handler looks only at slots whose mapping is set. */
    for (int i = 0; i < GUARD_SLOTS; i++) {
        uintptr_t expected_start = 0;
        if (atomic_compare_exchange_strong(&guard_slots[i].start, &expected_start, (uintptr_t) mapping->ptr)) {
            atomic_store_explicit(&guard_slots[i].end, (uintptr_t) mapping->ptr + mapping->size, memory_order_relaxed);
            atomic_store_explicit(&guard_slots[i].mapping, mapping, memory_order_release);
            mapping->guard_slot = i;
            return;
        }
    }
    /* All slots in use: this mapping is unguarded (gptoss_model_check_file still works). */
}

static void guard_unregister(struct gptoss_file_mapping* mapping) {
    const int i = mapping->guard_slot;
    if (i < 0) {
        return;
    }
    atomic_store_explicit(&guard_slots[i].mapping, NULL, memory_order_release);
    atomic_store_explicit(&guard_slots[i].end, 0, memory_order_relaxed);
    atomic_store_explicit(&guard_slots[i].start, 0, memory_order_release);  /* frees the slot */
    mapping->guard_slot = -1;
}

void gptoss_file_mapping_release(struct gptoss_file_mapping* mapping) {
    if (mapping == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&mapping->ref_count, 1, memory_order_acq_rel) == 1) {
        guard_unregister(mapping);
        if (mapping->ptr != NULL) {
            munmap(mapping->ptr, mapping->size);
        }
        if (mapping->fd >= 0) {
            close(mapping->fd);
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

#if defined(__APPLE__)
  #define STAT_MTIME_SEC(st) ((int64_t) (st).st_mtimespec.tv_sec)
  #define STAT_MTIME_NSEC(st) ((int64_t) (st).st_mtimespec.tv_nsec)
#else
  #define STAT_MTIME_SEC(st) ((int64_t) (st).st_mtim.tv_sec)
  #define STAT_MTIME_NSEC(st) ((int64_t) (st).st_mtim.tv_nsec)
#endif

/* What a non-regular file is, for messages. */
static const char* file_kind(mode_t mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
#ifdef S_ISLNK
    if (S_ISLNK(mode)) return "a symbolic link";
#endif
    return "not a regular file";
}

/*
 * Maps the whole file read-only; a zero-byte file gives a mapping with ptr NULL and size 0.
 *
 * The file is opened with O_NONBLOCK so that a FIFO (or a device that blocks on open) cannot
 * hang the load: open returns at once and fstat, before any read, refuses everything that is
 * not a regular file with invalid_file naming what it is (errno EISDIR for a directory, ENODEV
 * otherwise, for bindings that want an OSError). O_NONBLOCK is then cleared (it has no effect on
 * regular files, but the descriptor stays open for gptoss_model_check_file).
 */
static enum gptoss_status map_file(const char* path, const char* name, struct gptoss_file_mapping** mapping_out) {
#ifdef O_NOCTTY
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
#else
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
#endif
    if (fd < 0) {
        return os_error(name, "open", errno);
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
        const int error_number = errno;
        close(fd);
        return os_error(name, "stat", error_number);
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        gptoss_set_error(gptoss_status_invalid_file,
            "%s: is %s, not a regular file; a model.bin must be a regular file (it is memory-mapped)",
            name, file_kind(info.st_mode));
        errno = S_ISDIR(info.st_mode) ? EISDIR : ENODEV;
        return gptoss_status_invalid_file;
    }
    const int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) {
        const int error_number = errno;
        close(fd);
        return os_error(name, "configure", error_number);
    }
    if (info.st_size < 0 || (uint64_t) info.st_size > (uint64_t) SIZE_MAX) {
        close(fd);
        gptoss_set_error(gptoss_status_io_error, "%s: file size %jd cannot be mapped", name, (intmax_t) info.st_size);
        errno = EFBIG;
        return gptoss_status_io_error;
    }
    struct gptoss_file_mapping* mapping = calloc(1, sizeof(*mapping));
    if (mapping == NULL) {
        close(fd);
        return gptoss_set_error(gptoss_status_insufficient_memory, "%s: out of memory for the file mapping", name);
    }
    atomic_init(&mapping->ref_count, 1);
    atomic_init(&mapping->changed, false);
    mapping->size = (size_t) info.st_size;
    mapping->fd = fd;
    mapping->st_dev = (uint64_t) info.st_dev;
    mapping->st_ino = (uint64_t) info.st_ino;
    mapping->mtime_sec = STAT_MTIME_SEC(info);
    mapping->mtime_nsec = STAT_MTIME_NSEC(info);
    if (mapping->size != 0) {
        /*
         * MAP_PRIVATE or MAP_SHARED makes no difference for a read-only mapping that is never
         * written: both show the page cache, so an in-place overwrite by another process is
         * visible, and pages past a truncation fault with SIGBUS. gptoss_model_check_file
         * detects both before each unit of work.
         */
        void* ptr = mmap(NULL, mapping->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (ptr == MAP_FAILED) {
            const int error_number = errno;
            close(fd);
            free(mapping);
            return os_error(name, "map", error_number);
        }
        mapping->ptr = ptr;
    }
    mapping->guard_slot = -1;
    guard_register(mapping);
    *mapping_out = mapping;
    return gptoss_status_success;
}

enum gptoss_status gptoss_model_check_file(const struct gptoss_model* model) {
    if (model == NULL || model->mapping == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument, "gptoss_model_check_file: model is NULL");
    }
    struct gptoss_file_mapping* mapping = model->mapping;
    const char* path = model->path;
    struct stat info;
    if (mapping->fd < 0 || fstat(mapping->fd, &info) != 0) {
        const int error_number = errno;
        return gptoss_set_error(gptoss_status_io_error,
            "%s: cannot check the model file for changes: fstat failed: %s (errno %d)",
            path, strerror(error_number), error_number);
    }
    bool changed = (uint64_t) info.st_size != (uint64_t) mapping->size ||
        STAT_MTIME_SEC(info) != mapping->mtime_sec || STAT_MTIME_NSEC(info) != mapping->mtime_nsec;
    /*
     * The path too: on file systems whose fstat may serve cached attributes for an open
     * descriptor, a stat by name revalidates them. A different inode at the path (replaced by
     * rename) or no file at all (deleted) leaves the loaded inode intact: not a change.
     */
    struct stat path_info;
    bool path_changed = false;
    if (!changed && stat(model->os_path, &path_info) == 0 && (uint64_t) path_info.st_dev == mapping->st_dev &&
        (uint64_t) path_info.st_ino == mapping->st_ino)
    {
        path_changed = (uint64_t) path_info.st_size != (uint64_t) mapping->size ||
            STAT_MTIME_SEC(path_info) != mapping->mtime_sec || STAT_MTIME_NSEC(path_info) != mapping->mtime_nsec;
        if (path_changed) {
            info = path_info;
            changed = true;
        }
    }
    if (changed) {
        atomic_store_explicit(&mapping->changed, true, memory_order_relaxed);
    } else if (!atomic_load_explicit(&mapping->changed, memory_order_relaxed)) {
        return gptoss_status_success;
    }
    if (!changed) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: the model file changed after it was loaded (detected by an earlier check); reload the model",
            path);
    }
    if ((uint64_t) info.st_size != (uint64_t) mapping->size) {
        return gptoss_set_error(gptoss_status_invalid_file,
            "%s: the model file changed after it was loaded (size %zu \xe2\x86\x92 %jd bytes); reload the model "
            "(replace model files by renaming a complete new file over them, never by rewriting them in place)",
            path, mapping->size, (intmax_t) info.st_size);
    }
    return gptoss_set_error(gptoss_status_invalid_file,
        "%s: the model file changed after it was loaded (size %zu bytes unchanged, but its modification time "
        "changed from %" PRId64 ".%09" PRId64 " to %" PRId64 ".%09" PRId64 " s: it was written in place); "
        "reload the model (replace model files by renaming a complete new file over them, never by rewriting "
        "them in place)",
        path, mapping->size, mapping->mtime_sec, mapping->mtime_nsec,
        (int64_t) STAT_MTIME_SEC(info), (int64_t) STAT_MTIME_NSEC(info));
}

/* ---- Model ---- */

/* Kernel names and where each one's handle lives in struct gptoss_model_kernels. */
#define KERNEL_ENTRY(field, name) { name, offsetof(struct gptoss_model_kernels, field) }
static const struct {
    const char* name;
    size_t offset;
} kernel_table[] = {
    KERNEL_ENTRY(embeddings, "gptoss_embeddings_bf16"),
    KERNEL_ENTRY(rmsnorm, "gptoss_rmsnorm"),
    KERNEL_ENTRY(matvec, "gptoss_matvec_bf16"),
    KERNEL_ENTRY(gemm, "gptoss_gemm_bf16"),
    KERNEL_ENTRY(qkv_rope_kv[0], "gptoss_qkv_rope_kv16"),
    KERNEL_ENTRY(qkv_rope_kv[1], "gptoss_qkv_rope_kv32"),
    KERNEL_ENTRY(rope_kv[0], "gptoss_rope_kv16"),
    KERNEL_ENTRY(rope_kv[1], "gptoss_rope_kv32"),
    KERNEL_ENTRY(attention_decode[0], "gptoss_attention_decode_f16"),
    KERNEL_ENTRY(attention_decode[1], "gptoss_attention_decode_f32"),
    KERNEL_ENTRY(attention_prefill[0], "gptoss_attention_prefill_f16"),
    KERNEL_ENTRY(attention_prefill[1], "gptoss_attention_prefill_f32"),
    KERNEL_ENTRY(attention_combine, "gptoss_attention_combine"),
    KERNEL_ENTRY(router, "gptoss_router"),
    KERNEL_ENTRY(moe_mlp1_decode, "gptoss_moe_mlp1_swiglu_decode"),
    KERNEL_ENTRY(moe_mlp2_decode, "gptoss_moe_mlp2_accumulate_decode"),
    KERNEL_ENTRY(moe_scatter, "gptoss_moe_scatter"),
    KERNEL_ENTRY(moe_mlp1_prefill, "gptoss_moe_mlp1_swiglu_prefill"),
    KERNEL_ENTRY(moe_mlp2_prefill, "gptoss_moe_mlp2_prefill"),
    KERNEL_ENTRY(moe_gather, "gptoss_moe_gather"),
};
#define NUM_KERNELS (sizeof(kernel_table) / sizeof(kernel_table[0]))

static struct gptoss_function** kernel_slot(struct gptoss_model_kernels* kernels, size_t index) {
    return (struct gptoss_function**) ((char*) kernels + kernel_table[index].offset);
}

static void release_device_state(struct gptoss_model* model) {
    for (size_t i = 0; i < NUM_KERNELS; i++) {
        struct gptoss_function** slot = kernel_slot(&model->kernels, i);
        if (*slot != NULL) {
            gptoss_function_release(*slot);
            *slot = NULL;
        }
    }
    if (model->has_sampling) {
        gptoss_sampling_functions_release(&model->sampling);
        model->has_sampling = false;
    }
    gptoss_buffer_release(&model->dense_weights);
    if (model->moe_weights != NULL) {
        for (uint32_t n = 0; n < model->file.header.num_blocks; n++) {
            gptoss_buffer_release(&model->moe_weights[n]);
        }
        free(model->moe_weights);
        model->moe_weights = NULL;
    }
    if (model->device != NULL) {
        gptoss_device_release(model->device);
        model->device = NULL;
    }
}

/* The VM page of Apple silicon; model.bin starts the weights and every MoE section on it. */
#define WEIGHTS_PAGE UINT64_C(16384)
/*
 * Headroom the machine needs beside the weights: the OS (kernel, WindowServer and daemons keep
 * roughly 1.5-2 GiB wired on a Mac) plus this process's context buffers (KV cache, activations:
 * ~0.1 GiB for a 4096-token context of 20b). A command buffer references every weight buffer, so
 * all weights must be resident at once: weights + margin > physical memory cannot run.
 */
#define PHYSICAL_MEMORY_MARGIN (UINT64_C(2) << 30)

static double gib(uint64_t bytes) {
    return (double) bytes / (double) (UINT64_C(1) << 30);
}

/* Bytes a region of the file takes as a Metal buffer: rounded up to the 16 KiB page. */
static uint64_t region_length(uint64_t size) {
    return (size + WEIGHTS_PAGE - 1) / WEIGHTS_PAGE * WEIGHTS_PAGE;
}

/*
 * Wraps file bytes [file_offset, file_offset + size) in place as one buffer. file_offset is a
 * multiple of 16 KiB; the mapping covers whole host pages, so rounding the size up to the host
 * page stays inside it.
 */
static enum gptoss_status wrap_region(struct gptoss_model* model, uint64_t file_offset, uint64_t size,
                                      struct gptoss_buffer* buffer_out) {
    const uint64_t page = (uint64_t) sysconf(_SC_PAGESIZE);
    const uint64_t wrapped = (size + page - 1) / page * page;
    return gptoss_buffer_wrap(model->device, (uint8_t*) model->mapping->ptr + file_offset, (size_t) wrapped, buffer_out);
}

/*
 * Memory checks against the device, then the weights wrapped in place: the dense region as one
 * buffer and one buffer per block's MoE section, each within the device's max_buffer_length (a
 * region above it fails the load naming every such region, its size and the limit).
 */
static enum gptoss_status wrap_weights(struct gptoss_model* model) {
    struct gptoss_device_info info;
    gptoss_device_get_info(model->device, &info);
    const struct gptoss_model_layout* layout = &model->file.layout;
    const uint32_t num_blocks = model->file.header.num_blocks;
    const uint64_t weights = model->weights_size;
    if (info.physical_memory != 0 && weights + PHYSICAL_MEMORY_MARGIN > info.physical_memory) {
        return gptoss_set_error(gptoss_status_insufficient_resources,
            "%s: the model's weights (%.2f GiB) plus a %.2f GiB margin for the system and the context buffers "
            "exceed the physical memory of this machine (%.2f GiB; device %s): the model cannot run here",
            model->path, gib(weights), gib(PHYSICAL_MEMORY_MARGIN), gib(info.physical_memory), info.name);
    }
    const uint64_t dense_size = layout->moe_offset - layout->weights_offset;
    const uint64_t dense_length = region_length(dense_size);
    const uint64_t moe_length = region_length(layout->moe_size);
    const bool dense_too_large = dense_length > info.max_buffer_length;
    const bool moe_too_large = moe_length > info.max_buffer_length;
    if (dense_too_large || moe_too_large) {
        char dense_text[160] = "", moe_text[160] = "";
        if (dense_too_large) {
            snprintf(dense_text, sizeof(dense_text),
                "the dense weights region (embedding, attention, router, unembedding) is %.2f GiB (%" PRIu64 " bytes)",
                gib(dense_length), dense_length);
        }
        if (moe_too_large) {
            snprintf(moe_text, sizeof(moe_text), "%sthe MoE section of each block (0..%" PRIu32 ") is %.2f GiB (%" PRIu64
                " bytes)", dense_too_large ? " and " : "", num_blocks - 1, gib(moe_length), moe_length);
        }
        return gptoss_set_error(gptoss_status_insufficient_resources,
            "%s: %s%s, more than the maximum buffer length of %.2f GiB (%" PRIu64 " bytes) of %s: the weights are "
            "wrapped as one buffer per region, so this model cannot run on this device",
            model->path, dense_text, moe_text, gib(info.max_buffer_length), info.max_buffer_length, info.name);
    }
    enum gptoss_status status = wrap_region(model, layout->weights_offset, dense_size, &model->dense_weights);
    if (status != gptoss_status_success) {
        return status;
    }
    model->moe_weights = calloc(num_blocks, sizeof(struct gptoss_buffer));
    if (model->moe_weights == NULL) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "%s: out of memory for the weight buffers", model->path);
    }
    for (uint32_t n = 0; n < num_blocks; n++) {
        status = wrap_region(model, layout->moe_offset + (uint64_t) n * layout->moe_stride, layout->moe_size,
                             &model->moe_weights[n]);
        if (status != gptoss_status_success) {
            return status;
        }
    }
    if (info.recommended_working_set != 0 && weights > info.recommended_working_set) {
        char message[512];
        snprintf(message, sizeof(message),
            "%s: the model's weights (%.2f GiB) exceed the recommended working set of %s (%.2f GiB): the model "
            "runs, but the GPU may page weights in and out, which can make inference much slower",
            model->path, gib(weights), info.name, gib(info.recommended_working_set));
        model->load_warning = strdup(message);
    }
    return gptoss_status_success;
}

/*
 * Creates the device, wraps the weights in place and looks every kernel up once. A kernel this
 * build lacks is recorded, not fatal (see gptoss_model_check_kernels).
 */
static enum gptoss_status create_device_state(struct gptoss_model* model) {
    enum gptoss_status status = gptoss_device_create(gptoss_device_kind_any, &model->device);
    if (status != gptoss_status_success) {
        return status;
    }
    status = wrap_weights(model);
    if (status != gptoss_status_success) {
        return status;
    }
    for (size_t i = 0; i < NUM_KERNELS; i++) {
        if (gptoss_function_create(model->device, kernel_table[i].name, kernel_slot(&model->kernels, i)) != gptoss_status_success) {
            *kernel_slot(&model->kernels, i) = NULL;
            if (model->missing_kernel == NULL) {
                model->missing_kernel = kernel_table[i].name;
            }
        }
    }
    model->has_sampling = gptoss_sampling_functions_create(model->device, &model->sampling) == gptoss_status_success;
    if (!model->has_sampling && model->missing_kernel == NULL) {
        model->missing_kernel = GPTOSS_SAMPLING_KERNEL_PREPARE " (or another sampling kernel)";
    }
    gptoss_clear_error();  /* missing kernels are reported when a context is created */
    return gptoss_status_success;
}

enum gptoss_status gptoss_model_check_kernels(const struct gptoss_model* model) {
    if (model->missing_kernel != NULL) {
        return gptoss_set_error(gptoss_status_unsupported_system,
            "%s: this build of the runtime lacks kernel %s, which inference needs", model->path, model->missing_kernel);
    }
    return gptoss_status_success;
}

static void model_destroy(struct gptoss_model* model) {
    /* Device resources go before the mapping they wrap. */
    release_device_state(model);
    if (model->tokenizer != NULL) {
        gptoss_tokenizer_release(model->tokenizer);
    }
    gptoss_file_mapping_release(model->mapping);
    free(model->load_warning);
    free(model->path);
    free(model->os_path);
    free(model);
}

/* Length of the well-formed UTF-8 sequence at p (Unicode Table 3-7), or 0 if it is not one. */
static size_t utf8_sequence_length(const uint8_t* p, size_t available) {
    const uint8_t b0 = p[0];
    if (b0 < 0x80) return 1;
    size_t length;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) { length = 2; }
    else if (b0 == 0xE0) { length = 3; lo = 0xA0; }
    else if (b0 >= 0xE1 && b0 <= 0xEC) { length = 3; }
    else if (b0 == 0xED) { length = 3; hi = 0x9F; }
    else if (b0 >= 0xEE && b0 <= 0xEF) { length = 3; }
    else if (b0 == 0xF0) { length = 4; lo = 0x90; }
    else if (b0 >= 0xF1 && b0 <= 0xF3) { length = 4; }
    else if (b0 == 0xF4) { length = 4; hi = 0x8F; }
    else return 0;
    if (available < length || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < length; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    }
    return length;
}

/*
 * The path for messages: valid UTF-8 whatever the bytes of the path, so that every binding can
 * turn a message into text. Bytes that are not part of a well-formed UTF-8 sequence, and control
 * characters, become \xNN (as Python's backslashreplace shows them).
 */
static char* display_path(const char* path) {
    const size_t size = strlen(path);
    char* out = malloc(4 * size + 1);
    if (out == NULL) {
        return NULL;
    }
    const uint8_t* p = (const uint8_t*) path;
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        const size_t length = utf8_sequence_length(p + i, size - i);
        if (length == 0 || p[i] < 0x20 || p[i] == 0x7F) {
            n += (size_t) snprintf(out + n, 5, "\\x%02x", p[i]);
            i++;
        } else {
            memcpy(out + n, p + i, length);
            n += length;
            i += length;
        }
    }
    out[n] = '\0';
    return out;
}

/* Is a bf16 bit pattern NaN or infinite (exponent all ones)? */
static bool bf16_is_nonfinite(uint16_t bits) {
    return (bits & 0x7F80) == 0x7F80;
}

/*
 * Scans the small dense tensors (RMSNorm gains, attention and router biases, sinks: a few
 * hundred KiB even for 120b, next to each block's large matrices) for NaN or infinite values,
 * which make every logit NaN. The large matrices and the experts (GBs) are not scanned.
 */
static enum gptoss_status check_small_tensors(const struct gptoss_model* model) {
    static const enum gptoss_block_tensor small[] = {
        gptoss_block_tensor_attn_norm, gptoss_block_tensor_qkv_bias, gptoss_block_tensor_sinks,
        gptoss_block_tensor_out_bias, gptoss_block_tensor_mlp_norm, gptoss_block_tensor_gate_bias,
    };
    const struct gptoss_model_layout* layout = &model->file.layout;
    const uint8_t* base = (const uint8_t*) model->mapping->ptr;
    const uint32_t num_blocks = model->file.header.num_blocks;
    for (uint32_t b = 0; b <= num_blocks; b++) {
        const size_t count = b < num_blocks ? sizeof(small) / sizeof(small[0]) : 1;
        for (size_t t = 0; t < count; t++) {
            uint64_t offset, size;
            char name[64];
            if (b < num_blocks) {
                offset = gptoss_model_layout_block_tensor_offset(layout, b, small[t]);
                size = layout->block_tensors[small[t]].size;
                snprintf(name, sizeof(name), "block.%" PRIu32 ".%s", b, gptoss_block_tensor_name(small[t]));
            } else {
                offset = layout->final_norm.offset;
                size = layout->final_norm.size;
                snprintf(name, sizeof(name), "final_norm");
            }
            const uint8_t* p = base + offset;
            for (uint64_t i = 0; i < size / 2; i++) {
                const uint16_t bits = (uint16_t) (p[2 * i] | (p[2 * i + 1] << 8));
                if (bf16_is_nonfinite(bits)) {
                    return gptoss_set_error(gptoss_status_invalid_file,
                        "%s: tensor %s (bytes [%" PRIu64 ", %" PRIu64 ")) holds a non-finite value: element %" PRIu64
                        " is %s (bf16 0x%04x); the file is corrupt",
                        model->path, name, offset, offset + size, i,
                        (bits & 0x007F) != 0 ? "NaN" : ((bits & 0x8000) ? "-inf" : "+inf"), bits);
                }
            }
        }
    }
    return gptoss_status_success;
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
    char* os_path = strdup(path);
    char* shown_path = display_path(path);
    if (model == NULL || os_path == NULL || shown_path == NULL) {
        free(model);
        free(os_path);
        free(shown_path);
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_model_create_from_file: out of memory for the model");
    }
    atomic_init(&model->ref_count, 1);
    model->path = shown_path;
    model->os_path = os_path;

    enum gptoss_status status = map_file(path, model->path, &model->mapping);
    if (status != gptoss_status_success) {
        const int error_number = errno;
        model_destroy(model);
        errno = error_number;
        return status;
    }
    status = gptoss_model_file_parse(model->mapping->ptr, model->mapping->size, model->path, &model->file);
    if (status == gptoss_status_success) {
        status = gptoss_tokenizer_create(model->mapping, &model->file, model->path, &model->tokenizer);
    }
    if (status == gptoss_status_success) {
        status = check_small_tensors(model);
    }
    if (status != gptoss_status_success) {
        model_destroy(model);
        errno = 0;  /* a format error, not an OS one */
        return status;
    }
    model->weights_ptr = (uint8_t*) model->mapping->ptr + model->file.layout.weights_offset;
    model->weights_size = (size_t) (model->file.layout.file_size - model->file.layout.weights_offset);
    status = create_device_state(model);
    if (status != gptoss_status_success) {
        model_destroy(model);
        errno = 0;
        return status;
    }
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

enum gptoss_status gptoss_model_get_load_warning(gptoss_model_t model, const char** warning_out) {
    gptoss_clear_error();
    if (model == NULL || warning_out == NULL) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_model_get_load_warning: %s is NULL", model == NULL ? "model" : "warning_out");
    }
    *warning_out = model->load_warning != NULL ? model->load_warning : "";
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
