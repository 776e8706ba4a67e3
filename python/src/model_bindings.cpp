// Model and Tokenizer bindings: _metal.Model(path), _metal.Tokenizer (from Model.tokenizer).
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "internal/model-file.h"
#include "internal/uuid.h"

namespace py = pybind11;

// internal/model.h (declared there; repeated here to keep the C structs out of C++).
extern "C" enum gptoss_status gptoss_model_check_file(const struct gptoss_model* model);

namespace gptoss_python {
namespace {

// Like raise_status, but for an OS failure also sets the exception's errno attribute (it is a
// GptOssIOError, an OSError), so `except OSError as e: e.errno == errno.ENOENT` works. Only errno
// is set: setting strerror/filename would make OSError.__str__ replace the runtime's message.
[[noreturn]] void raise_load_error(gptoss_status status, int error_number) {
    std::string message = gptoss_get_last_error_message();
    if (message.empty()) {
        message = std::string("gptoss_model_create_from_file failed with status ") + gptoss_status_to_string(status);
    }
    // The runtime writes paths as valid UTF-8 (other bytes as \xNN); decode defensively anyway so a
    // message can never fail to become a str.
    py::object text = py::reinterpret_steal<py::object>(
        PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()), "backslashreplace"));
    if (!text) {
        throw py::error_already_set();
    }
    py::object errors = py::module_::import("gpt_oss_metal.errors");
    py::object exception;
    if (status == gptoss_status_invalid_file && error_number != 0) {
        // Not a regular file (directory, FIFO, device, socket): a ModelFileError that is also an OSError.
        exception = errors.attr("NotARegularFileError")(text);
    } else {
        exception = errors.attr("exception_for_status")(static_cast<int>(status), text);
    }
    if ((status == gptoss_status_io_error || status == gptoss_status_invalid_file) && error_number != 0) {
        exception.attr("errno") = error_number;
    }
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.ptr())), exception.ptr());
    throw py::error_already_set();
}

uint32_t token_id_argument(long long token_id, const char* function) {
    if (token_id < 0 || token_id > static_cast<long long>(UINT32_MAX)) {
        raise_message(gptoss_status_invalid_argument,
            std::string(function) + ": token id " + std::to_string(token_id) + " is outside the vocabulary");
    }
    return static_cast<uint32_t>(token_id);
}

class Tokenizer {
public:
    explicit Tokenizer(gptoss_tokenizer_t tokenizer) : tokenizer_(tokenizer) {}
    gptoss_tokenizer_t handle() const { return tokenizer_; }
    ~Tokenizer() { gptoss_tokenizer_release(tokenizer_); }
    Tokenizer(const Tokenizer&) = delete;
    Tokenizer& operator=(const Tokenizer&) = delete;

    uint32_t num_text_tokens() const {
        uint32_t n = 0;
        check(gptoss_tokenizer_get_num_text_tokens(tokenizer_, &n), "gptoss_tokenizer_get_num_text_tokens");
        return n;
    }

    uint32_t num_special_tokens() const {
        uint32_t n = 0;
        check(gptoss_tokenizer_get_num_special_tokens(tokenizer_, &n), "gptoss_tokenizer_get_num_special_tokens");
        return n;
    }

    uint32_t num_tokens() const {
        uint32_t n = 0;
        check(gptoss_tokenizer_get_num_tokens(tokenizer_, &n), "gptoss_tokenizer_get_num_tokens");
        return n;
    }

    py::bytes decode(long long token_id) const {
        const void* ptr = nullptr;
        size_t size = 0;
        check(gptoss_tokenizer_decode(tokenizer_, token_id_argument(token_id, "decode"), &ptr, &size),
              "gptoss_tokenizer_decode");
        return py::bytes(static_cast<const char*>(ptr), size);
    }

    // Every text token's bytes, by id: one call instead of 199998 (for building the BPE encoder).
    py::list text_tokens() const {
        const uint32_t n = num_text_tokens();
        py::list result(n);
        for (uint32_t id = 0; id < n; id++) {
            const void* ptr = nullptr;
            size_t size = 0;
            check(gptoss_tokenizer_decode(tokenizer_, id, &ptr, &size), "gptoss_tokenizer_decode");
            PyObject* item = PyBytes_FromStringAndSize(static_cast<const char*>(ptr), static_cast<Py_ssize_t>(size));
            if (item == nullptr) {
                throw py::error_already_set();
            }
            PyList_SET_ITEM(result.ptr(), id, item);  // steals the reference
        }
        return result;
    }

    uint32_t special_token_id_by_role(int role) const {
        uint32_t id = 0;
        check(gptoss_tokenizer_get_special_token_id(tokenizer_, static_cast<gptoss_special_token>(role), &id),
              "gptoss_tokenizer_get_special_token_id");
        return id;
    }

    // Accepts a role value (enum gptoss_special_token), a role name ("return") or token text ("<|return|>").
    uint32_t special_token_id(const py::object& role) const {
        if (py::isinstance<py::int_>(role)) {
            return special_token_id_by_role(role.cast<int>());
        }
        if (!py::isinstance<py::str>(role)) {
            raise_message(gptoss_status_invalid_argument,
                "special_token_id: expected a role name or value, got " + std::string(py::str(py::type::of(role))));
        }
        std::string name = role.cast<std::string>();
        std::string bare = name;
        if (bare.size() > 4 && bare.compare(0, 2, "<|") == 0 && bare.compare(bare.size() - 2, 2, "|>") == 0) {
            bare = bare.substr(2, bare.size() - 4);
        }
        for (int r = gptoss_special_token_invalid + 1; r < gptoss_special_token_max; r++) {
            if (bare == gptoss_special_token_role_name(static_cast<gptoss_special_token>(r))) {
                return special_token_id_by_role(r);
            }
        }
        raise_message(gptoss_status_invalid_argument, "special_token_id: unknown special token role '" + name + "'");
    }

    std::string regex() const {
        const char* regex = nullptr;
        check(gptoss_tokenizer_get_regex(tokenizer_, &regex), "gptoss_tokenizer_get_regex");
        return regex;
    }

    py::bytes token_uuid(long long token_id) const {
        const uint8_t* uuid = nullptr;
        check(gptoss_tokenizer_get_token_uuid(tokenizer_, token_id_argument(token_id, "token_uuid"), &uuid),
              "gptoss_tokenizer_get_token_uuid");
        return py::bytes(reinterpret_cast<const char*>(uuid), GPTOSS_UUID_SIZE);
    }

    // The UUID of each special-token slot (16 zero bytes for an unnamed slot), in id order.
    py::list special_token_uuids() const {
        const uint32_t text = num_text_tokens();
        const uint32_t special = num_special_tokens();
        py::list result;
        for (uint32_t slot = 0; slot < special; slot++) {
            result.append(token_uuid(static_cast<long long>(text) + slot));
        }
        return result;
    }

private:
    gptoss_tokenizer_t tokenizer_;
};

class Model {
public:
    explicit Model(const py::object& path) {
        // os.fsencode accepts str, bytes and os.PathLike and gives the bytes the OS sees (a str
        // that came from undecodable bytes round-trips through surrogateescape).
        py::object os = py::module_::import("os");
        const std::string path_bytes = os.attr("fsencode")(path).cast<std::string>();
        // For messages: the bytes as UTF-8, undecodable bytes as \xNN (like the runtime's messages).
        py::object shown = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
            path_bytes.data(), static_cast<Py_ssize_t>(path_bytes.size()), "backslashreplace"));
        if (!shown) {
            throw py::error_already_set();
        }
        shown_path_ = PyUnicode_AsUTF8(shown.ptr());
        path_ = os.attr("fsdecode")(py::bytes(path_bytes));  // str, surrogateescape for undecodable bytes
        if (path_bytes.find('\0') != std::string::npos) {
            raise_message(gptoss_status_invalid_argument, "Model: path " + shown_path_ + " contains a NUL character");
        }
        gptoss_model_t model = nullptr;
        gptoss_status status;
        int error_number = 0;
        {
            // Validation walks the whole token table; let other Python threads run meanwhile.
            py::gil_scoped_release release;
            errno = 0;
            status = gptoss_model_create_from_file(path_bytes.c_str(), &model);
            error_number = errno;
        }
        if (status != gptoss_status_success) {
            raise_load_error(status, error_number);
        }
        model_ = model;  // nothing below can throw: the destructor releases it
    }
    ~Model() { gptoss_model_release(model_); }
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    // The C model; InvalidStateError after close().
    gptoss_model_t handle() const {
        if (model_ == nullptr) {
            raise_message(gptoss_status_invalid_state, "Model: the model is closed (" + shown_path_ + ")");
        }
        return model_;
    }

    // Drops this object's reference to the C model. Contexts and tokenizers created from it hold
    // their own references, so they stay usable; the mapping goes when the last one is released.
    void close() {
        gptoss_model_t model = model_;
        model_ = nullptr;
        gptoss_model_release(model);
    }
    bool closed() const { return model_ == nullptr; }

    py::object path() const { return path_; }

    // ModelFileError if the file changed since the load (truncated, rewritten in place).
    void check_file() const {
        check(gptoss_model_check_file(handle()), "gptoss_model_check_file");
    }

    std::string load_warning() const {
        const char* warning = nullptr;
        check(gptoss_model_get_load_warning(handle(), &warning), "gptoss_model_get_load_warning");
        return warning;
    }

    size_t max_context_length() const {
        size_t length = 0;
        check(gptoss_model_get_max_context_length(handle(), &length), "gptoss_model_get_max_context_length");
        return length;
    }

    std::unique_ptr<Tokenizer> tokenizer() const {
        gptoss_tokenizer_t tokenizer = nullptr;
        check(gptoss_model_get_tokenizer(handle(), &tokenizer), "gptoss_model_get_tokenizer");
        return std::make_unique<Tokenizer>(tokenizer);
    }

    // The 17 model-header fields and the tokenizer-section sizes, as stored in the file.
    py::dict header() const {
        const gptoss_model_file* file = gptoss_model_get_file(handle());
        const gptoss_model_header& h = file->header;
        py::dict d;
        d["context_length"] = h.context_length;
        d["num_blocks"] = h.num_blocks;
        d["num_experts"] = h.num_experts;
        d["num_active_experts"] = h.num_active_experts;
        d["embedding_dim"] = h.embedding_dim;
        d["mlp_dim"] = h.mlp_dim;
        d["swiglu_limit"] = static_cast<double>(h.swiglu_limit);
        d["head_dim"] = h.head_dim;
        d["num_heads"] = h.num_heads;
        d["num_kv_heads"] = h.num_kv_heads;
        d["attention_window"] = h.attention_window;
        d["rope_theta"] = static_cast<double>(h.rope_theta);
        d["interpolation_scale"] = static_cast<double>(h.interpolation_scale);
        d["yarn_offset"] = static_cast<double>(h.yarn_offset);
        d["yarn_scale"] = static_cast<double>(h.yarn_scale);
        d["yarn_multiplier"] = static_cast<double>(h.yarn_multiplier);
        d["rmsnorm_epsilon"] = static_cast<double>(h.rmsnorm_epsilon);
        d["num_special_tokens"] = file->num_special_tokens;
        d["num_text_tokens"] = file->num_text_tokens;
        d["regex_size"] = file->regex_size;
        d["tokens_size"] = file->tokens_size;
        return d;
    }

    // Where the loader found every section and tensor: offsets and sizes in bytes, tensor names
    // as in model_bin.compute_layout ("block.0.qkv_weight", "block.1.expert.3.mlp2_bias", ...).
    py::dict layout() const {
        const gptoss_model_file* file = gptoss_model_get_file(handle());
        const gptoss_model_layout& l = file->layout;
        const gptoss_model_header& h = file->header;
        py::dict tensors;
        auto add = [&](const std::string& name, uint64_t offset, uint64_t size) {
            tensors[py::str(name)] = py::make_tuple(offset, size);
        };
        add("embedding", l.embedding.offset, l.embedding.size);
        for (uint32_t b = 0; b < h.num_blocks; b++) {
            for (int t = 0; t < gptoss_block_tensor_count; t++) {
                const auto tensor = static_cast<gptoss_block_tensor>(t);
                add("block." + std::to_string(b) + "." + gptoss_block_tensor_name(tensor),
                    gptoss_model_layout_block_tensor_offset(&l, b, tensor), l.block_tensors[t].size);
            }
        }
        add("final_norm", l.final_norm.offset, l.final_norm.size);
        add("unembedding", l.unembedding.offset, l.unembedding.size);
        py::list moe_offsets;
        for (uint32_t b = 0; b < h.num_blocks; b++) {
            moe_offsets.append(l.moe_offset + static_cast<uint64_t>(b) * l.moe_stride);
            for (uint32_t e = 0; e < h.num_experts; e++) {
                for (int t = 0; t < gptoss_expert_tensor_count; t++) {
                    const auto tensor = static_cast<gptoss_expert_tensor>(t);
                    add("block." + std::to_string(b) + ".expert." + std::to_string(e) + "." + gptoss_expert_tensor_name(tensor),
                        gptoss_model_layout_expert_tensor_offset(&l, b, e, tensor), l.expert_tensors[t].size);
                }
            }
        }
        py::dict d;
        d["special_uuids_offset"] = l.special_uuids_offset;
        d["regex_offset"] = l.regex_offset;
        d["tokens_offset"] = l.tokens_offset;
        d["weights_offset"] = l.weights_offset;
        d["vocab_size"] = l.vocab_size;
        d["moe_offsets"] = moe_offsets;
        d["expert_size"] = l.expert_size;
        d["file_size"] = l.file_size;
        d["tensors"] = tensors;
        return d;
    }

private:
    gptoss_model_t model_ = nullptr;
    py::object path_;         // str as os.fsdecode gives it
    std::string shown_path_;  // valid UTF-8 for messages
};

}  // namespace

gptoss_model_t native_model(py::handle model) {
    if (!py::isinstance<Model>(model)) {
        throw py::type_error("expected a _metal.Model, got " + py::str(py::type::of(model).attr("__name__")).cast<std::string>());
    }
    return model.cast<const Model&>().handle();
}

gptoss_tokenizer_t native_tokenizer(py::handle tokenizer) {
    if (!py::isinstance<Tokenizer>(tokenizer)) {
        throw py::type_error("expected a _metal.Tokenizer, got " +
                             py::str(py::type::of(tokenizer).attr("__name__")).cast<std::string>());
    }
    return tokenizer.cast<const Tokenizer&>().handle();
}

void register_model(py::module_& m) {
    py::dict roles;
    for (int r = gptoss_special_token_invalid + 1; r < gptoss_special_token_max; r++) {
        roles[gptoss_special_token_role_name(static_cast<gptoss_special_token>(r))] = r;
    }
    m.attr("SPECIAL_TOKEN_ROLES") = roles;

    py::class_<Tokenizer>(m, "Tokenizer", "The vocabulary stored in a model.bin (obtain it from Model.tokenizer).")
        .def_property_readonly("num_text_tokens", &Tokenizer::num_text_tokens)
        .def_property_readonly("num_special_tokens", &Tokenizer::num_special_tokens)
        .def_property_readonly("num_tokens", &Tokenizer::num_tokens)
        .def_property_readonly("regex", &Tokenizer::regex, "The pre-tokenizer regex stored in the file.")
        .def_property_readonly("special_token_uuids", &Tokenizer::special_token_uuids,
            "16-byte UUID of each special-token slot in id order (zero bytes: unnamed).")
        .def("decode", &Tokenizer::decode, py::arg("token_id"),
            "Bytes of a text token; special tokens and ids past the vocabulary raise InvalidArgumentError.")
        .def("text_tokens", &Tokenizer::text_tokens, "Bytes of every text token, indexed by id.")
        .def("special_token_id", &Tokenizer::special_token_id, py::arg("role"),
            "Id of a special token by role value, role name ('return') or text ('<|return|>'); "
            "UnsupportedArgumentError if the file does not name it.")
        .def("token_uuid", &Tokenizer::token_uuid, py::arg("token_id"),
            "16-byte UUID of a token (zero bytes for text tokens and unnamed slots).");

    py::class_<Model>(m, "Model", "A model.bin loaded by the C runtime (validated, weights memory-mapped).")
        .def(py::init<const py::object&>(), py::arg("path"))
        .def_property_readonly("path", &Model::path)
        .def_property_readonly("max_context_length", &Model::max_context_length)
        .def_property_readonly("load_warning", &Model::load_warning,
                               "The load's warning (weights above the recommended working set), or \"\".")
        .def_property_readonly("tokenizer", &Model::tokenizer)
        .def_property_readonly("header", &Model::header)
        .def_property_readonly("layout", &Model::layout)
        .def("check_file", &Model::check_file,
            "Raise ModelFileError if the model file was truncated or rewritten in place since the load "
            "(replacing it by rename is fine: the loaded file stays mapped).")
        .def("close", &Model::close,
            "Release this object's reference to the C model (contexts and tokenizers keep theirs); "
            "other calls then raise InvalidStateError. Idempotent.")
        .def_property_readonly("closed", &Model::closed);
}

}  // namespace gptoss_python
