"""Download the published model.bin of gpt-oss-20b / gpt-oss-120b from the Hugging Face Hub.

OpenAI publishes the Metal-layout weights as ``metal/model.bin`` in the repositories
``openai/gpt-oss-20b`` (about 13 GB) and ``openai/gpt-oss-120b`` (about 65 GB). Downloading needs
the optional dependency ``huggingface_hub`` (``pip install 'gpt-oss-metal[download]'``).

Files go to ``<local_dir>/metal/model.bin``; the default ``local_dir`` is
``$XDG_CACHE_HOME/gpt-oss-metal/models/<name>`` (``~/.cache/gpt-oss-metal/models/<name>``).
An interrupted download resumes where it stopped when started again (huggingface_hub keeps the
partial file under ``<local_dir>/.cache/huggingface``), and a finished one is not fetched again.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import vocab
from .errors import GptOssError, GptOssIOError, InvalidArgumentError

__all__ = [
    "MODELS",
    "MODEL_FILENAME",
    "MissingDependencyError",
    "DownloadError",
    "default_local_dir",
    "download_model",
]

#: Model name -> Hugging Face repository.
MODELS: dict[str, str] = {
    "gpt-oss-20b": "openai/gpt-oss-20b",
    "gpt-oss-120b": "openai/gpt-oss-120b",
}
#: Path of the Metal weights inside each repository.
MODEL_FILENAME = "metal/model.bin"

_INSTALL_HINT = "pip install 'gpt-oss-metal[download]'  (or: pip install huggingface_hub)"


class MissingDependencyError(GptOssError, ImportError):
    """An optional dependency needed for the call is not installed."""


class DownloadError(GptOssIOError):
    """The Hub download failed (no network, unknown revision, access denied ...)."""


def _model_name(name: str) -> str:
    """Accept ``gpt-oss-20b`` or ``openai/gpt-oss-20b``; return the short name."""
    if not isinstance(name, str):
        raise InvalidArgumentError(f"model name must be a str ({', '.join(MODELS)}), got {type(name).__name__}")
    short = name.removeprefix("openai/")
    if short not in MODELS:
        raise InvalidArgumentError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    return short


def default_local_dir(name: str) -> Path:
    """Where :func:`download_model` puts a model by default: ``<cache>/gpt-oss-metal/models/<name>``."""
    return Path(vocab.cache_dir()) / "models" / _model_name(name)


def download_model(
    name: str = "gpt-oss-20b",
    local_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    revision: str | None = None,
    validate: bool = True,
) -> Path:
    """Download ``metal/model.bin`` of ``name`` and return the path of the local file.

    ``local_dir`` defaults to :func:`default_local_dir`; ``progress`` shows huggingface_hub's
    progress bar. With ``validate`` (default) the file is loaded with :class:`~gpt_oss_metal.Model`,
    which checks every header field and section size, when the compiled extension is available.

    Raises :class:`~gpt_oss_metal.InvalidArgumentError` for an unknown name,
    :class:`MissingDependencyError` (an ImportError) without huggingface_hub,
    :class:`DownloadError` (an OSError) when the Hub cannot deliver the file, and
    :class:`~gpt_oss_metal.ModelFileError` when the downloaded file is not a valid model.bin.
    """
    short = _model_name(name)
    try:
        import huggingface_hub
        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    except ImportError as error:
        raise MissingDependencyError(f"downloading models needs huggingface_hub: {_INSTALL_HINT}") from error

    destination = Path(local_dir) if local_dir is not None else default_local_dir(short)
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GptOssIOError(error.errno, f"cannot create download directory {destination}: {error.strerror}") from error

    repo_id = MODELS[short]
    bars_were_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        path = huggingface_hub.hf_hub_download(
            repo_id=repo_id, filename=MODEL_FILENAME, revision=revision, local_dir=str(destination)
        )
    except OSError as error:  # requests/httpx errors and huggingface_hub's own derive from OSError
        raise DownloadError(f"cannot download {MODEL_FILENAME} of {repo_id} into {destination}: {error}") from error
    finally:
        if not progress and not bars_were_disabled:
            enable_progress_bars()

    result = Path(path)
    if validate:
        _validate(result)
    return result


def _validate(path: Path) -> None:
    """Load the file with the runtime's validating loader, if the compiled extension is available."""
    try:
        from .model import Model
    except ImportError:  # pure-Python install without the extension: nothing to validate with
        return
    Model(str(path))
