// gpt_oss_metal._metal.Sampler: the sampler object and its GPU / host sampling paths for tests.
#pragma once

#include <pybind11/pybind11.h>

namespace gptoss_python {

void register_sampler(pybind11::module_& m);  // sampler_bindings.cpp

}  // namespace gptoss_python
