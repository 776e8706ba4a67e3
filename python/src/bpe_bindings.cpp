// Bindings of the C BPE encoder for tests: Tokenizer.encode_c, bpe_pretokenize.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "bindings.h"
#include "bpe_bindings.h"
#include "internal/bpe.h"
#include "internal/unicode-tables.h"

namespace py = pybind11;

namespace gptoss_python {
namespace {

// The UTF-8 bytes of a str, or a bytes-like as is. A lone surrogate raises InvalidTextError, the
// one class Tokenizer.encode and Context.append raise for it too.
std::string text_bytes(const py::object& text, const char* function) {
    if (py::isinstance<py::str>(text)) {
        Py_ssize_t size = 0;
        const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
        if (data == nullptr) {
            PyErr_Clear();
            py::module_::import("gpt_oss_metal.errors").attr("InvalidTextError").attr("check")(
                std::string(function), text);  // raises, naming the surrogate's index
            throw py::value_error(std::string(function) + ": the text cannot be encoded as UTF-8");
        }
        return std::string(data, static_cast<size_t>(size));
    }
    if (py::isinstance<py::bytes>(text) || py::isinstance<py::bytearray>(text) || py::isinstance<py::memoryview>(text)) {
        return py::bytes(text).cast<std::string>();
    }
    throw py::type_error(std::string(function) + "() expects str or bytes, not " +
                         py::str(py::type::of(text).attr("__name__")).cast<std::string>());
}

}  // namespace

void register_bpe(py::module_& m) {
    py::object tokenizer_class = m.attr("Tokenizer");
    tokenizer_class.attr("encode_c") = py::cpp_function(
        [](const py::object& self, const py::object& text) {
            gptoss_tokenizer_t tokenizer = native_tokenizer(self);
            const std::string bytes = text_bytes(text, "Tokenizer.encode_c");
            uint32_t* tokens = nullptr;
            size_t count = 0;
            gptoss_status status;
            {
                py::gil_scoped_release release;
                status = gptoss_tokenizer_encode(tokenizer, bytes.data(), bytes.size(), &tokens, &count);
            }
            check(status, "gptoss_tokenizer_encode");
            py::list result(count);
            for (size_t i = 0; i < count; i++) {
                PyObject* item = PyLong_FromUnsignedLong(tokens[i]);
                if (item == nullptr) {
                    std::free(tokens);
                    throw py::error_already_set();
                }
                PyList_SET_ITEM(result.ptr(), static_cast<Py_ssize_t>(i), item);  // steals the reference
            }
            std::free(tokens);
            return result;
        },
        py::name("encode_c"), py::is_method(tokenizer_class), py::arg("text"),
        "Token ids of text (str, or bytes that need not be valid UTF-8) from the C BPE encoder.");

    m.def("bpe_pretokenize", [](const py::object& text) {
            const std::string bytes = text_bytes(text, "bpe_pretokenize");
            const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
            py::list pieces;
            for (size_t pos = 0; pos < bytes.size();) {
                const size_t end = gptoss_bpe_next_piece(data, bytes.size(), pos);
                pieces.append(py::bytes(bytes.data() + pos, end - pos));
                pos = end;
            }
            return pieces;
        }, py::arg("text"), "The C pre-tokenizer's pieces of text (str or bytes), as bytes.");
    m.attr("BPE_UNICODE_VERSION") = py::str(static_cast<const char*>(gptoss_unicode_tables_version));
}

}  // namespace gptoss_python
