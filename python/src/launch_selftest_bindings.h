// gpt_oss_metal._metal._launch_selftest: the C launch wrappers' misuse self-test, for tests.
#pragma once

#include <pybind11/pybind11.h>

namespace gptoss_python {

void register_launch_selftest(pybind11::module_& m);  // launch_selftest_bindings.cpp

}  // namespace gptoss_python
