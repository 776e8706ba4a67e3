// Declarations shared by the translation units of the gpt_oss_metal._metal extension.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include <gpt-oss.h>

namespace gptoss_python {

// Raises the gpt_oss_metal.errors exception class matching `status`, with the runtime's last error
// message for this thread (which names the file, field or argument at fault). Never returns.
[[noreturn]] void raise_status(gptoss_status status, const char* what);

// Records `message` as this thread's last error, then raises like raise_status: for failures the
// bindings detect themselves (bad Python arguments), so they read like the runtime's own.
[[noreturn]] void raise_message(gptoss_status status, const std::string& message);

// Raises gpt_oss_metal.errors.InvalidArgumentTypeError (an InvalidArgumentError and a TypeError)
// with `message`: an argument of the wrong type (a float or bool where an integer is expected).
[[noreturn]] void raise_type_error(const std::string& message);

// Argument conversion shared by every binding that takes numbers from Python, so that a bad value
// gives one line naming the function, the argument, the value and the allowed range (instead of
// pybind11's signature dump): InvalidArgumentTypeError for the wrong type, InvalidArgumentError for
// a value out of range.
//   integer_argument: a Python int or NumPy integer (not bool, not float) in [0, max].
//   real_argument:    a Python int/float or NumPy number (not bool) as a float32; a non-zero value
//                     too small or large for float32 is out of range (the setters check the rest).
//   token_ids_argument: an int / NumPy integer, or an iterable or 1-D NumPy integer array of them,
//                     each in [0, vocabulary) (vocabulary 0: any uint32). `what` names one element.
uint64_t integer_argument(const char* function, const char* name, pybind11::handle value, uint64_t max,
                          const char* range = nullptr);
float real_argument(const char* function, const char* name, pybind11::handle value);
std::vector<uint32_t> token_ids_argument(const char* function, const char* what, pybind11::handle value,
                                         uint64_t vocabulary);

// Calls raise_status unless status is success.
inline void check(gptoss_status status, const char* what) {
    if (status != gptoss_status_success) {
        raise_status(status, what);
    }
}

// The C handles inside the extension's objects (borrowed: valid while the Python object lives and
// is not closed). Raise TypeError for an object of another class and InvalidStateError for a
// closed one. Implemented in model_bindings.cpp, which owns the Model and Tokenizer classes.
gptoss_model_t native_model(pybind11::handle model);           // a _metal.Model
gptoss_tokenizer_t native_tokenizer(pybind11::handle tokenizer);  // a _metal.Tokenizer

void register_model(pybind11::module_& m);   // model_bindings.cpp: Model, Tokenizer
void register_device(pybind11::module_& m);  // device_bindings.cpp: Device, kernel launches for tests

}  // namespace gptoss_python
