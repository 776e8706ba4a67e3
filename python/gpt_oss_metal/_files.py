"""Writing files so that a reader never sees a partial one."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from typing import BinaryIO, Iterable, Iterator

#: Signals that, during an :func:`atomic_output` with ``cleanup_on_signals``, delete the temporary
#: file and exit with status 128 + signal number. SIGINT keeps raising KeyboardInterrupt (which
#: deletes the temporary file too). SIGHUP does not exist on Windows.
CLEANUP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class SignalExit(SystemExit):
    """Raised by the handlers :func:`exit_on_signals` installs: exits with status 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@contextlib.contextmanager
def exit_on_signals(signums: Iterable[int] = CLEANUP_SIGNALS) -> Iterator[None]:
    """Within the block, the given signals raise :class:`SignalExit` (a ``SystemExit`` with
    status 128 + signum) in the main thread, so ``finally`` clauses and ``except BaseException``
    cleanups run before the process exits. The previous handlers are restored afterwards.

    Python can only install signal handlers in the main thread; elsewhere this does nothing (the
    signal's default action then applies, and callers rely on ``finally``/atexit cleanups).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        # Ignore further signals while the cleanups run (a second SIGTERM must not interrupt the
        # deletion of the temporary file); the previous handlers come back in the finally below.
        for other in previous:
            signal.signal(other, signal.SIG_IGN)
        raise SignalExit(signum)

    previous: dict[int, object] = {}
    try:
        for signum in signums:
            old = signal.getsignal(signum)
            if old == signal.SIG_IGN:
                continue  # e.g. started under nohup: an ignored signal stays ignored
            previous[signum] = old
            signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old if old is not None else signal.SIG_DFL)


def _with_path(error: OSError, path: str) -> OSError:
    """``error`` naming ``path`` (same errno, so ``except FileNotFoundError`` etc. still match)."""
    if error.filename is not None or error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), path)


def check_destination(path: str, inputs: Iterable[str] = ()) -> None:
    """Refuse a destination that is not (yet) a regular file or that is one of ``inputs``.

    Replacing a device node (``/dev/null``), a FIFO, a socket or a directory would at best fail
    late and at worst replace a system file; writing over an input would destroy the data being
    read. Raises :class:`ValueError` (or :class:`OSError` when ``path`` cannot be examined).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # a new file (or a dangling symbolic link, which the rename replaces)
    except OSError as error:
        raise _with_path(error, path) from None
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a directory" if stat.S_ISDIR(st.st_mode)
            else "a character device" if stat.S_ISCHR(st.st_mode)
            else "a block device" if stat.S_ISBLK(st.st_mode)
            else "a FIFO" if stat.S_ISFIFO(st.st_mode)
            else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise ValueError(f"{path}: the destination exists and is {kind}, not a regular file; refusing to replace it")
    for source in inputs:
        try:
            other = os.stat(source)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
            raise ValueError(f"{path}: the destination is the input file {source}; refusing to overwrite it")


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = ".tmp", *, cleanup_on_signals: bool = False) -> Iterator[tuple[BinaryIO, str]]:
    """Yield ``(file, temporary_path)`` for writing the new contents of ``path``.

    The temporary file lives beside ``path`` (same filesystem, so the final rename is atomic) and
    gets the usual mode for new files (0666 less the umask; mkstemp would make it 0600). When the
    block completes, the file is fsynced, renamed over ``path`` and the directory fsynced; if the
    block raises (KeyboardInterrupt included), the temporary file is deleted and ``path`` is left
    as it was. With ``cleanup_on_signals`` (main thread only), SIGTERM and SIGHUP also delete the
    temporary file and then exit with status 128 + signum (see :func:`exit_on_signals`).

    OS errors of creating, flushing, syncing and renaming the file name ``path``.
    """
    directory = os.path.dirname(os.path.abspath(path))
    signals = exit_on_signals() if cleanup_on_signals else contextlib.nullcontext()
    with signals:
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=directory)
        except OSError as error:
            raise OSError(error.errno, f"{error.strerror} (creating a temporary file in {directory})", path) from None
        try:
            try:
                os.fchmod(fd, 0o666 & ~_current_umask())
                f = os.fdopen(fd, "wb")
            except OSError as error:
                os.close(fd)
                raise _with_path(error, path) from None
            try:
                yield f, tmp
                try:
                    f.flush()
                    os.fsync(f.fileno())
                except OSError as error:
                    raise _with_path(error, path) from None
            except BaseException:
                with contextlib.suppress(OSError):
                    f.close()
                raise
            try:
                f.close()
                os.replace(tmp, path)
            except OSError as error:
                raise _with_path(error, path) from None
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
