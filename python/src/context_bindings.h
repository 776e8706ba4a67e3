// Context bindings (context_bindings.cpp): _metal.Context.
#pragma once

#include <pybind11/pybind11.h>

namespace gptoss_python {

void register_context(pybind11::module_& m);

}  // namespace gptoss_python
