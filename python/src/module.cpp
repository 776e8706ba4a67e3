// gpt_oss_metal._metal: the pybind11 extension over the C runtime.
#include <string>

#include <pybind11/pybind11.h>

#include "bindings.h"
#include "internal/error.h"
#include "bpe_bindings.h"
#include "context_bindings.h"
#include "launch_selftest_bindings.h"
#include "sampler_bindings.h"

namespace py = pybind11;

namespace gptoss_python {

[[noreturn]] void raise_status(gptoss_status status, const char* what) {
    // Exception classes live in Python (gpt_oss_metal/errors.py) so they can be documented, typed
    // and caught without importing the extension; the mapping from status to class is there too.
    std::string message = gptoss_get_last_error_message();
    if (message.empty()) {
        message = std::string(what) + " failed with status " + gptoss_status_to_string(status);
    }
    py::object errors = py::module_::import("gpt_oss_metal.errors");
    py::object exception = errors.attr("exception_for_status")(static_cast<int>(status), message);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.ptr())), exception.ptr());
    throw py::error_already_set();
}

[[noreturn]] void raise_message(gptoss_status status, const std::string& message) {
    gptoss_set_error(status, "%s", message.c_str());
    raise_status(status, message.c_str());
}

}  // namespace gptoss_python

PYBIND11_MODULE(_metal, m) {
    m.doc() = "gpt-oss-metal runtime (C library) bindings; use the gpt_oss_metal package instead.";
    gptoss_python::register_model(m);
    gptoss_python::register_bpe(m);
    gptoss_python::register_device(m);
    gptoss_python::register_context(m);
    gptoss_python::register_sampler(m);
    gptoss_python::register_launch_selftest(m);
}
