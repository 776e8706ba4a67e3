/*
 * The kernel libraries embedded in the binary by metal/tools/embed_metal.py (see metal.cmake).
 *
 * One entry per .metal file: either a compiled .metallib (built with Xcode's `metal` compiler) or
 * the MSL source with its project includes inlined (built with only the Command Line Tools;
 * compiled at run time with newLibraryWithSource:options:error:). Keeping the files apart, one
 * MTLLibrary each, means helper functions or macros that two kernel files happen to share a name
 * for never collide, and a source library is compiled only when one of its kernels is first used.
 */
#pragma once

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum gptoss_embedded_metal_kind {
    gptoss_embedded_metal_kind_metallib = 0,   /* data: a .metallib file; load with newLibraryWithData:error: */
    gptoss_embedded_metal_kind_source = 1,     /* data: UTF-8 MSL source, NUL-terminated (size excludes the NUL) */
};

struct gptoss_embedded_metal_library {
    const char* name;                  /* the .metal file it came from, e.g. "kernels/matmul.metal" */
    enum gptoss_embedded_metal_kind kind;
    const unsigned char* data;
    size_t size;
    const char* sha256;                /* hex digest of data[0..size): names the library in messages */
    const char* const* kernel_names;   /* the `kernel void NAME(` functions it defines, NULL-terminated */
};

extern const struct gptoss_embedded_metal_library gptoss_embedded_metal_libraries[];
extern const size_t gptoss_embedded_metal_library_count;

#ifdef __cplusplus
}  // extern "C"
#endif
