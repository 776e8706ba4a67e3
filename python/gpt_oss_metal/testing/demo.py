"""The small random model that demos and the README's main job use when no model.bin is given."""

from __future__ import annotations

import os
from pathlib import Path

#: Bump when the demo model's recipe changes, so stale cached files are not reused.
DEMO_MODEL_VERSION = 1


def cache_dir() -> Path:
    """Per-user cache directory of gpt-oss-metal ($XDG_CACHE_HOME or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpt-oss-metal"


def default_demo_model() -> str:
    """Path of a small random gpt-oss model.bin (real vocabulary, random weights), created on first use.

    The converter writes atomically, so a concurrent or interrupted first use never leaves a
    half-written file behind.
    """
    from .checkpoints import create_model_bin

    path = cache_dir() / f"tiny-random-v{DEMO_MODEL_VERSION}" / "model.bin"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_model_bin(str(path), seed=0, layout="original")
    return str(path)
