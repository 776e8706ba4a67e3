"""Shared fixtures: small random gpt-oss checkpoints and the model.bin converted from them.

Each checkpoint is ~130 MB (the real 201088-row vocabulary dominates) and takes a few seconds to
write, so they are built once per test session.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest


from gpt_oss_metal.testing.checkpoints import LAYOUTS, write_checkpoint

# Shared test helpers (text_corpus.py) are imported as plain modules from this directory.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoint directory by layout ('original', 'hf-mxfp4', 'hf-dense'), all the same model (seed 0)."""
    root = tmp_path_factory.mktemp("tiny-checkpoints")
    return {layout: Path(write_checkpoint(str(root / layout), layout=layout, seed=0)) for layout in LAYOUTS}


@pytest.fixture(scope="session")
def tiny_model_bin(tiny_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """model.bin converted from the original-layout tiny checkpoint (seed 0)."""
    from gpt_oss_metal.convert import convert_checkpoint

    path = tmp_path_factory.mktemp("tiny-model-bin") / "model.bin"
    convert_checkpoint(str(tiny_checkpoints["original"]), str(path), progress=False)
    return path


@pytest.fixture(scope="session")
def vocab() -> tuple[bytes, ...]:
    """o200k_base token bytes by rank (the text tokens of model.bin), loaded offline."""
    from gpt_oss_metal.vocab import token_bytes_by_rank

    return token_bytes_by_rank()


@pytest.fixture(scope="session")
def tiktoken_o200k() -> Iterator[object]:
    """tiktoken's own o200k_base, loaded offline from the packaged vocabulary."""
    import tiktoken

    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    from gpt_oss_metal.vocab import tiktoken_cache_dir

    os.environ["TIKTOKEN_CACHE_DIR"] = tiktoken_cache_dir()
    try:
        yield tiktoken.get_encoding("o200k_base")
    finally:
        if saved is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = saved


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cpu_layer_only: checks a fault that only the CPU execution layer detects (out-of-bounds access, "
        "divergent barriers, races); a GPU silently accepts these, so they are skipped when kernels run on Metal",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("cpu_layer_only") for item in items):
        return
    from gpt_oss_metal.testing.kernels import default_device

    kind = default_device().info.get("kind")
    if kind == "cpu":
        return
    skip = pytest.mark.skip(reason=f"fault detection is a CPU-execution-layer feature; kernels run on {kind}")
    for item in items:
        if item.get_closest_marker("cpu_layer_only"):
            item.add_marker(skip)



# ---- MSL test kernels (tests/msl/*.metal): compiled only with GPTOSS_BUILD_TEST_KERNELS=ON ----
# A plain `pip install .` leaves them out; scripts/test.sh builds with them. A test module that runs
# one of them (found by its name in quotes in the module's source) fails at setup with a clear
# message when the installed package lacks them, instead of failing deep inside, or being skipped.
_TEST_KERNEL_NAMES: frozenset[str] | None = None
_MODULES_NEEDING_TEST_KERNELS: dict[str, bool] = {}
_TEST_KERNELS_PRESENT: bool | None = None


def _test_kernel_names() -> frozenset[str]:
    global _TEST_KERNEL_NAMES
    if _TEST_KERNEL_NAMES is None:
        import re

        names = set()
        for source in (Path(__file__).parent / "msl").glob("*.metal"):
            names.update(re.findall(r"\bkernel\s+void\s+(\w+)", source.read_text()))
        _TEST_KERNEL_NAMES = frozenset(names)
    return _TEST_KERNEL_NAMES


def _mentions_test_kernel(text: str) -> bool:
    return any(f'"{name}"' in text or f"'{name}'" in text for name in _test_kernel_names())


def _needs_test_kernels(item: pytest.Item) -> bool:
    """The test function names a test kernel, itself or through the module-level helpers and strings
    it uses."""
    path = str(getattr(item, "path", "") or item.fspath)
    if path not in _MODULES_NEEDING_TEST_KERNELS:
        try:
            _MODULES_NEEDING_TEST_KERNELS[path] = _mentions_test_kernel(Path(path).read_text())
        except OSError:
            _MODULES_NEEDING_TEST_KERNELS[path] = False
    if not _MODULES_NEEDING_TEST_KERNELS[path]:
        return False
    import inspect
    import re

    try:
        source = inspect.getsource(item.obj)  # type: ignore[attr-defined]
    except (AttributeError, OSError, TypeError):
        return True
    # The kernel names may sit in module-level helpers or strings the test uses (run_script -> SCRIPT):
    # follow the module's names the source mentions, a few levels deep.
    module_vars = vars(getattr(item, "module", None) or object())
    seen: set[str] = set()
    pending = [source]
    for _ in range(4):
        if any(_mentions_test_kernel(text) for text in pending):
            return True
        referenced = []
        for text in pending:
            for name, value in module_vars.items():
                if name in seen or name.startswith("__") or not re.search(rf"\b{re.escape(name)}\b", text):
                    continue
                seen.add(name)
                if isinstance(value, str):
                    referenced.append(value)
                elif inspect.isfunction(value):
                    try:
                        referenced.append(inspect.getsource(value))
                    except (OSError, TypeError):
                        pass
        pending = referenced
    return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _TEST_KERNELS_PRESENT
    if not _needs_test_kernels(item):
        return
    if _TEST_KERNELS_PRESENT is None:
        from gpt_oss_metal.testing.kernels import test_kernels_available

        _TEST_KERNELS_PRESENT = test_kernels_available()
    if not _TEST_KERNELS_PRESENT:
        from gpt_oss_metal.testing.kernels import TEST_KERNELS_MISSING

        pytest.fail(f"{item.nodeid} runs MSL test kernels, but {TEST_KERNELS_MISSING}", pytrace=False)
