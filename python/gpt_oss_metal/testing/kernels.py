"""Run compiled MSL kernels by name on NumPy arrays, for testing kernels against NumPy.

The kernels run on whichever device is present: the Apple GPU, or the CPU execution layer (which
runs the same .metal sources and reports out-of-bounds accesses and divergent barriers as
:class:`gpt_oss_metal.errors.DeviceError`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Union

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["run_kernel", "default_device", "test_kernels_available", "TEST_KERNELS_MISSING", "Size3"]

#: A grid or threadgroup size: an int or a tuple of 1 to 3 ints (missing dimensions are 1).
Size3 = Union[int, tuple[int, ...]]

_default_device = None
_default_device_lock = threading.Lock()


def default_device():  # -> gpt_oss_metal._metal.Device
    """The module-level device used when run_kernel gets no ``device`` (created on first use)."""
    global _default_device
    with _default_device_lock:
        if _default_device is None:
            from .._metal import Device

            _default_device = Device("any")
        return _default_device


#: Why a test-kernel lookup failed when the package was built without them (the default for users).
TEST_KERNELS_MISSING = (
    "this gpt_oss_metal build has no MSL test kernels (tests/msl/*.metal): they are compiled only with "
    "GPTOSS_BUILD_TEST_KERNELS=1 (`GPTOSS_BUILD_TEST_KERNELS=1 pip install .`, or `bash scripts/test.sh`, "
    "which builds with them); a plain `pip install .` leaves them out"
)


def test_kernels_available(device=None) -> bool:
    """True if the MSL test kernels of tests/msl (GPTOSS_BUILD_TEST_KERNELS=ON) are compiled into the
    device layer: dispatches the test kernel ``runtime_scale`` over an empty grid."""
    import struct

    dev = device if device is not None else default_device()
    empty = np.zeros(1, np.float32)
    try:
        dev.run("runtime_scale", [0], [1], {0: struct.pack("<If", 0, 1.0), 1: empty, 2: empty.copy()}, {})
    except InvalidArgumentError as error:
        if "runtime_scale" in str(error):
            return False
        raise
    return True
test_kernels_available.__test__ = False  # a helper, not a pytest test


def _size3(value: Size3, what: str) -> list[int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
        raise InvalidArgumentError(f"{what} must be an int or 1 to 3 non-negative ints, got {value!r}")
    return [int(d) for d in dims]


def run_kernel(
    name: str,
    threadgroups: Size3,
    threads_per_threadgroup: Size3,
    buffers: Mapping[int, np.ndarray | bytes],
    threadgroup_memory: Mapping[int, int] = {},  # noqa: B006 - read-only default
    device=None,
) -> None:
    """Dispatch kernel ``name`` once and wait for it.

    ``buffers`` maps each ``[[buffer(i)]]`` index to a C-contiguous writable NumPy array (copied
    into a device buffer; the results are copied back into the same array) or to ``bytes`` (bound
    with setBytes, at most 4096 bytes, e.g. an argument struct). ``threadgroup_memory`` maps each
    ``[[threadgroup(i)]]`` index to a byte size (a multiple of 16).

    Raises InvalidArgumentError for an unknown kernel or a bad argument, DeviceError for a kernel
    fault (the message names the kernel, the buffer, the offset and the thread).
    """
    bound: dict[int, np.ndarray | bytes] = {}
    for index, value in buffers.items():
        if isinstance(value, (bytes, bytearray)):
            bound[int(index)] = bytes(value)
        elif isinstance(value, np.ndarray):
            if not value.flags.c_contiguous or not value.flags.writeable:
                raise InvalidArgumentError(f"buffer({index}): the array must be C-contiguous and writable")
            bound[int(index)] = value
        else:
            raise InvalidArgumentError(f"buffer({index}): expected a numpy.ndarray or bytes, got {type(value).__name__}")
    dev = device if device is not None else default_device()
    try:
        dev.run(
            name,
            _size3(threadgroups, "threadgroups"),
            _size3(threads_per_threadgroup, "threads_per_threadgroup"),
            bound,
            {int(k): int(v) for k, v in threadgroup_memory.items()},
        )
    except InvalidArgumentError as error:
        # An unknown kernel in a build without the test kernels: say how to get them.
        if f"'{name}'" in str(error) and "no kernel named" in str(error) and not test_kernels_available(dev):
            raise InvalidArgumentError(f"{error} ({TEST_KERNELS_MISSING})") from error
        raise
