// Test bindings of the C BPE encoder (bpe_bindings.cpp).
#pragma once

#include <pybind11/pybind11.h>

namespace gptoss_python {

// Adds Tokenizer.encode_c and the module functions bpe_pretokenize / BPE_UNICODE_VERSION.
// Call after register_model (it extends the Tokenizer class that registers).
void register_bpe(pybind11::module_& m);

}  // namespace gptoss_python
