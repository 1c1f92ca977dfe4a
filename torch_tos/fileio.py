"""Atomic writes of a user's files: a crash, a full disk or an I/O error leaves the previous file.

Every file torch_tos writes for a user (law files, runs-file repairs, ``--out`` tables, HTML pages,
plots: :func:`save_figure`) goes through :func:`atomic_writer`: the content is written to a temporary file in the
*same folder* (so the final rename never crosses a file system), flushed and ``fsync``-ed, then
``os.replace``-d over the target — an atomic step on POSIX and Windows — and the folder is
``fsync``-ed so the rename itself survives a power cut. On any error the temporary file is removed,
the target is untouched, and the error is an :class:`OSError` naming the path.

The new file keeps the permission bits of the file it replaces (or gets the process's default,
``0o666 & ~umask``, like ``open(path, "w")``). A path that is a symbolic link is written where the
link points — the link stays, as with ``open(path, "w")`` — and errors name the path as given.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    """The process's umask, read without changing it where the kernel tells it (Linux ≥ 4.7:
    ``/proc/self/status``); elsewhere set and restored at once (``os.umask`` has no read-only form)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o077)  # pragma: no cover - not Linux: the brief window is as private as can be
    os.umask(umask)  # pragma: no cover
    return umask  # pragma: no cover


def _default_mode() -> int:
    return 0o666 & ~_umask()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms (Windows) where a folder cannot be opened: nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path, mode: str = "w", *, encoding: str | None = "utf-8",
                  newline: str | None = None) -> Iterator[IO]:
    """``with atomic_writer(path) as f: f.write(...)`` — ``path`` is replaced only when the block
    finishes without an error (module doc). ``mode`` is ``"w"`` (text) or ``"wb"`` (binary)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path  # the link stays
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder, not a file")
    try:
        perms = target.stat().st_mode & 0o7777
    except OSError:
        perms = _default_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise type(e)(e.errno, f"cannot write {str(path)!r}: {e.strerror or e}") from None
    ok = False
    try:
        binary = mode == "wb"
        with os.fdopen(fd, mode, **({} if binary else {"encoding": encoding, "newline": newline})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, perms)
        os.replace(tmp, target)
        ok = True
    except OSError as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError)) and str(path) in str(e):
            raise
        raise type(e)(e.errno, f"cannot write {str(path)!r} (the previous file, if any, is "
                      f"intact): {e.strerror or e}") from None
    finally:
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    _fsync_dir(folder)


def atomic_write_text(path, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_write_bytes(path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def save_figure(fig, path, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)`` written atomically (:func:`atomic_writer`) when ``path`` is a
    file name; a file object is handed to ``savefig`` as it is. As ``savefig``: the format is
    ``kwargs["format"]``, else the name's suffix; a name without a suffix gets
    ``rcParams["savefig.format"]``'s (``"png"``) appended."""
    if not isinstance(path, (str, os.PathLike)):
        fig.savefig(path, **kwargs)
        return
    path = Path(path)
    fmt = kwargs.pop("format", None)
    if fmt is None:
        fmt = path.suffix[1:].lower()
        if not fmt:
            from matplotlib import rcParams

            fmt = rcParams["savefig.format"]
            path = path.with_name(f"{path.name}.{fmt}")
    with atomic_writer(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


__all__ = ["atomic_writer", "atomic_write_text", "atomic_write_bytes", "save_figure"]
