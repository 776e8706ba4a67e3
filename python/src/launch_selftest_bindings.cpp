// _metal._launch_selftest() -> (failures, report): runs gptoss_launch_selftest (metal/source/launch-selftest.c).
#include <string>
#include <utility>
#include <vector>

#include <pybind11/pybind11.h>

#include "launch_selftest_bindings.h"
#include "internal/launch-common.h"

namespace py = pybind11;

namespace gptoss_python {

void register_launch_selftest(py::module_& m) {
    m.def(
        "_launch_selftest",
        []() {
            // The report has one line per expectation (~200 checks of <= ~300 characters each).
            std::vector<char> report(1 << 20, '\0');
            int failures;
            {
                py::gil_scoped_release release;  // the CPU device runs the good calls' kernels
                failures = gptoss_launch_selftest(report.data(), report.size());
            }
            return std::make_pair(failures, std::string(report.data()));
        },
        "Calls every C kernel launch wrapper with bad and good arguments on a CPU device; returns "
        "(failures, report). failures is -1 if the self-test could not be set up.");
}

}  // namespace gptoss_python
