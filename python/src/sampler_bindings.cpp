// gpt_oss_metal._metal.Sampler: settings setters (validated by the C library) plus the two sampling
// paths on a NumPy logits vector — the GPU path (encode + commit + wait + finish, exactly as the
// context runs it) and the host reference — and the scaled logits z for testing the penalties.
#include "sampler_bindings.h"

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "bindings.h"

#include "internal/device.h"
#include "internal/error.h"
#include "internal/sampling.h"

namespace py = pybind11;

namespace gptoss_python {
namespace {

using logits_array = py::array_t<float, py::array::c_style | py::array::forcecast>;

// One device + resolved kernels per device kind, kept for the life of the process (tests create
// many samplers; resolving the kernels once keeps them cheap).
struct SamplingDevice {
    gptoss_device* device = nullptr;
    gptoss_sampling_functions functions{};
};

SamplingDevice& sampling_device(const std::string& kind) {
    static std::mutex mutex;
    static std::map<std::string, SamplingDevice> devices;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = devices.find(kind);
    if (it != devices.end()) {
        return it->second;
    }
    gptoss_device_kind k;
    if (kind == "any") k = gptoss_device_kind_any;
    else if (kind == "cpu") k = gptoss_device_kind_cpu;
    else if (kind == "metal") k = gptoss_device_kind_metal;
    else raise_status(gptoss_set_error(gptoss_status_invalid_argument,
            "Sampler: device must be \"any\", \"cpu\" or \"metal\", got \"%s\"", kind.c_str()), "Sampler");
    SamplingDevice d;
    check(gptoss_device_create(k, &d.device), "gptoss_device_create");
    const gptoss_status status = gptoss_sampling_functions_create(d.device, &d.functions);
    if (status != gptoss_status_success) {
        gptoss_device_release(d.device);
        raise_status(status, "gptoss_sampling_functions_create");
    }
    return devices.emplace(kind, d).first->second;
}

struct Inputs {
    const float* logits;
    uint32_t vocabulary_size;
    std::vector<uint32_t> history;
    uint32_t num_prompt_tokens;
};

Inputs inputs(const logits_array& logits, const std::vector<int64_t>& history, int64_t num_prompt_tokens) {
    if (logits.ndim() != 1 || logits.shape(0) == 0 || logits.shape(0) > INT32_MAX) {
        raise_status(gptoss_set_error(gptoss_status_invalid_argument,
            "sample_logits: logits must be a non-empty 1-D array"), "Sampler");
    }
    Inputs in{logits.data(), static_cast<uint32_t>(logits.shape(0)), {}, 0};
    for (size_t i = 0; i < history.size(); i++) {
        if (history[i] < 0 || history[i] >= in.vocabulary_size) {
            raise_status(gptoss_set_error(gptoss_status_invalid_argument,
                "sample_logits: history[%zu] = %lld is not a token id below %u", i,
                static_cast<long long>(history[i]), in.vocabulary_size), "Sampler");
        }
        in.history.push_back(static_cast<uint32_t>(history[i]));
    }
    if (num_prompt_tokens < 0 || static_cast<size_t>(num_prompt_tokens) > history.size()) {
        raise_status(gptoss_set_error(gptoss_status_invalid_argument,
            "sample_logits: num_prompt_tokens %lld must be in [0, len(history) = %zu]",
            static_cast<long long>(num_prompt_tokens), history.size()), "Sampler");
    }
    in.num_prompt_tokens = static_cast<uint32_t>(num_prompt_tokens);
    return in;
}

class Sampler {
public:
    Sampler() { check(gptoss_sampler_create(&sampler_), "gptoss_sampler_create"); }
    ~Sampler() { gptoss_sampler_release(sampler_); }
    Sampler(const Sampler&) = delete;
    Sampler& operator=(const Sampler&) = delete;

    // Every setter converts its argument with the shared helpers (bindings.h) and lets the C setter
    // check the range: the same one-line messages as Context.sample / Context.generate.
    void set_temperature(const py::object& v) {
        check(gptoss_sampler_set_temperature(sampler_, real_argument("Sampler.set_temperature", "temperature", v)),
              "set_temperature");
    }
    void set_top_p(const py::object& v) {
        check(gptoss_sampler_set_top_p(sampler_, real_argument("Sampler.set_top_p", "top_p", v)), "set_top_p");
    }
    void set_top_k(const py::object& v) {
        const uint64_t k = integer_argument("Sampler.set_top_k", "top_k", v, UINT32_MAX, "(0 disables top-k)");
        check(gptoss_sampler_set_top_k(sampler_, static_cast<uint32_t>(k)), "set_top_k");
    }
    void set_min_p(const py::object& v) {
        check(gptoss_sampler_set_min_p(sampler_, real_argument("Sampler.set_min_p", "min_p", v)), "set_min_p");
    }
    void set_presence_penalty(const py::object& v) {
        check(gptoss_sampler_set_presence_penalty(sampler_,
              real_argument("Sampler.set_presence_penalty", "presence_penalty", v)), "set_presence_penalty");
    }
    void set_frequency_penalty(const py::object& v) {
        check(gptoss_sampler_set_frequency_penalty(sampler_,
              real_argument("Sampler.set_frequency_penalty", "frequency_penalty", v)), "set_frequency_penalty");
    }
    void set_repetition_penalty(const py::object& v) {
        check(gptoss_sampler_set_repetition_penalty(sampler_,
              real_argument("Sampler.set_repetition_penalty", "repetition_penalty", v)), "set_repetition_penalty");
    }
    void set_seed(const py::object& v) {
        check(gptoss_sampler_set_seed(sampler_, integer_argument("Sampler.set_seed", "seed", v, UINT64_MAX)), "set_seed");
    }
    void set_stop_tokens(const py::object& tokens) {
        const std::vector<uint32_t> ids = token_ids_argument("Sampler.set_stop_tokens", "stop token", tokens, 0);
        check(gptoss_sampler_set_stop_tokens(sampler_, ids.data(), ids.size()), "set_stop_tokens");
    }
    std::vector<uint32_t> stop_tokens() const {
        const uint32_t* t = nullptr;
        size_t n = 0;
        check(gptoss_sampler_get_stop_tokens(sampler_, &t, &n), "stop_tokens");
        return std::vector<uint32_t>(t, t + n);
    }

    // The settings as of now, for a call that runs without the GIL (the C setters may run meanwhile).
    struct Snapshot {
        gptoss_sampler_t sampler = nullptr;
        explicit Snapshot(gptoss_sampler_t source) { check(gptoss_sampler_clone(source, &sampler), "gptoss_sampler_clone"); }
        ~Snapshot() { gptoss_sampler_release(sampler); }
        Snapshot(const Snapshot&) = delete;
        Snapshot& operator=(const Snapshot&) = delete;
    };

    // GPU path; optionally returns z (the penalised, temperature-scaled logits the kernels computed).
    std::pair<uint32_t, py::array_t<float>> run_gpu(const logits_array& logits, const std::vector<int64_t>& history,
                                                    uint64_t position, int64_t num_prompt_tokens,
                                                    const std::string& device, bool want_scaled) {
        const Inputs in = inputs(logits, history, num_prompt_tokens);
        SamplingDevice& d = sampling_device(device);
        const Snapshot settings(sampler_);
        gptoss_buffer logits_buffer{}, history_buffer{};
        gptoss_sampling_scratch scratch{};
        gptoss_command_buffer* cb = nullptr;
        uint32_t token = 0;
        py::array_t<float> scaled;
        gptoss_status status;
        {
            py::gil_scoped_release release;
            gptoss_clear_error();
            status = gptoss_buffer_create(d.device, in.vocabulary_size * sizeof(float), in.logits, &logits_buffer);
            if (status == gptoss_status_success && !in.history.empty())
                status = gptoss_buffer_create(d.device, in.history.size() * sizeof(uint32_t), in.history.data(), &history_buffer);
            if (status == gptoss_status_success)
                status = gptoss_sampling_scratch_create(d.device, in.vocabulary_size, &scratch);
            if (status == gptoss_status_success)
                status = gptoss_command_buffer_create(d.device, &cb);
            if (status == gptoss_status_success)
                status = gptoss_sampler_encode(settings.sampler, cb, &d.functions, &logits_buffer, 0, in.vocabulary_size,
                    in.history.empty() ? nullptr : &history_buffer, 0, static_cast<uint32_t>(in.history.size()),
                    in.num_prompt_tokens, position, &scratch);
            if (status == gptoss_status_success) status = gptoss_command_buffer_commit(cb);
            if (status == gptoss_status_success) status = gptoss_command_buffer_wait(cb);
            if (status == gptoss_status_success) status = gptoss_sampler_finish(settings.sampler, &scratch, &token);
        }
        if (status == gptoss_status_success && want_scaled) {
            scaled = py::array_t<float>(in.vocabulary_size);
            std::memcpy(scaled.mutable_data(), gptoss_sampling_scratch_scaled_logits(&scratch), in.vocabulary_size * sizeof(float));
        }
        if (cb != nullptr) gptoss_command_buffer_release(cb);
        gptoss_sampling_scratch_release(&scratch);
        gptoss_buffer_release(&history_buffer);
        gptoss_buffer_release(&logits_buffer);
        check(status, "sample_logits");
        return {token, scaled};
    }

    std::pair<uint32_t, py::array_t<float>> run_host(const logits_array& logits, const std::vector<int64_t>& history,
                                                     uint64_t position, int64_t num_prompt_tokens, bool want_scaled) {
        const Inputs in = inputs(logits, history, num_prompt_tokens);
        const Snapshot settings(sampler_);
        py::array_t<float> scaled(in.vocabulary_size);
        uint32_t token = 0;
        gptoss_status status;
        {
            float* out = scaled.mutable_data();
            py::gil_scoped_release release;
            gptoss_clear_error();
            status = gptoss_sampler_sample_host(settings.sampler, in.logits, in.vocabulary_size, in.history.data(),
                static_cast<uint32_t>(in.history.size()), in.num_prompt_tokens, position, out, &token);
        }
        check(status, "sample_logits_host");
        return {token, want_scaled ? scaled : py::array_t<float>()};
    }

private:
    gptoss_sampler_t sampler_ = nullptr;
};

}  // namespace

void register_sampler(py::module_& m) {
    py::class_<Sampler>(m, "Sampler",
        "Sampling settings (see gpt-oss/functions.h, Sampler): penalties -> temperature -> top-k -> top-p -> "
        "min-p -> Gumbel-max draw keyed by (seed, position). Setters raise InvalidArgumentError out of range.")
        .def(py::init<>())
        .def("set_temperature", &Sampler::set_temperature, py::arg("temperature"), "0 (greedy) or in [1e-4, 1e4].")
        .def("set_top_p", &Sampler::set_top_p, py::arg("top_p"), "In (0, 1]; 1 disables.")
        .def("set_top_k", &Sampler::set_top_k, py::arg("top_k"), "0 disables.")
        .def("set_min_p", &Sampler::set_min_p, py::arg("min_p"), "In [0, 1]; 0 disables.")
        .def("set_presence_penalty", &Sampler::set_presence_penalty, py::arg("penalty"), "In [-2, 2].")
        .def("set_frequency_penalty", &Sampler::set_frequency_penalty, py::arg("penalty"), "In [-2, 2].")
        .def("set_repetition_penalty", &Sampler::set_repetition_penalty, py::arg("penalty"), "In [0.01, 100]; 1 disables.")
        .def("set_seed", &Sampler::set_seed, py::arg("seed"))
        .def("set_stop_tokens", &Sampler::set_stop_tokens, py::arg("tokens"))
        .def_property_readonly("stop_tokens", &Sampler::stop_tokens)
        .def("sample_logits",
             [](Sampler& s, const logits_array& logits, const std::vector<int64_t>& history, const py::object& position,
                int64_t num_prompt_tokens, py::object device) {
                 const std::string kind = device.is_none() ? "any" : device.cast<std::string>();
                 const uint64_t p = integer_argument("Sampler.sample_logits", "position", position, UINT64_MAX);
                 return s.run_gpu(logits, history, p, num_prompt_tokens, kind, false).first;
             },
             py::arg("logits"), py::arg("history") = std::vector<int64_t>(), py::arg("position") = 0,
             py::arg("num_prompt_tokens") = 0, py::arg("device") = py::none(),
             "GPU path (encode, commit, wait, finish). history: the context's tokens, of which the first "
             "num_prompt_tokens are the prompt; position: where the token goes (the RNG counter); device: "
             "\"any\" (default), \"cpu\" or \"metal\".")
        .def("sample_logits_host",
             [](Sampler& s, const logits_array& logits, const std::vector<int64_t>& history, const py::object& position,
                int64_t num_prompt_tokens) {
                 const uint64_t p = integer_argument("Sampler.sample_logits_host", "position", position, UINT64_MAX);
                 return s.run_host(logits, history, p, num_prompt_tokens, false).first;
             },
             py::arg("logits"), py::arg("history") = std::vector<int64_t>(), py::arg("position") = 0,
             py::arg("num_prompt_tokens") = 0, "Host reference of sample_logits (same semantics, same RNG).")
        .def("scaled_logits",
             [](Sampler& s, const logits_array& logits, const std::vector<int64_t>& history,
                int64_t num_prompt_tokens, py::object device) {
                 const std::string kind = device.is_none() ? "any" : device.cast<std::string>();
                 return s.run_gpu(logits, history, 0, num_prompt_tokens, kind, true).second;
             },
             py::arg("logits"), py::arg("history") = std::vector<int64_t>(), py::arg("num_prompt_tokens") = 0,
             py::arg("device") = py::none(), "z = penalised logits / temperature as computed by the GPU kernels.")
        .def("scaled_logits_host",
             [](Sampler& s, const logits_array& logits, const std::vector<int64_t>& history, int64_t num_prompt_tokens) {
                 return s.run_host(logits, history, 0, num_prompt_tokens, true).second;
             },
             py::arg("logits"), py::arg("history") = std::vector<int64_t>(), py::arg("num_prompt_tokens") = 0,
             "z as computed by the host reference.");
}

}  // namespace gptoss_python
