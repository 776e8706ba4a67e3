// Placeholder: Device and kernel-launch bindings land with the CPU execution layer.
#include "bindings.h"

namespace gptoss_python {
void register_device(pybind11::module_&) {}
}  // namespace gptoss_python
