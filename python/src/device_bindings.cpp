// gpt_oss_metal._metal.Device: the device interface (internal/device.h) for tests — run any
// compiled kernel by name on NumPy arrays, on whichever device is present.
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "internal/device.h"
#include "internal/error.h"

namespace py = pybind11;

namespace gptoss_python {
namespace {

std::array<uint32_t, 3> size3(const std::vector<uint32_t>& v, const char* what) {
    if (v.empty() || v.size() > 3) {
        raise_status(gptoss_set_error(gptoss_status_invalid_argument, "%s must have 1 to 3 elements, got %zu", what, v.size()), what);
    }
    std::array<uint32_t, 3> out = {1, 1, 1};
    for (size_t i = 0; i < v.size(); i++) {
        out[i] = v[i];
    }
    return out;
}

class Device {
public:
    explicit Device(const std::string& kind) {
        gptoss_device_kind k;
        if (kind == "any") {
            k = gptoss_device_kind_any;
        } else if (kind == "cpu") {
            k = gptoss_device_kind_cpu;
        } else if (kind == "metal") {
            k = gptoss_device_kind_metal;
        } else {
            raise_status(gptoss_set_error(gptoss_status_invalid_argument,
                "Device(kind=%s): expected \"any\", \"cpu\" or \"metal\"", kind.c_str()), "Device");
        }
        gptoss_clear_error();
        check(gptoss_device_create(k, &device_), "gptoss_device_create");
    }
    ~Device() {
        for (auto& entry : functions_) {
            gptoss_function_release(entry.second);
        }
        gptoss_device_release(device_);
    }
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    py::dict info() const {
        gptoss_device_info info;
        gptoss_device_get_info(device_, &info);
        py::dict d;
        d["kind"] = info.kind == gptoss_device_kind_metal ? "metal" : "cpu";
        d["name"] = std::string(info.name);
        d["simd_width"] = info.simd_width;
        d["max_threads_per_threadgroup"] = info.max_threads_per_threadgroup;
        d["max_threadgroup_memory"] = info.max_threadgroup_memory;
        d["recommended_working_set"] = info.recommended_working_set;
        d["max_buffer_length"] = info.max_buffer_length;
        d["physical_memory"] = info.physical_memory;
        d["num_compute_units"] = info.num_compute_units;
        return d;
    }

    gptoss_function* function(const std::string& name) {
        auto it = functions_.find(name);
        if (it != functions_.end()) {
            return it->second;
        }
        gptoss_function* f = nullptr;
        gptoss_clear_error();
        check(gptoss_function_create(device_, name.c_str(), &f), "gptoss_function_create");
        functions_[name] = f;
        return f;
    }

    void run(const std::string& kernel, const std::vector<uint32_t>& threadgroups,
             const std::vector<uint32_t>& threads_per_threadgroup, const py::dict& buffers,
             const py::dict& threadgroup_memory) {
        gptoss_function* f = function(kernel);
        gptoss_dispatch dispatch;
        std::memset(&dispatch, 0, sizeof(dispatch));
        dispatch.function = f;
        const auto groups = size3(threadgroups, "threadgroups");
        const auto threads = size3(threads_per_threadgroup, "threads_per_threadgroup");
        std::memcpy(dispatch.threadgroups, groups.data(), sizeof(dispatch.threadgroups));
        std::memcpy(dispatch.threads_per_threadgroup, threads.data(), sizeof(dispatch.threads_per_threadgroup));

        struct bound_array {
            py::buffer_info info;
            gptoss_buffer buffer;
        };
        std::vector<std::unique_ptr<bound_array>> arrays;
        std::vector<std::string> byte_strings;
        byte_strings.reserve(buffers.size());
        std::vector<gptoss_kernel_arg> args;
        struct release_all {
            std::vector<std::unique_ptr<bound_array>>& arrays;
            ~release_all() {
                for (auto& a : arrays) {
                    gptoss_buffer_release(&a->buffer);
                }
            }
        } releaser{arrays};

        for (auto item : buffers) {
            gptoss_kernel_arg arg;
            std::memset(&arg, 0, sizeof(arg));
            arg.index = item.first.cast<uint32_t>();
            if (py::isinstance<py::bytes>(item.second)) {
                byte_strings.push_back(item.second.cast<std::string>());
                arg.kind = gptoss_kernel_arg_bytes;
                arg.bytes = byte_strings.back().data();
                arg.size = byte_strings.back().size();
            } else {
                auto bound = std::make_unique<bound_array>();
                bound->info = item.second.cast<py::buffer>().request(/*writable=*/true);
                std::memset(&bound->buffer, 0, sizeof(bound->buffer));
                const size_t size = (size_t) bound->info.size * (size_t) bound->info.itemsize;
                gptoss_clear_error();
                check(gptoss_buffer_create(device_, size, bound->info.ptr, &bound->buffer), "gptoss_buffer_create");
                arg.kind = gptoss_kernel_arg_buffer;
                arg.buffer = &bound->buffer;
                arrays.push_back(std::move(bound));
            }
            args.push_back(arg);
        }
        for (auto item : threadgroup_memory) {
            gptoss_kernel_arg arg;
            std::memset(&arg, 0, sizeof(arg));
            arg.kind = gptoss_kernel_arg_threadgroup_memory;
            arg.index = item.first.cast<uint32_t>();
            arg.size = item.second.cast<size_t>();
            args.push_back(arg);
        }
        dispatch.num_args = args.size();
        dispatch.args = args.data();

        gptoss_command_buffer* command_buffer = nullptr;
        gptoss_clear_error();
        check(gptoss_command_buffer_create(device_, &command_buffer), "gptoss_command_buffer_create");
        gptoss_status status = gptoss_command_buffer_encode(command_buffer, &dispatch);
        if (status == gptoss_status_success) {
            py::gil_scoped_release no_gil;
            status = gptoss_command_buffer_commit(command_buffer);
            if (status == gptoss_status_success) {
                status = gptoss_command_buffer_wait(command_buffer);
            }
        }
        if (status != gptoss_status_success) {
            // Keep the message: releasing the command buffer must not clobber it.
            const std::string message = gptoss_get_last_error_message();
            gptoss_command_buffer_release(command_buffer);
            gptoss_set_error(status, "%s", message.c_str());
            raise_status(status, "kernel run");
        }
        gptoss_command_buffer_release(command_buffer);
        for (auto& a : arrays) {
            std::memcpy(a->info.ptr, a->buffer.ptr, a->buffer.size);
        }
    }

    py::dict trace_counters() const {
        gptoss_trace_counters c;
        gptoss_device_get_trace_counters(device_, &c);
        py::dict d;
        d["dispatches"] = c.dispatches;
        d["command_buffers"] = c.command_buffers;
        d["bound_buffer_bytes"] = c.bound_buffer_bytes;
        return d;
    }

    void reset_trace_counters() { gptoss_device_reset_trace_counters(device_); }

private:
    gptoss_device* device_ = nullptr;
    std::unordered_map<std::string, gptoss_function*> functions_;
};

}  // namespace

void register_device(py::module_& m) {
    py::class_<Device>(m, "Device", "A compute device (Apple GPU or the CPU execution layer) for running kernels by name.")
        .def(py::init<const std::string&>(), py::arg("kind") = "any",
             "kind: \"any\" (GPTOSS_DEVICE env var, else metal if built, else cpu), \"cpu\" or \"metal\".")
        .def_property_readonly("info", &Device::info, "Device properties as a dict.")
        .def("run", &Device::run, py::arg("kernel"), py::arg("threadgroups"), py::arg("threads_per_threadgroup"),
             py::arg("buffers"), py::arg("threadgroup_memory") = py::dict(),
             "Run one dispatch: buffers maps [[buffer(i)]] to a writable C-contiguous buffer (copied in and back) "
             "or bytes (setBytes); threadgroup_memory maps [[threadgroup(i)]] to a byte size.")
        .def("trace_counters", &Device::trace_counters, "Dispatch counters of this device (see GPTOSS_TRACE).")
        .def("reset_trace_counters", &Device::reset_trace_counters);
}

}  // namespace gptoss_python
