// The CPU backend of the device interface: buffers in host memory, kernels from the translated
// registry, dispatches executed by a worker pool (one threadgroup at a time per worker, the
// threads of a threadgroup as fibers; see scheduler.cpp).
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gpt-oss.h>

#include "internal/device-impl.h"
#include "internal/error.h"
#include "scheduler.h"

namespace msl_rt {
const kernel_desc* find_kernel(const char* name);  // generated registry
}

namespace {

using msl_rt::dispatch_state;
using msl_rt::worker_resources;

uint32_t configured_thread_count() {
    if (const char* env = std::getenv("GPTOSS_CPU_THREADS")) {
        const long value = std::strtol(env, nullptr, 10);
        if (value >= 1 && value <= 1024) {
            return (uint32_t) value;
        }
        std::fprintf(stderr, "gpt-oss: ignoring GPTOSS_CPU_THREADS=%s (expected 1..1024)\n", env);
    }
    const unsigned hardware = std::thread::hardware_concurrency();
    return hardware == 0 ? 1 : hardware;
}

// One dispatch being executed: threadgroups are claimed in chunks from a shared counter.
struct dispatch_job {
    const dispatch_state* dispatch;
    uint64_t total;
    uint64_t chunk;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> stop{false};
    const volatile uint32_t* abort_flag;
    std::mutex error_mutex;
    gptoss_status status = gptoss_status_success;
    std::string message;

    void fail(gptoss_status s, const std::string& m) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (status == gptoss_status_success) {
            status = s;
            message = m;
        }
        stop.store(true, std::memory_order_relaxed);
    }
};

void work(dispatch_job& job, worker_resources& resources) {
    const dispatch_state& d = *job.dispatch;
    if (!msl_rt::prepare_threadgroup_memory(resources, d)) {
        job.fail(gptoss_status_insufficient_memory, std::string("kernel ") + d.kernel->name +
                 ": cannot allocate fiber stacks or threadgroup memory");
        return;
    }
    const uint64_t nx = d.threadgroups[0], ny = d.threadgroups[1];
    for (;;) {
        const uint64_t start = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
        if (start >= job.total) {
            return;
        }
        const uint64_t end = start + job.chunk < job.total ? start + job.chunk : job.total;
        for (uint64_t i = start; i < end; i++) {
            if (job.stop.load(std::memory_order_relaxed)) {
                return;
            }
            if (job.abort_flag != nullptr && *job.abort_flag != 0) {
                job.fail(gptoss_status_cancelled, std::string("kernel ") + d.kernel->name +
                         ": the command buffer was cancelled through its abort flag");
                return;
            }
            const uint32_t group[3] = {(uint32_t) (i % nx), (uint32_t) ((i / nx) % ny), (uint32_t) (i / (nx * ny))};
            if (!msl_rt::run_threadgroup(resources, d, group)) {
                job.fail(gptoss_status_device_error, resources.tg.fault_message);
                return;
            }
        }
    }
}

// Process-wide worker threads shared by every CPU device; one dispatch runs at a time and the
// thread that commits works alongside the helpers.
class worker_pool {
public:
    static worker_pool& instance() {
        static worker_pool* pool = new worker_pool(configured_thread_count());  // never destroyed: threads live on
        return *pool;
    }

    uint32_t threads() const { return thread_count_; }

    void run(dispatch_job& job) {
        std::lock_guard<std::mutex> dispatch_lock(dispatch_mutex_);
        thread_local std::unique_ptr<worker_resources> caller_resources;
        if (!caller_resources) {
            caller_resources.reset(new worker_resources());
        }
        const bool parallel = job.total > job.chunk && thread_count_ > 1;
        if (parallel) {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &job;
            active_ = thread_count_ - 1;
            generation_++;
            start_.notify_all();
        }
        work(job, *caller_resources);
        if (parallel) {
            std::unique_lock<std::mutex> lock(mutex_);
            done_.wait(lock, [this] { return active_ == 0; });
            job_ = nullptr;
        }
    }

private:
    explicit worker_pool(uint32_t threads) : thread_count_(threads) {
        for (uint32_t i = 1; i < threads; i++) {
            std::thread([this] { helper_loop(); }).detach();
        }
    }

    void helper_loop() {
        worker_resources resources;
        uint64_t seen = 0;
        for (;;) {
            dispatch_job* job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                job = job_;
            }
            work(*job, resources);
            std::lock_guard<std::mutex> lock(mutex_);
            if (--active_ == 0) {
                done_.notify_one();
            }
        }
    }

    const uint32_t thread_count_;
    std::mutex dispatch_mutex_;
    std::mutex mutex_;
    std::condition_variable start_, done_;
    uint64_t generation_ = 0;
    uint32_t active_ = 0;
    dispatch_job* job_ = nullptr;
};

struct cpu_command_buffer_result {
    gptoss_status status = gptoss_status_success;
    std::string message;
};

void cpu_device_destroy(gptoss_device*) {}

gptoss_status cpu_buffer_create(gptoss_device*, size_t size, const void* data, gptoss_buffer* buffer) {
    // Page-aligned like Metal's shared buffers; never zero bytes so ptr is always valid.
    void* memory = nullptr;
    const size_t allocation = size == 0 ? 16 : size;
    if (posix_memalign(&memory, 16384, allocation) != 0) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_buffer_create: cannot allocate %zu bytes", size);
    }
    if (data != nullptr) {
        std::memcpy(memory, data, size);
    } else {
        std::memset(memory, 0, allocation);
    }
    buffer->ptr = memory;
    buffer->impl = memory;  // owned allocation (wrapped buffers have impl == NULL)
    return gptoss_status_success;
}

gptoss_status cpu_buffer_wrap(gptoss_device*, void*, size_t, gptoss_buffer* buffer) {
    buffer->impl = nullptr;
    return gptoss_status_success;
}

void cpu_buffer_release(gptoss_buffer* buffer) {
    std::free(buffer->impl);
}

gptoss_status cpu_function_create(gptoss_device*, gptoss_function* function) {
    const msl_rt::kernel_desc* kernel = msl_rt::find_kernel(function->name);
    if (kernel == nullptr) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "gptoss_function_create: no kernel named '%s' was compiled into the CPU execution layer", function->name);
    }
    function->impl = const_cast<msl_rt::kernel_desc*>(kernel);
    // The kernel's [[max_total_threads_per_threadgroup]], capped by the device (1024, or the
    // GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP testing knob).
    const uint32_t device_max = function->device->info.max_threads_per_threadgroup;
    function->info.max_threads_per_threadgroup =
        kernel->max_threads_per_threadgroup < device_max ? kernel->max_threads_per_threadgroup : device_max;
    function->info.simd_width = function->device->info.simd_width;
    function->info.static_threadgroup_memory = kernel->static_threadgroup_memory;
    function->declared_buffer_mask = kernel->buffer_mask;
    function->declared_threadgroup_mask = kernel->threadgroup_mask;
    return gptoss_status_success;
}

void cpu_function_release(gptoss_function*) {}

gptoss_status run_dispatch(const gptoss_recorded_dispatch& recorded, const volatile uint32_t* abort_flag, std::string* message) {
    dispatch_state d;
    std::memset(&d, 0, sizeof(d));
    d.kernel = static_cast<const msl_rt::kernel_desc*>(recorded.function->impl);
    d.threads = 1;
    for (int i = 0; i < 3; i++) {
        d.threadgroups[i] = recorded.threadgroups[i];
        d.threads_per_threadgroup[i] = recorded.threads_per_threadgroup[i];
        d.threads *= recorded.threads_per_threadgroup[i];
    }
    for (size_t i = 0; i < recorded.num_args; i++) {
        const gptoss_kernel_arg& arg = recorded.args[i];
        switch (arg.kind) {
            case gptoss_kernel_arg_buffer:
                d.buffers[arg.index] = {static_cast<char*>(arg.buffer->ptr) + arg.offset, arg.buffer->size - arg.offset, true};
                break;
            case gptoss_kernel_arg_bytes:
                d.buffers[arg.index] = {static_cast<char*>(const_cast<void*>(arg.bytes)), arg.size, true};
                break;
            case gptoss_kernel_arg_threadgroup_memory:
                d.threadgroup_sizes[arg.index] = arg.size;
                break;
        }
    }
    dispatch_job job;
    job.dispatch = &d;
    job.total = (uint64_t) d.threadgroups[0] * d.threadgroups[1] * d.threadgroups[2];
    if (job.total == 0) {
        return gptoss_status_success;
    }
    worker_pool& pool = worker_pool::instance();
    // Chunks keep the shared counter cold while still balancing work across workers.
    const uint64_t chunk = job.total / (pool.threads() * 16ull);
    job.chunk = chunk == 0 ? 1 : (chunk > 64 ? 64 : chunk);
    job.abort_flag = abort_flag;
    pool.run(job);
    if (job.status != gptoss_status_success) {
        *message = job.message;
    }
    return job.status;
}

gptoss_status cpu_command_buffer_commit(gptoss_command_buffer* command_buffer) {
    auto* result = new (std::nothrow) cpu_command_buffer_result();
    if (result == nullptr) {
        return gptoss_set_error(gptoss_status_insufficient_memory, "gptoss_command_buffer_commit: out of memory");
    }
    command_buffer->impl = result;
    // Executed synchronously: commit returns once the work is done and wait reports the outcome.
    for (size_t i = 0; i < command_buffer->num_dispatches; i++) {
        if (command_buffer->abort_flag != nullptr && *command_buffer->abort_flag != 0) {
            result->status = gptoss_status_cancelled;
            result->message = "command buffer cancelled through its abort flag before dispatch " + std::to_string(i) +
                              " of " + std::to_string(command_buffer->num_dispatches);
            break;
        }
        result->status = run_dispatch(command_buffer->dispatches[i], command_buffer->abort_flag, &result->message);
        if (result->status != gptoss_status_success) {
            break;
        }
    }
    command_buffer->status = result->status;
    command_buffer->state = gptoss_command_buffer_state_completed;
    return gptoss_status_success;
}

gptoss_status cpu_command_buffer_wait(gptoss_command_buffer* command_buffer) {
    const auto* result = static_cast<const cpu_command_buffer_result*>(command_buffer->impl);
    if (result == nullptr || result->status == gptoss_status_success) {
        return gptoss_status_success;
    }
    return gptoss_set_error(result->status, "%s", result->message.c_str());
}

void cpu_command_buffer_release(gptoss_command_buffer* command_buffer) {
    delete static_cast<cpu_command_buffer_result*>(command_buffer->impl);
    command_buffer->impl = nullptr;
}

const gptoss_device_ops cpu_ops = {
    "cpu",
    cpu_device_destroy,
    cpu_buffer_create,
    cpu_buffer_wrap,
    cpu_buffer_release,
    cpu_function_create,
    cpu_function_release,
    cpu_command_buffer_commit,
    cpu_command_buffer_wait,
    cpu_command_buffer_release,
};

// Testing knobs (docs/msl-cpu.md): environment variables that override a reported limit, so that
// the shared code's handling of small GPUs can be tested here. A value is digits with an optional
// K, M or G suffix (binary: 1K = 1024); anything else fails device creation with a clear error.
gptoss_status limit_from_env(const char* name, uint64_t minimum, uint64_t maximum, uint64_t* value) {
    const char* text = std::getenv(name);
    if (text == nullptr) {
        return gptoss_status_success;
    }
    uint64_t parsed = 0;
    const char* p = text;
    bool ok = *p >= '0' && *p <= '9';
    for (; ok && *p >= '0' && *p <= '9'; p++) {
        const uint64_t digit = (uint64_t) (*p - '0');
        if (parsed > (UINT64_MAX - digit) / 10) {
            ok = false;
            break;
        }
        parsed = parsed * 10 + digit;
    }
    if (ok && *p != '\0') {
        const int shift = (*p == 'K' || *p == 'k') ? 10 : (*p == 'M' || *p == 'm') ? 20 : (*p == 'G' || *p == 'g') ? 30 : -1;
        ok = shift > 0 && p[1] == '\0' && parsed <= (UINT64_MAX >> shift);
        if (ok) {
            parsed <<= shift;
        }
    }
    if (!ok || parsed < minimum || parsed > maximum) {
        return gptoss_set_error(gptoss_status_invalid_argument,
            "%s=\"%s\": expected an integer in %" PRIu64 "..%" PRIu64 " (digits, optionally followed by K, M or G)",
            name, text, minimum, maximum);
    }
    *value = parsed;
    return gptoss_status_success;
}

}  // namespace

extern "C" gptoss_status gptoss_cpu_device_init(gptoss_device* device) {
    uint64_t max_buffer_length = UINT64_MAX;  // host memory: no per-buffer limit
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    uint64_t physical_memory = pages > 0 && page_size > 0 ? (uint64_t) pages * (uint64_t) page_size : 0;
    uint64_t working_set = physical_memory;
    uint64_t max_threads = msl_rt::max_threads_per_threadgroup;
    uint64_t simd_width = msl_rt::simd_width;
    const struct {
        const char* name;
        uint64_t minimum, maximum;
        uint64_t* value;
    } knobs[] = {
        {"GPTOSS_CPU_MAX_BUFFER_LENGTH", 1, UINT64_MAX, &max_buffer_length},
        {"GPTOSS_CPU_PHYSICAL_MEMORY", 1, UINT64_MAX, &physical_memory},
        {"GPTOSS_CPU_RECOMMENDED_WORKING_SET", 1, UINT64_MAX, &working_set},
        {"GPTOSS_CPU_MAX_THREADS_PER_THREADGROUP", 1, msl_rt::max_threads_per_threadgroup, &max_threads},
        {"GPTOSS_CPU_SIMD_WIDTH", 1, 64, &simd_width},
    };
    for (const auto& knob : knobs) {
        const gptoss_status status = limit_from_env(knob.name, knob.minimum, knob.maximum, knob.value);
        if (status != gptoss_status_success) {
            return status;
        }
    }
    const uint32_t threads = worker_pool::instance().threads();
    device->ops = &cpu_ops;
    device->impl = nullptr;
    device->info.kind = gptoss_device_kind_cpu;
    std::snprintf(device->info.name, sizeof(device->info.name), "CPU execution layer (%u worker threads)", threads);
    // A reported SIMD width other than 32 (GPTOSS_CPU_SIMD_WIDTH) only tests the launch wrappers'
    // check: kernels still execute with 32-lane SIMD groups here.
    device->info.simd_width = (uint32_t) simd_width;
    device->info.max_threads_per_threadgroup = (uint32_t) max_threads;
    device->info.max_threadgroup_memory = 32768;
    device->info.recommended_working_set = working_set;
    device->info.max_buffer_length = max_buffer_length;
    device->info.physical_memory = physical_memory;
    device->info.num_compute_units = threads;
    return gptoss_status_success;
}
