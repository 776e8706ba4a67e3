// Declarations shared by the translation units of the gpt_oss_metal._metal extension.
#pragma once

#include <string>

#include <pybind11/pybind11.h>

#include <gpt-oss.h>

namespace gptoss_python {

// Raises the gpt_oss_metal.errors exception class matching `status`, with the runtime's last error
// message for this thread (which names the file, field or argument at fault). Never returns.
[[noreturn]] void raise_status(gptoss_status status, const char* what);

// Records `message` as this thread's last error, then raises like raise_status: for failures the
// bindings detect themselves (bad Python arguments), so they read like the runtime's own.
[[noreturn]] void raise_message(gptoss_status status, const std::string& message);

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
