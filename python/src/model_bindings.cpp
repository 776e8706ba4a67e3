// Placeholder: Model and Tokenizer bindings land with the loader.
#include "bindings.h"

namespace gptoss_python {
void register_model(pybind11::module_&) {}
}  // namespace gptoss_python
