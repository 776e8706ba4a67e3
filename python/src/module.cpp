// gpt_oss_metal._metal: the pybind11 extension over the C runtime.
#include <cmath>
#include <cstring>
#include <string>

#include <pybind11/numpy.h>

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

[[noreturn]] void raise_type_error(const std::string& message) {
    py::object errors = py::module_::import("gpt_oss_metal.errors");
    py::object exception = errors.attr("InvalidArgumentTypeError")(message);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exception.ptr())), exception.ptr());
    throw py::error_already_set();
}

namespace {

// repr(value), shortened for a one-line message.
std::string shown(py::handle value) {
    std::string text = py::str(py::repr(value));
    if (text.size() > 60) {
        text = text.substr(0, 57) + "...";
    }
    return text;
}

bool is_numpy_bool(py::handle value) {
    // numpy.bool_ (no __index__ in NumPy 2, deprecated before): checked by name to avoid importing NumPy.
    const char* name = Py_TYPE(value.ptr())->tp_name;
    return std::strcmp(name, "numpy.bool_") == 0 || std::strcmp(name, "numpy.bool") == 0;
}

// The exact integer of an int / NumPy integer, or a type error naming `what`.
py::object exact_integer(const std::string& what, py::handle value) {
    if (PyBool_Check(value.ptr()) || is_numpy_bool(value)) {
        raise_type_error(what + " must be an integer, not a bool (" + shown(value) + ")");
    }
    if (PyLong_Check(value.ptr())) {
        return py::reinterpret_borrow<py::object>(value);
    }
    if (!PyFloat_Check(value.ptr()) && PyIndex_Check(value.ptr())) {
        PyObject* index = PyNumber_Index(value.ptr());
        if (index != nullptr) {
            return py::reinterpret_steal<py::object>(index);
        }
        PyErr_Clear();
    }
    raise_type_error(what + " must be an integer, not " + Py_TYPE(value.ptr())->tp_name + " (" + shown(value) + ")");
}

// The value of a Python int if it lies in [0, max]; false otherwise.
bool integer_in_range(py::handle integer, uint64_t max, uint64_t* value_out) {
    const unsigned long long value = PyLong_AsUnsignedLongLong(integer.ptr());
    if (value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();  // negative or wider than 64 bits
        return false;
    }
    *value_out = value;
    return value <= max;
}

std::string prefix(const char* function, const char* name) {
    return std::string(function) + ": " + name;
}

}  // namespace

uint64_t integer_argument(const char* function, const char* name, py::handle value, uint64_t max, const char* range) {
    const py::object integer = exact_integer(prefix(function, name), value);
    uint64_t result = 0;
    if (!integer_in_range(integer, max, &result)) {
        raise_message(gptoss_status_invalid_argument,
            prefix(function, name) + " " + shown(integer) + " is out of range: it must be an integer in [0, " +
            std::to_string(max) + "]" + (range != nullptr ? std::string(" ") + range : std::string()));
    }
    return result;
}

float real_argument(const char* function, const char* name, py::handle value) {
    if (PyBool_Check(value.ptr()) || is_numpy_bool(value)) {
        raise_type_error(prefix(function, name) + " must be a number, not a bool (" + shown(value) + ")");
    }
    const double number = PyFloat_AsDouble(value.ptr());
    if (number == -1.0 && PyErr_Occurred()) {
        const bool overflow = PyErr_ExceptionMatches(PyExc_OverflowError);
        PyErr_Clear();
        if (overflow) {
            raise_message(gptoss_status_invalid_argument,
                prefix(function, name) + " " + shown(value) + " is out of range: it does not fit a float");
        }
        raise_type_error(prefix(function, name) + " must be a number, not " + Py_TYPE(value.ptr())->tp_name + " (" +
                         shown(value) + ")");
    }
    const float result = static_cast<float>(number);
    if ((std::isfinite(number) && !std::isfinite(result)) || (number != 0.0 && result == 0.0f)) {
        raise_message(gptoss_status_invalid_argument,
            prefix(function, name) + " " + shown(value) + " is out of range: it does not fit a float32");
    }
    return result;
}

std::vector<uint32_t> token_ids_argument(const char* function, const char* what, py::handle value, uint64_t vocabulary) {
    const uint64_t max = vocabulary == 0 ? UINT32_MAX : vocabulary - 1;
    const std::string range = vocabulary == 0
        ? std::string("is not a token id (ids are in [0, ") + std::to_string(max) + "])"
        : std::string("is outside the vocabulary (ids 0 to ") + std::to_string(max) + ", " +
              std::to_string(vocabulary) + " tokens)";
    auto element = [&](py::handle item, const std::string& where) -> uint32_t {
        const py::object integer = exact_integer(prefix(function, what) + where, item);
        uint64_t id = 0;
        if (!integer_in_range(integer, max, &id)) {
            raise_message(gptoss_status_invalid_argument,
                prefix(function, what) + " " + shown(integer) + where + " " + range);
        }
        return static_cast<uint32_t>(id);
    };
    auto at = [](size_t index) { return " at index " + std::to_string(index); };
    std::vector<uint32_t> ids;
    if (py::isinstance<py::array>(value)) {
        const py::array array = py::reinterpret_borrow<py::array>(value);
        const char kind = array.dtype().kind();
        if (array.ndim() > 1) {
            raise_message(gptoss_status_invalid_argument, prefix(function, what) + "s must be a 1-D array, not " +
                std::to_string(array.ndim()) + "-D");
        }
        if (kind == 'i' || kind == 'u') {
            // Any integer dtype: exact values through int64 / uint64.
            if (kind == 'i') {
                const auto values = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(array);
                for (py::ssize_t i = 0; i < values.size(); i++) {
                    const int64_t id = values.data()[i];
                    if (id < 0 || static_cast<uint64_t>(id) > max) {
                        raise_message(gptoss_status_invalid_argument,
                            prefix(function, what) + " " + std::to_string(id) + at(i) + " " + range);
                    }
                    ids.push_back(static_cast<uint32_t>(id));
                }
            } else {
                const auto values = py::array_t<uint64_t, py::array::c_style | py::array::forcecast>::ensure(array);
                for (py::ssize_t i = 0; i < values.size(); i++) {
                    const uint64_t id = values.data()[i];
                    if (id > max) {
                        raise_message(gptoss_status_invalid_argument,
                            prefix(function, what) + " " + std::to_string(id) + at(i) + " " + range);
                    }
                    ids.push_back(static_cast<uint32_t>(id));
                }
            }
            return ids;
        }
        if (kind != 'O') {
            raise_type_error(prefix(function, what) + "s must be integers, not a " +
                std::string(py::str(array.dtype())) + " array");
        }
        // An object array: element by element below.
    } else if (PyLong_Check(value.ptr()) || PyBool_Check(value.ptr()) || is_numpy_bool(value) ||
               (!PyFloat_Check(value.ptr()) && PyIndex_Check(value.ptr()))) {
        ids.push_back(element(value, at(0)));  // a single id is element 0 of what is appended
        return ids;
    } else if (PyFloat_Check(value.ptr()) || PyUnicode_Check(value.ptr()) || PyBytes_Check(value.ptr()) ||
               !py::isinstance<py::iterable>(value)) {
        raise_type_error(prefix(function, what) + " must be an integer or a sequence of integers, not " +
                         Py_TYPE(value.ptr())->tp_name + " (" + shown(value) + ")");
    }
    size_t index = 0;
    for (const py::handle item : py::reinterpret_borrow<py::iterable>(value)) {
        ids.push_back(element(item, at(index)));
        index++;
    }
    return ids;
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
