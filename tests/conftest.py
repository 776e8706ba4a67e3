"""Shared fixtures: small random gpt-oss checkpoints and the model.bin converted from them.

Each checkpoint is ~130 MB (the real 201088-row vocabulary dominates) and takes a few seconds to
write, so they are built once per test session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gpt_oss_metal.testing.checkpoints import LAYOUTS, write_checkpoint


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
