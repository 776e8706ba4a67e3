"""The installed gpt_oss_metal contains the Metal device layer (run on macOS by CI and cibuildwheel).

Device("metal") fails with "... this build has no Apple Metal layer ..." when the layer was not built.
On a runner whose VM has no usable Metal device it fails at MTLCreateSystemDefaultDevice instead: the
layer is there, so that passes (whether the GPU works is the probe's business: .github/metal-probe.m).
"""
from gpt_oss_metal._metal import Device

try:
    print("Metal device:", Device("metal").info)
except Exception as error:  # the binding raises the library's error types
    assert "no Apple Metal layer" not in str(error), f"the Metal layer is missing from this build: {error}"
    print("Metal layer built; no usable device on this machine:", error)
