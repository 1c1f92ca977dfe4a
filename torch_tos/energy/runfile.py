"""The results file of a sweep or a calibration: checked before any work, locked while written,
repaired (loudly) when a kill or a crash left it damaged.

- :func:`check_output` refuses, before anything is counted or measured, an output that is a
  folder, a device or other non-regular file (``/dev/full``), in a missing folder, or not writable.
- :class:`ResultFile` holds an advisory ``fcntl.flock`` on the file itself while a run is
  measured and its row appended: two or three sweeps started on one file take turns, each
  re-reads the file under the lock before a run and skips what another has finished, so no run
  is ever measured or written twice. (``flock`` is advisory and local: it protects processes on
  one machine; sweeps on several machines write one file each, ``--shard i/n``.) Holding the
  lock during the measurement also keeps two measurements from overlapping on one machine,
  which would bias both.
- Damaged lines are **reported and repaired**, never silently kept or dropped: a last line cut
  short by a kill is removed, and so is any line holding NUL bytes (what a crash of the file
  system leaves) or the wrong number of fields; each repair emits a :class:`ResultFileRepaired`
  warning naming the line.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import warnings
from pathlib import Path

try:  # POSIX only; elsewhere the file is written without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class ResultFileRepaired(UserWarning):
    """A damaged line was removed from a results file."""


def check_output(path, *, what: str = "--out", example: str = "runs.csv") -> Path:
    """``path`` as a :class:`Path` if a file (a results CSV; for the CLI's ``--out``/``--plot``
    any output) can be created or written there, else a one-line ``ValueError`` naming the
    problem (run before any work starts); ``example`` is the file name a folder is hinted with."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        try:
            mode = path.stat().st_mode
        except OSError as e:
            raise ValueError(f"{what} {str(path)!r} cannot be read: {e.strerror}") from None
        if stat.S_ISDIR(mode):
            raise ValueError(f"{what} {str(path)!r} is a folder; give a file name such as "
                             f"{str(path / example)!r}")
        if not stat.S_ISREG(mode):
            raise ValueError(f"{what} {str(path)!r} is not a regular file (a device or a pipe); "
                             "give a file name on a disk")
        if not os.access(path, os.R_OK | os.W_OK):
            raise ValueError(f"{what} {str(path)!r} is not writable by this user; choose another file")
        return path
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{what} {str(path)!r}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(path)!r}: folder {str(parent)!r} is not writable by this user; "
                         "choose another folder")
    return path


def _warn(path, message: str) -> None:
    warnings.warn(f"{path}: {message}", ResultFileRepaired, stacklevel=3)


def repair(data: bytes, path, columns: list[str]) -> tuple[bytes, list[str]]:
    """The file's bytes without damaged lines, and one message per line removed."""
    notes = []
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        line_no = data[:cut].count(b"\n") + 1
        notes.append(f"removed an incomplete last line (line {line_no}: a run killed while writing it)")
        data = data[:cut]
    lines = data.split(b"\n")[:-1] if data else []
    kept = []
    for number, line in enumerate(lines, start=1):
        if b"\x00" in line:
            notes.append(f"removed line {number}: it holds NUL bytes (a crash or a full disk)")
            continue
        if number > 1 and kept:
            try:
                fields = next(csv.reader([line.decode("utf-8")]))
            except (UnicodeDecodeError, csv.Error, StopIteration):
                fields = None
            if fields is None or len(fields) != len(columns):
                notes.append(f"removed line {number}: {len(fields) if fields else 0} fields instead "
                             f"of {len(columns)} (a torn write)")
                continue
        kept.append(line)
    out = b"".join(line + b"\n" for line in kept)
    return out, notes


class ResultFile:
    """A runs CSV with a fixed header ``columns``, read and appended under an advisory lock.

    Use :meth:`locked` around "re-read, decide, measure, append"; :meth:`rows` and
    :meth:`append` may also be called on their own (each takes the lock briefly).
    """

    def __init__(self, path, columns: list[str], *, what: str = "--out"):
        self.path = check_output(path, what=what)
        self.columns = list(columns)
        self._fd = None
        self._depth = 0

    @contextlib.contextmanager
    def locked(self):
        """Hold the file's exclusive lock (re-entrant within this object)."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd, self._depth = fd, 1
            yield self
        finally:
            self._fd, self._depth = None, 0
            os.close(fd)  # closing releases the lock

    def _read_bytes(self) -> bytes:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def rows(self) -> list[dict]:
        """The rows now in the file (as strings), after repairing damaged lines (with a warning)."""
        with self.locked():
            data = self._read_bytes()
            self._check_header(data)  # before any repair: a file of another layout is never touched
            fixed, notes = repair(data, self.path, self.columns)
            if notes:
                os.ftruncate(self._fd, 0)
                os.lseek(self._fd, 0, os.SEEK_SET)
                _write_all(self._fd, fixed)
                os.fsync(self._fd)
                for note in notes:
                    _warn(self.path, note)
            if not fixed:
                return []
            text = fixed.decode("utf-8")
            return list(csv.DictReader(io.StringIO(text)))

    def _check_header(self, data: bytes) -> None:
        """A clear error when the file's header (its first complete line) is not :attr:`columns`."""
        if b"\n" not in data:
            return  # empty, or only a torn first line: repair handles it
        first = data.split(b"\n", 1)[0]
        try:
            header = next(csv.reader([first.decode("utf-8")]))
        except (UnicodeDecodeError, csv.Error, StopIteration):
            header = None
        if header != self.columns:
            missing = [c for c in self.columns if c not in (header or [])]
            hint = (f"it lacks {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}: written by an "
                    "older torch_tos or another tool" if missing else "its columns differ")
            raise ValueError(f"{self.path} is not a results file of this layout ({hint}); "
                             "use another --out")

    def append(self, row: dict) -> None:
        """Append one row (header first when the file is empty), flushed and fsynced."""
        with self.locked():
            size = os.lseek(self._fd, 0, os.SEEK_END)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="raise", lineterminator="\n")
            if size == 0:
                writer.writeheader()
            writer.writerow(row)
            try:
                _write_all(self._fd, buf.getvalue().encode("utf-8"))
                os.fsync(self._fd)
            except OSError as e:
                os.ftruncate(self._fd, size)  # never leave half a row behind
                raise ValueError(f"cannot write to {self.path}: {e.strerror or e}") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


__all__ = ["ResultFile", "ResultFileRepaired", "check_output", "repair"]
