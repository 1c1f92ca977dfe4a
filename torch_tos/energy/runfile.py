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
  warning naming the line. The repaired file is written beside the damaged one and renamed over
  it (:mod:`torch_tos.fileio`): a full disk or an I/O error during the repair leaves every complete
  run in place, and the error names the file. A writer that waited for the lock of a file that
  was replaced meanwhile takes the lock of the new file instead (:meth:`ResultFile.locked`).
- :func:`scan` is the one reading of a runs file's lines — the header, damaged lines with their
  1-based line numbers — shared by the writer (which repairs) and by
  :func:`torch_tos.energy.runs.read_runs` (which refuses, naming file, line and column).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_writer

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


@dataclass
class Damage:
    """One damaged line of a runs file: its 1-based ``line`` and ``column`` (the first field that
    is wrong, or 1), what is wrong (``what``) and why it happens (``cause``)."""

    line: int
    column: int
    what: str
    cause: str


@dataclass
class Scan:
    """A runs file read line by line: ``header`` (its first line's fields, ``None`` when it has
    none), ``rows`` as ``(line number, fields)``, ``damage`` (:class:`Damage`, in file order) and
    ``kept`` (the file's bytes without the damaged lines)."""

    header: list[str] | None
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)
    kept: bytes = b""


def _fields(line: bytes) -> list[str] | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text[:-1] if text.endswith("\r") else text
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return None


def scan(data: bytes, n_fields: int | None = None) -> Scan:
    """Split a runs file's bytes into its header and rows, and find its damaged lines.

    A line is damaged when it is the last and has no line end (every line the writer appends
    ends with one: a line without it was cut by a kill, possibly inside its last field, so
    ``12.5`` may read as ``12``), holds NUL bytes (what a crash or a full disk leaves), is not
    UTF-8, or has another number of fields than the header (``n_fields``, default the header's).
    Blank lines carry nothing and are skipped. A UTF-8 byte-order mark before the header is
    dropped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    result = Scan(header=None)
    lines = data.split(b"\n")
    torn = lines.pop()  # the bytes after the last line end: b"" in an intact file
    kept = []
    for number, line in enumerate(lines, start=1):
        if b"\x00" in line:
            result.damage.append(Damage(number, 1, "it holds NUL bytes", "a crash or a full disk"))
            continue
        fields = _fields(line)
        if fields is None:
            result.damage.append(Damage(number, 1, "it is not UTF-8 text", "a crash or a full disk"))
            continue
        if not fields or fields == [""]:
            kept.append(line)
            continue
        if result.header is None:
            result.header = fields
            n_fields = n_fields if n_fields is not None else len(fields)
        elif len(fields) != n_fields:
            result.damage.append(Damage(number, min(len(fields), n_fields) + 1,
                                        f"{len(fields)} fields instead of {n_fields}", "a torn write"))
            continue
        else:
            result.rows.append((number, fields))
        kept.append(line)
    if torn:
        number = len(lines) + 1
        fields = _fields(torn) if b"\x00" not in torn else None
        column = len(fields) if fields else 1
        result.damage.append(Damage(number, column, "an incomplete last line (no line end)",
                                    "a run killed while it was written"))
    result.kept = b"".join(line + b"\n" for line in kept)
    return result


def repair(data: bytes, path, columns: list[str]) -> tuple[bytes, list[str]]:
    """The file's bytes without damaged lines (:func:`scan`), and one message per line removed."""
    found = scan(data, len(columns))
    notes = [f"removed line {d.line}: {d.what} ({d.cause})" for d in found.damage]
    return found.kept, notes


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
        self._fd, self._depth = self._open_locked(), 1
        try:
            yield self
        finally:
            fd, self._fd, self._depth = self._fd, None, 0
            os.close(fd)  # closing releases the lock

    def _open_locked(self) -> int:
        """An open, locked descriptor of the file now at :attr:`path`: a repair renames a new file
        over the path, so a lock won on the file it replaced is given up and taken again."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                return fd
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held, now = os.fstat(fd), os.stat(self.path)
            except FileNotFoundError:  # removed while we waited: create it again
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fd
            os.close(fd)

    def _replace(self, data: bytes, notes: list[str]) -> None:
        """Write ``data`` beside the file and rename it over the file, keeping the lock: the new
        file is locked before it is visible, and the old descriptor is closed after."""
        new_fd = None
        try:
            with atomic_writer(self.path, "wb") as f:
                f.write(data)
                f.flush()
                new_fd = os.dup(f.fileno())
                if fcntl is not None:
                    fcntl.flock(new_fd, fcntl.LOCK_EX)
        except OSError as e:
            if new_fd is not None:
                os.close(new_fd)
            raise type(e)(e.errno, f"cannot repair {self.path} ({notes[0]}): {os.strerror(e.errno) if e.errno else e}; "
                          "the file is left as it was: free some space (or fix the disk) and run again") from None
        old, self._fd = self._fd, new_fd
        os.close(old)

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
                self._replace(fixed, notes)
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
