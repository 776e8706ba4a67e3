"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ".tmp") -> Iterator[tuple[BinaryIO, str]]:
    """Yield ``(file, temporary_path)`` for writing the new contents of ``path``.

    The temporary file lives beside ``path`` (same filesystem, so the final rename is atomic) and
    gets the usual mode for new files (0666 less the umask; mkstemp would make it 0600). When the
    block completes, the file is fsynced, renamed over ``path`` and the directory fsynced; if the
    block raises (KeyboardInterrupt included), the temporary file is deleted and ``path`` is left
    as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is still atomic
    finally:
        os.close(fd)
