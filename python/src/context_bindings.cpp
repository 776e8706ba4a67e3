// _metal.Context over the C context API, on the C model of a _metal.Model (one mapping per model).
// Long-running calls (process, sample) release the GIL; cancel() may be called from another thread.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "context_bindings.h"

namespace py = pybind11;

namespace gptoss_python {
namespace {

uint32_t token_argument(const py::handle& value, size_t index) {
    const long long id = value.cast<long long>();
    if (id < 0 || id > static_cast<long long>(UINT32_MAX)) {
        raise_message(gptoss_status_invalid_argument,
            "gptoss_context_append_tokens: token id " + std::to_string(id) + " at index " + std::to_string(index) +
            " is outside the vocabulary");
    }
    return static_cast<uint32_t>(id);
}

class Context {
public:
    // `model` is a _metal.Model; the C context retains its C model, so closing the Python model
    // later does not invalidate the context.
    Context(const py::object& model, size_t context_length, size_t max_batch_tokens, bool fp32_kv) {
        gptoss_model_t native = native_model(model);
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_create(native, context_length, max_batch_tokens, &context_);
        }
        check(status, "gptoss_context_create");
        if (fp32_kv) {
            check(gptoss_context_set_fp32_kv(context_, 1), "gptoss_context_set_fp32_kv");
        }
    }
    ~Context() { gptoss_context_release(context_); }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    // Frees the KV cache and buffers now instead of at garbage collection. Must not run while
    // another thread is inside process/sample of this context. Idempotent.
    void close() {
        gptoss_context_t context = context_;
        context_ = nullptr;
        gptoss_context_release(context);
    }
    bool closed() const { return context_ == nullptr; }

    // The C context; InvalidStateError once closed.
    gptoss_context_t ctx() const {
        if (context_ == nullptr) {
            raise_message(gptoss_status_invalid_state, "Context: the context is closed");
        }
        return context_;
    }

    size_t num_tokens() const {
        size_t n = 0;
        check(gptoss_context_get_num_tokens(ctx(), &n), "gptoss_context_get_num_tokens");
        return n;
    }
    size_t num_processed_tokens() const {
        size_t n = 0;
        check(gptoss_context_get_num_processed_tokens(ctx(), &n), "gptoss_context_get_num_processed_tokens");
        return n;
    }
    size_t max_tokens() const {
        size_t n = 0;
        check(gptoss_context_get_max_tokens(ctx(), &n), "gptoss_context_get_max_tokens");
        return n;
    }
    std::vector<uint32_t> tokens() const {
        std::vector<uint32_t> result(num_tokens());
        size_t n = 0;
        check(gptoss_context_get_tokens(ctx(), result.data(), result.size(), &n), "gptoss_context_get_tokens");
        result.resize(n);
        return result;
    }

    size_t append_tokens(const py::iterable& ids) {
        std::vector<uint32_t> tokens;
        size_t index = 0;
        for (const py::handle item : ids) {
            tokens.push_back(token_argument(item, index++));
        }
        check(gptoss_context_append_tokens(ctx(), tokens.size(), tokens.data()), "gptoss_context_append_tokens");
        return tokens.size();
    }

    size_t append_bytes(const py::bytes& text) {
        std::string data = text;
        size_t n = 0;
        gptoss_context_t context = ctx();  // checked with the GIL held
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_append_chars(context, data.data(), data.size(), &n);
        }
        check(status, "gptoss_context_append_chars");
        return n;
    }

    void process() {
        gptoss_context_t context = ctx();  // checked with the GIL held
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_process(context);
        }
        check(status, "gptoss_context_process");
    }

    std::vector<uint32_t> sample(size_t max_tokens, float temperature, uint64_t seed, float top_p, uint32_t top_k,
                                 float min_p, float presence_penalty, float frequency_penalty,
                                 float repetition_penalty, const std::vector<long long>& stop_tokens) {
        std::vector<uint32_t> stops;
        for (size_t i = 0; i < stop_tokens.size(); i++) {
            stops.push_back(token_argument(py::int_(stop_tokens[i]), i));
        }
        gptoss_sampler_t sampler = nullptr;
        check(gptoss_sampler_create(&sampler), "gptoss_sampler_create");
        struct Release {
            gptoss_sampler_t s;
            ~Release() { gptoss_sampler_release(s); }
        } release_sampler{sampler};
        check(gptoss_sampler_set_temperature(sampler, temperature), "gptoss_sampler_set_temperature");
        check(gptoss_sampler_set_seed(sampler, seed), "gptoss_sampler_set_seed");
        check(gptoss_sampler_set_top_p(sampler, top_p), "gptoss_sampler_set_top_p");
        check(gptoss_sampler_set_top_k(sampler, top_k), "gptoss_sampler_set_top_k");
        check(gptoss_sampler_set_min_p(sampler, min_p), "gptoss_sampler_set_min_p");
        check(gptoss_sampler_set_presence_penalty(sampler, presence_penalty), "gptoss_sampler_set_presence_penalty");
        check(gptoss_sampler_set_frequency_penalty(sampler, frequency_penalty), "gptoss_sampler_set_frequency_penalty");
        check(gptoss_sampler_set_repetition_penalty(sampler, repetition_penalty), "gptoss_sampler_set_repetition_penalty");
        check(gptoss_sampler_set_stop_tokens(sampler, stops.data(), stops.size()), "gptoss_sampler_set_stop_tokens");
        std::vector<uint32_t> out(max_tokens);
        size_t n = 0;
        gptoss_context_t context = ctx();  // checked with the GIL held
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_sample_with_sampler(context, sampler, max_tokens, out.data(), &n);
        }
        check(status, "gptoss_context_sample_with_sampler");
        out.resize(n);
        return out;
    }

    void reset() { check(gptoss_context_reset(ctx()), "gptoss_context_reset"); }
    void cancel() { check(gptoss_context_cancel(ctx()), "gptoss_context_cancel"); }
    void set_output_all_logits(bool enabled) {
        check(gptoss_context_set_output_all_logits(ctx(), enabled ? 1 : 0), "gptoss_context_set_output_all_logits");
    }
    void set_fp32_kv(bool enabled) {
        check(gptoss_context_set_fp32_kv(ctx(), enabled ? 1 : 0), "gptoss_context_set_fp32_kv");
    }

    // A copy (the context's buffer is overwritten by the next process): float32 [rows, V].
    py::array_t<float> logits() const {
        const float* data = nullptr;
        size_t vocabulary = 0, rows = 0;
        check(gptoss_context_get_logits(ctx(), &data, &vocabulary, &rows), "gptoss_context_get_logits");
        py::array_t<float> result({rows, vocabulary});
        std::memcpy(result.mutable_data(), data, rows * vocabulary * sizeof(float));
        return result;
    }

    // uint32 [blocks, rows, k]: the experts chosen for the last chunk's tokens.
    py::array_t<uint32_t> expert_choices() const {
        const uint32_t* ids = nullptr;
        size_t blocks = 0, rows = 0, stride = 0, active = 0;
        check(gptoss_context_get_expert_choices(ctx(), &ids, &blocks, &rows, &stride, &active),
              "gptoss_context_get_expert_choices");
        py::array_t<uint32_t> result({blocks, rows, active});
        uint32_t* out = result.mutable_data();
        for (size_t b = 0; b < blocks; b++) {
            std::memcpy(out + b * rows * active, ids + b * stride * active, rows * active * sizeof(uint32_t));
        }
        return result;
    }

    // Host nanoseconds: encoding, commit + wait, sampler finish (see gptoss_context_get_host_timings).
    py::dict host_timings() const {
        uint64_t encode = 0, device = 0, finish = 0;
        check(gptoss_context_get_host_timings(ctx(), &encode, &device, &finish), "gptoss_context_get_host_timings");
        py::dict d;
        d["encode_ns"] = encode;
        d["device_ns"] = device;
        d["finish_ns"] = finish;
        return d;
    }

private:
    gptoss_context_t context_ = nullptr;
};

}  // namespace

void register_context(py::module_& m) {
    py::class_<Context>(m, "Context", "An inference context (use gpt_oss_metal.Context).")
        .def(py::init<const py::object&, size_t, size_t, bool>(), py::arg("model"), py::arg("context_length") = 0,
             py::arg("max_batch_tokens") = 0, py::arg("fp32_kv") = false, py::keep_alive<1, 2>())
        .def_property_readonly("num_tokens", &Context::num_tokens)
        .def_property_readonly("num_processed_tokens", &Context::num_processed_tokens)
        .def_property_readonly("max_tokens", &Context::max_tokens)
        .def_property_readonly("tokens", &Context::tokens)
        .def("append_tokens", &Context::append_tokens, py::arg("tokens"))
        .def("append_bytes", &Context::append_bytes, py::arg("text"))
        .def("process", &Context::process)
        .def("sample", &Context::sample, py::arg("max_tokens"), py::arg("temperature"), py::arg("seed"),
             py::arg("top_p"), py::arg("top_k"), py::arg("min_p"), py::arg("presence_penalty"),
             py::arg("frequency_penalty"), py::arg("repetition_penalty"), py::arg("stop_tokens"))
        .def("reset", &Context::reset)
        .def("cancel", &Context::cancel)
        .def("set_output_all_logits", &Context::set_output_all_logits, py::arg("enabled"))
        .def("set_fp32_kv", &Context::set_fp32_kv, py::arg("enabled"))
        .def("logits", &Context::logits)
        .def("expert_choices", &Context::expert_choices)
        .def("host_timings", &Context::host_timings)
        .def("close", &Context::close, "Free the context's KV cache and buffers now; later calls raise InvalidStateError.")
        .def_property_readonly("closed", &Context::closed);
}

}  // namespace gptoss_python
