"""download_model with huggingface_hub's download function replaced (there is no network here)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")
from huggingface_hub.utils import are_progress_bars_disabled  # noqa: E402

from gpt_oss_metal import download  # noqa: E402
from gpt_oss_metal.errors import GptOssIOError, InvalidArgumentError, ModelFileError  # noqa: E402


class FakeHub:
    """Stands in for hf_hub_download: records each call and writes ``content`` where the Hub would."""

    def __init__(self, content: Path | bytes) -> None:
        self.content = content
        self.calls: list[dict] = []
        self.progress_disabled_during_call: list[bool] = []

    def __call__(self, repo_id: str, filename: str, **kwargs) -> str:
        self.calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        self.progress_disabled_during_call.append(are_progress_bars_disabled())
        target = Path(kwargs["local_dir"]) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.content, Path):
            shutil.copyfile(self.content, target)
        else:
            target.write_bytes(self.content)
        return str(target)


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize(("name", "repo"), [("gpt-oss-20b", "openai/gpt-oss-20b"), ("openai/gpt-oss-120b", "openai/gpt-oss-120b")])
def test_downloads_metal_model_bin_into_the_default_directory(
    name: str, repo: str, cache_home: Path, tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeHub(tiny_model_bin)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    path = download.download_model(name)
    short = repo.split("/")[1]
    assert path == cache_home / "gpt-oss-metal" / "models" / short / "metal" / "model.bin"
    assert path.read_bytes()[:12] == tiny_model_bin.read_bytes()[:12]
    (call,) = fake.calls
    assert call == {"repo_id": repo, "filename": "metal/model.bin", "revision": None, "local_dir": str(path.parents[1])}
    assert download.default_local_dir(name) == path.parents[1]


def test_local_dir_revision_and_progress(tmp_path: Path, tiny_model_bin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(tiny_model_bin)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    before = are_progress_bars_disabled()
    path = download.download_model("gpt-oss-20b", local_dir=tmp_path / "new" / "dir", progress=False, revision="abc123")
    assert path == tmp_path / "new" / "dir" / "metal" / "model.bin" and path.is_file()
    assert fake.calls[0]["revision"] == "abc123"
    assert fake.progress_disabled_during_call == [True]
    assert are_progress_bars_disabled() == before  # restored afterwards
    download.download_model("gpt-oss-20b", local_dir=tmp_path / "other", progress=True)
    assert fake.progress_disabled_during_call[1] == before


def test_downloaded_file_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(b"<html>not a model</html>" * 100))
    with pytest.raises(ModelFileError):
        download.download_model("gpt-oss-20b", local_dir=tmp_path)
    # validate=False returns the path without loading it.
    assert download.download_model("gpt-oss-20b", local_dir=tmp_path, validate=False).is_file()


@pytest.mark.parametrize("name", ["gpt-oss-7b", "openai/gpt-oss", "", 20])
def test_unknown_model_name(name, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeHub(b"")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    with pytest.raises(InvalidArgumentError, match="gpt-oss-20b, gpt-oss-120b"):
        download.download_model(name, local_dir=tmp_path)
    assert fake.calls == []


def test_missing_huggingface_hub_gives_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes `import huggingface_hub` fail
    with pytest.raises(download.MissingDependencyError, match=r"pip install 'gpt-oss-metal\[download\]'") as info:
        download.download_model("gpt-oss-20b", local_dir=tmp_path)
    assert isinstance(info.value, ImportError)


def test_hub_failure_becomes_download_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise ConnectionError("Network is unreachable")  # ConnectionError is an OSError, as requests' are

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(download.DownloadError, match="openai/gpt-oss-20b.*Network is unreachable") as info:
        download.download_model("gpt-oss-20b", local_dir=tmp_path)
    assert isinstance(info.value, GptOssIOError)


def test_unwritable_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", FakeHub(b""))
    with pytest.raises(GptOssIOError, match="cannot create download directory"):
        download.download_model("gpt-oss-20b", local_dir=blocker / "sub")
