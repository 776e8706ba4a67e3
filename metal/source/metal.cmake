# The Apple Metal device layer (included by the top-level CMakeLists.txt when GPTOSS_WITH_METAL).
#
# Defines the static library gptoss_metal_device: device-metal.m (Objective-C, ARC) plus a generated
# C file embedding the kernel libraries, one per .metal file (metal/tools/embed_metal.py):
#   METALLIB  Xcode's `metal` compiler works here: every kernel file is compiled at build time
#             (metal -c -> .air, metallib -> .metallib) and the .metallib bytes are embedded.
#   SOURCE    only the Command Line Tools (no `metal`): the MSL sources are embedded with the project
#             includes inlined and compiled on first use with newLibraryWithSource:options:error:.
# GPTOSS_METAL_LIBRARY=AUTO (default) probes the compiler at configure time and picks METALLIB if
# it compiles a test kernel, SOURCE otherwise.
enable_language(OBJC)

set(GPTOSS_METAL_LIBRARY "AUTO" CACHE STRING "How kernels are embedded in the Metal layer: AUTO, METALLIB or SOURCE")
string(TOUPPER "${GPTOSS_METAL_LIBRARY}" _gptoss_metal_library_request)
if(NOT _gptoss_metal_library_request MATCHES "^(AUTO|METALLIB|SOURCE)$")
  message(FATAL_ERROR "GPTOSS_METAL_LIBRARY must be AUTO, METALLIB or SOURCE, not '${GPTOSS_METAL_LIBRARY}'")
endif()
if(NOT Python_EXECUTABLE)
  find_package(Python 3.10 REQUIRED COMPONENTS Interpreter)
endif()

set(_gptoss_metal_tools "${PROJECT_SOURCE_DIR}/metal/tools")
set(_gptoss_metal_embed "${_gptoss_metal_tools}/embed_metal.py")
set(_gptoss_metal_include "${PROJECT_SOURCE_DIR}/metal/source/include")
set(_gptoss_metal_out "${CMAKE_CURRENT_BINARY_DIR}/metal-library")
# Metal 3.1 is the first version with `bfloat` (attention.metal, the bf16 tests): macOS 14. The
# kernel libraries are always built for macOS 14.0, whatever the C code's deployment target.
set(_gptoss_metal_std "metal3.1")
set(_gptoss_metal_macos_min "14.0")
if(CMAKE_OSX_DEPLOYMENT_TARGET AND CMAKE_OSX_DEPLOYMENT_TARGET VERSION_LESS _gptoss_metal_macos_min)
  message(WARNING "gpt-oss-metal: CMAKE_OSX_DEPLOYMENT_TARGET is ${CMAKE_OSX_DEPLOYMENT_TARGET}, but the Metal layer "
    "needs macOS ${_gptoss_metal_macos_min} (Metal 3.1); it reports an error at run time on older systems.")
endif()

# The kernel files: the product kernels and, like the CPU layer, the MSL test kernels so that the
# kernel tests run on the GPU too.
file(GLOB _gptoss_metal_kernels CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/metal/source/kernels/*.metal")
set(_gptoss_metal_test_kernels "")
if(GPTOSS_BUILD_TEST_KERNELS)
  file(GLOB _gptoss_metal_test_kernels CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/tests/msl/*.metal")
  list(APPEND _gptoss_metal_kernels ${_gptoss_metal_test_kernels})
endif()
file(GLOB _gptoss_metal_headers CONFIGURE_DEPENDS "${_gptoss_metal_include}/internal/*.h")

# ---- Which mode: probe `xcrun -sdk macosx metal` on a one-line kernel. ----
# Finding the tool is not enough: since Xcode 16 the Metal toolchain is a separate download and
# `xcrun metal` can exist yet fail to run, so the probe compiles for real.
#
# Fast math off (docs/metal.md, "One numerical contract"): `metal` compiles with -ffast-math by default,
# which lets it fold the NaN/-inf tests of the sampling kernels. Xcode 16's compiler (Metal 3.2) has
# -fmetal-math-mode=safe, the flag form of MTLMathModeSafe; every `metal` (Xcode 15's too) has
# -fno-fast-math, the flag form of fastMathEnabled = NO. The probe takes the first of them that
# compiles the test kernel without a diagnostic (-Werror: a deprecated or ignored flag is refused).
set(_gptoss_metal_mode "${_gptoss_metal_library_request}")
set(_gptoss_metal_math_flag "")
if(_gptoss_metal_mode STREQUAL "AUTO" OR _gptoss_metal_mode STREQUAL "METALLIB")
  set(_probe_dir "${CMAKE_CURRENT_BINARY_DIR}/metal-probe")
  file(WRITE "${_probe_dir}/probe.metal" "kernel void gptoss_probe(device float* x [[buffer(0)]]) { x[0] = 1.0f; }\n")
  set(_probe_result 1)
  set(_probe_errors "")
  foreach(_flag IN ITEMS -fmetal-math-mode=safe -fno-fast-math)
    execute_process(
      COMMAND xcrun -sdk macosx metal -std=${_gptoss_metal_std} -mmacosx-version-min=${_gptoss_metal_macos_min}
              ${_flag} -Werror -c "${_probe_dir}/probe.metal" -o "${_probe_dir}/probe.air"
      RESULT_VARIABLE _probe_result OUTPUT_QUIET ERROR_VARIABLE _probe_error)
    string(APPEND _probe_errors "${_flag}: ${_probe_error}\n")
    if(_probe_result EQUAL 0)
      set(_gptoss_metal_math_flag "${_flag}")
      break()
    endif()
  endforeach()
  set(_probe_error "${_probe_errors}")
  if(_probe_result EQUAL 0)
    set(_gptoss_metal_mode "METALLIB")
    message(STATUS "gpt-oss-metal: Metal kernels compiled with ${_gptoss_metal_math_flag} (fast math off)")
  elseif(_gptoss_metal_mode STREQUAL "METALLIB")
    message(FATAL_ERROR "GPTOSS_METAL_LIBRARY=METALLIB, but `xcrun -sdk macosx metal` cannot compile a test kernel "
      "(install Xcode and its Metal toolchain, or use GPTOSS_METAL_LIBRARY=SOURCE):\n${_probe_error}")
  else()
    set(_gptoss_metal_mode "SOURCE")
  endif()
endif()
message(STATUS "gpt-oss-metal: Metal kernel library mode ${_gptoss_metal_mode}")

set(_gptoss_metal_embedded_c "${_gptoss_metal_out}/embedded-metal-library.c")
if(_gptoss_metal_mode STREQUAL "METALLIB")
  set(_pairs "")
  set(_metallibs "")
  foreach(_metal IN LISTS _gptoss_metal_kernels)
    get_filename_component(_stem "${_metal}" NAME_WE)
    if(_metal IN_LIST _gptoss_metal_test_kernels)
      set(_stem "tests_${_stem}")
    endif()
    set(_air "${_gptoss_metal_out}/${_stem}.air")
    set(_lib "${_gptoss_metal_out}/${_stem}.metallib")
    add_custom_command(
      OUTPUT "${_lib}"
      COMMAND xcrun -sdk macosx metal -std=${_gptoss_metal_std} -mmacosx-version-min=${_gptoss_metal_macos_min}
              ${_gptoss_metal_math_flag} -I "${_gptoss_metal_include}" -c "${_metal}" -o "${_air}"
      COMMAND xcrun -sdk macosx metallib "${_air}" -o "${_lib}"
      DEPENDS "${_metal}" ${_gptoss_metal_headers}
      COMMENT "Compiling Metal kernels ${_metal}"
      VERBATIM)
    list(APPEND _pairs "${_metal}=${_lib}")
    list(APPEND _metallibs "${_lib}")
  endforeach()
  add_custom_command(
    OUTPUT "${_gptoss_metal_embedded_c}"
    COMMAND "${Python_EXECUTABLE}" "${_gptoss_metal_embed}" metallibs --output "${_gptoss_metal_embedded_c}"
            --root "${PROJECT_SOURCE_DIR}" ${_pairs}
    DEPENDS ${_metallibs} ${_gptoss_metal_kernels} "${_gptoss_metal_embed}"
    COMMENT "Embedding the Metal kernel libraries"
    VERBATIM)
else()
  add_custom_command(
    OUTPUT "${_gptoss_metal_embedded_c}"
    COMMAND "${Python_EXECUTABLE}" "${_gptoss_metal_embed}" sources --output "${_gptoss_metal_embedded_c}"
            --root "${PROJECT_SOURCE_DIR}" --include-dir "${_gptoss_metal_include}" ${_gptoss_metal_kernels}
    DEPENDS ${_gptoss_metal_kernels} ${_gptoss_metal_headers} "${_gptoss_metal_embed}"
    COMMENT "Embedding the Metal kernel sources (compiled at first use)"
    VERBATIM)
endif()

add_library(gptoss_metal_device STATIC
  "${PROJECT_SOURCE_DIR}/metal/source/device-metal.m"
  "${_gptoss_metal_embedded_c}")
target_include_directories(gptoss_metal_device
  PUBLIC "${PROJECT_SOURCE_DIR}/metal/include"
  PRIVATE "${_gptoss_metal_include}" "${_gptoss_metal_tools}")
# device-impl.h declares gptoss_metal_device_init only under GPTOSS_WITH_METAL.
target_compile_definitions(gptoss_metal_device PRIVATE GPTOSS_WITH_METAL=1)
target_compile_options(gptoss_metal_device PRIVATE ${GPTOSS_IEEE_MATH_OPTIONS})  # no fast math (top level)
set_source_files_properties("${PROJECT_SOURCE_DIR}/metal/source/device-metal.m" PROPERTIES
  COMPILE_OPTIONS "-fobjc-arc;-Wall;-Wextra;-Wno-unused-parameter")
# CoreGraphics: Apple documents that MTLCreateSystemDefaultDevice returns a device on macOS only if
# the process links CoreGraphics (which a command-line Python process otherwise would not).
target_link_libraries(gptoss_metal_device PUBLIC "-framework Metal" "-framework Foundation" "-framework CoreGraphics")
