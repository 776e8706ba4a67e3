// _metal.Context over the C context API, on the C model of a _metal.Model (one mapping per model).
// Long-running calls (process, sample) release the GIL; cancel() may be called from another thread.
// Thread safety (docs/thread-safety.md): the C context refuses overlapping calls (InvalidStateError);
// a call that releases the GIL holds its own C reference, and close() cancels and waits for it.
#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
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

// The sampling settings of one sample/generate call, validated (see check_sampling).
struct SamplingSettings {
    uint64_t max_tokens = 0;
    float temperature = 1.0f;
    uint64_t seed = 0;
    float top_p = 1.0f;
    uint32_t top_k = 0;
    float min_p = 0.0f;
    float presence_penalty = 0.0f;
    float frequency_penalty = 0.0f;
    float repetition_penalty = 1.0f;
    std::vector<uint32_t> stop_tokens;
};

// Owns a C sampler.
struct SamplerHandle {
    gptoss_sampler_t sampler = nullptr;
    SamplerHandle() = default;
    SamplerHandle(const SamplerHandle&) = delete;
    SamplerHandle& operator=(const SamplerHandle&) = delete;
    ~SamplerHandle() { gptoss_sampler_release(sampler); }
};

// A C sampler with `settings`; the setters check the ranges (messages name the argument, its value
// and the range), so Context.sample, Context.generate and Sampler report a bad value identically.
void make_sampler(const SamplingSettings& settings, SamplerHandle& handle) {
    check(gptoss_sampler_create(&handle.sampler), "gptoss_sampler_create");
    gptoss_sampler_t sampler = handle.sampler;
    check(gptoss_sampler_set_temperature(sampler, settings.temperature), "gptoss_sampler_set_temperature");
    check(gptoss_sampler_set_seed(sampler, settings.seed), "gptoss_sampler_set_seed");
    check(gptoss_sampler_set_top_p(sampler, settings.top_p), "gptoss_sampler_set_top_p");
    check(gptoss_sampler_set_top_k(sampler, settings.top_k), "gptoss_sampler_set_top_k");
    check(gptoss_sampler_set_min_p(sampler, settings.min_p), "gptoss_sampler_set_min_p");
    check(gptoss_sampler_set_presence_penalty(sampler, settings.presence_penalty), "gptoss_sampler_set_presence_penalty");
    check(gptoss_sampler_set_frequency_penalty(sampler, settings.frequency_penalty), "gptoss_sampler_set_frequency_penalty");
    check(gptoss_sampler_set_repetition_penalty(sampler, settings.repetition_penalty),
          "gptoss_sampler_set_repetition_penalty");
    check(gptoss_sampler_set_stop_tokens(sampler, settings.stop_tokens.data(), settings.stop_tokens.size()),
          "gptoss_sampler_set_stop_tokens");
}

class Context {
public:
    // `model` is a _metal.Model; the C context retains its C model, so closing the Python model
    // later does not invalidate the context.
    Context(const py::object& model, size_t context_length, size_t max_batch_tokens, bool fp32_kv) {
        gptoss_model_t native = native_model(model);
        gptoss_tokenizer_t tokenizer = nullptr;
        check(gptoss_model_get_tokenizer(native, &tokenizer), "gptoss_model_get_tokenizer");
        uint32_t vocabulary = 0;
        const gptoss_status vocabulary_status = gptoss_tokenizer_get_num_tokens(tokenizer, &vocabulary);
        gptoss_tokenizer_release(tokenizer);
        check(vocabulary_status, "gptoss_tokenizer_get_num_tokens");
        vocabulary_ = vocabulary;
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
    // pybind11 keeps the Python object alive while any of its methods runs: no call is in flight here.
    ~Context() { gptoss_context_release(context_); }
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;

    // Frees the KV cache and buffers now instead of at garbage collection; later calls raise
    // InvalidStateError. If another thread is inside a call that released the GIL (process,
    // sample, append of text), that call is cancelled (it raises CancelledError, within one kernel)
    // and close waits for it to return before freeing. Idempotent.
    void close() {
        gptoss_context_t context = context_;
        if (context == nullptr) {
            return;
        }
        context_ = nullptr;  // with the GIL held: no new call can start from here on
        bool busy;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            busy = in_flight_ != 0;
        }
        if (busy) {
            gptoss_context_cancel(context);
            py::gil_scoped_release release;
            std::unique_lock<std::mutex> lock(mutex_);
            idle_.wait(lock, [this] { return in_flight_ == 0; });
        }
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

    uint32_t vocabulary_size() const { return vocabulary_; }

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

    // ids: an int, a NumPy integer, or an iterable / 1-D integer array of them (floats and bools are
    // refused; every id must be in the vocabulary).
    size_t append_tokens(const py::object& ids) {
        const std::vector<uint32_t> tokens = token_ids_argument("Context.append", "token id", ids, vocabulary_);
        check(gptoss_context_append_tokens(ctx(), tokens.size(), tokens.data()), "gptoss_context_append_tokens");
        return tokens.size();
    }

    size_t append_bytes(const py::bytes& text) {
        std::string data = text;
        size_t n = 0;
        Call call(*this);
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_append_chars(call.context, data.data(), data.size(), &n);
        }
        call.check(status, "gptoss_context_append_chars");
        return n;
    }

    void process() {
        Call call(*this);
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_process(call.context);
        }
        call.check(status, "gptoss_context_process");
    }

    // Validates every argument of sample / generate as `function` names them and returns them
    // normalised: (max_tokens, temperature, seed, top_p, top_k, min_p, presence_penalty,
    // frequency_penalty, repetition_penalty, stop_tokens).
    SamplingSettings settings(const char* function, const py::object& max_tokens, const py::object& temperature,
                              const py::object& seed, const py::object& top_p, const py::object& top_k,
                              const py::object& min_p, const py::object& presence_penalty,
                              const py::object& frequency_penalty, const py::object& repetition_penalty,
                              const py::object& stop_tokens) const {
        SamplingSettings s;
        s.max_tokens = integer_argument(function, "max_output_tokens", max_tokens, UINT64_MAX);
        s.temperature = real_argument(function, "temperature", temperature);
        s.seed = integer_argument(function, "seed", seed, UINT64_MAX);
        s.top_p = real_argument(function, "top_p", top_p);
        s.top_k = static_cast<uint32_t>(integer_argument(function, "top_k", top_k, UINT32_MAX, "(0 disables top-k)"));
        s.min_p = real_argument(function, "min_p", min_p);
        s.presence_penalty = real_argument(function, "presence_penalty", presence_penalty);
        s.frequency_penalty = real_argument(function, "frequency_penalty", frequency_penalty);
        s.repetition_penalty = real_argument(function, "repetition_penalty", repetition_penalty);
        s.stop_tokens = token_ids_argument(function, "stop token", stop_tokens, vocabulary_);
        SamplerHandle ranges;
        make_sampler(s, ranges);  // the range checks, in one place (the C setters)
        return s;
    }

    py::tuple check_sampling(const std::string& function, const py::object& max_tokens, const py::object& temperature,
                             const py::object& seed, const py::object& top_p, const py::object& top_k,
                             const py::object& min_p, const py::object& presence_penalty,
                             const py::object& frequency_penalty, const py::object& repetition_penalty,
                             const py::object& stop_tokens) const {
        const SamplingSettings s = settings(function.c_str(), max_tokens, temperature, seed, top_p, top_k, min_p,
            presence_penalty, frequency_penalty, repetition_penalty, stop_tokens);
        return py::make_tuple(s.max_tokens, s.temperature, s.seed, s.top_p, s.top_k, s.min_p, s.presence_penalty,
                              s.frequency_penalty, s.repetition_penalty, s.stop_tokens);
    }

    std::vector<uint32_t> sample(const py::object& max_tokens, const py::object& temperature, const py::object& seed,
                                 const py::object& top_p, const py::object& top_k, const py::object& min_p,
                                 const py::object& presence_penalty, const py::object& frequency_penalty,
                                 const py::object& repetition_penalty, const py::object& stop_tokens) {
        const SamplingSettings s = settings("Context.sample", max_tokens, temperature, seed, top_p, top_k, min_p,
            presence_penalty, frequency_penalty, repetition_penalty, stop_tokens);
        SamplerHandle sampler;
        make_sampler(s, sampler);
        // Room for what can actually be produced: at most the context's free space (at least 1, so
        // that a full context still reports context_overflow), never max_output_tokens up front.
        const size_t used = num_tokens();
        const size_t room = max_tokens_value() - std::min(used, max_tokens_value());
        const uint64_t capacity = std::min<uint64_t>(s.max_tokens, std::max<size_t>(room, 1));
        std::vector<uint32_t> out(s.max_tokens == 0 ? 0 : static_cast<size_t>(capacity));
        size_t n = 0;
        Call call(*this);
        gptoss_status status;
        {
            py::gil_scoped_release release;
            status = gptoss_context_sample_with_sampler(call.context, sampler.sampler, out.size(), out.data(), &n);
        }
        call.check(status, "gptoss_context_sample_with_sampler");
        out.resize(n);
        return out;
    }

    void reset() { check(gptoss_context_reset(ctx()), "gptoss_context_reset"); }
    // Needs no guard: gptoss_context_cancel is safe from any thread, during any call.
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
    // A call that releases the GIL: it holds a C reference of its own (so that nothing can free
    // the context under it, whatever another thread does) and is counted, so that close() can
    // cancel it and wait for it. Constructed and destroyed with the GIL held.
    struct Call {
        Context& owner;
        gptoss_context_t context;
        explicit Call(Context& c) : owner(c), context(c.ctx()) {
            gptoss_context_retain(context);
            std::lock_guard<std::mutex> lock(owner.mutex_);
            owner.in_flight_++;
        }
        ~Call() {
            gptoss_context_release(context);
            std::lock_guard<std::mutex> lock(owner.mutex_);
            owner.in_flight_--;
            owner.idle_.notify_all();
        }
        Call(const Call&) = delete;
        Call& operator=(const Call&) = delete;
        // Raises for a failure; a call cancelled because another thread closed the context says so.
        void check(gptoss_status status, const char* what) const {
            if (status == gptoss_status_cancelled && owner.context_ == nullptr) {
                raise_message(status, std::string(what) +
                    ": cancelled: another thread closed the context while this call was running");
            }
            gptoss_python::check(status, what);
        }
    };

    size_t max_tokens_value() const { return max_tokens(); }

    gptoss_context_t context_ = nullptr;
    uint32_t vocabulary_ = 0;
    std::mutex mutex_;
    std::condition_variable idle_;
    size_t in_flight_ = 0;
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
        .def_property_readonly("vocabulary_size", &Context::vocabulary_size)
        .def("append_tokens", &Context::append_tokens, py::arg("tokens"))
        .def("append_bytes", &Context::append_bytes, py::arg("text"))
        .def("process", &Context::process)
        .def("sample", &Context::sample, py::arg("max_tokens"), py::arg("temperature"), py::arg("seed"),
             py::arg("top_p"), py::arg("top_k"), py::arg("min_p"), py::arg("presence_penalty"),
             py::arg("frequency_penalty"), py::arg("repetition_penalty"), py::arg("stop_tokens"))
        .def("check_sampling", &Context::check_sampling, py::arg("function"), py::arg("max_tokens"),
             py::arg("temperature"), py::arg("seed"), py::arg("top_p"), py::arg("top_k"), py::arg("min_p"),
             py::arg("presence_penalty"), py::arg("frequency_penalty"), py::arg("repetition_penalty"),
             py::arg("stop_tokens"),
             "Validate sample/generate arguments; returns (max_tokens, temperature, seed, top_p, top_k, min_p, "
             "presence_penalty, frequency_penalty, repetition_penalty, stop_tokens) normalised.")
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
