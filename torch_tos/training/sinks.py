"""Where :meth:`TOsCounter.log_to` sends each step record as it closes: a TensorBoard
``SummaryWriter``, a ``logging.Logger``, a CSV file, or any callable.

The CSV sink checks its path when it is created (not at the first step, inside the user's loop):
a directory, an unwritable place or a file with another header is a one-line error; a last line
cut short (a run killed while writing it) is reported and removed before rows are appended, and
lines holding NUL bytes are reported — so the file always stays readable by ``pandas.read_csv``.
Each row is appended with one ``write`` of the whole line to a file opened for appending, so rows
of several processes never interleave inside a line.

**Under torch.distributed** (an initialised process group of more than one rank when
``log_to`` is called) every rank writes its own file, ``<name>.rank<r><suffix>``
(``steps.csv`` → ``steps.rank0.csv``, ``steps.rank1.csv``, …), whose first column is ``rank``:
no two processes ever append to one file (which a shared file system does not make safe across
nodes), step numbers are per rank, and ``pandas.concat(map(pandas.read_csv, sorted(glob(
"steps.rank*.csv"))))`` reads all ranks back.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path

from .records import STEP_COLUMNS, StepRecord

__all__ = ["make_sink", "CSVSink", "TensorBoardSink", "rank_path"]

logger = logging.getLogger("torch_tos")


class TensorBoardSink:
    """Scalars per step, global step = the step's index: training steps under ``tos/step``,
    ``flops/step``, ``energy/joules``, ``energy/joules_per_tos``; validation and inference steps
    under their own tags (``tos/validation_step``, ``flops/inference_step``,
    ``energy/validation_joules``, …) so they never mix into the training curves;
    ``tos/total`` (all steps so far) for every step."""

    def __init__(self, writer):
        self.writer = writer

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        w, i = self.writer, rec.index
        if rec.kind == "training":
            tos, flops, joules = "tos/step", "flops/step", "energy/joules"
        else:
            tos, flops, joules = (f"tos/{rec.kind}_step", f"flops/{rec.kind}_step",
                                  f"energy/{rec.kind}_joules")
        w.add_scalar(tos, rec.tos, i)
        w.add_scalar("tos/total", running_tos, i)
        w.add_scalar(flops, rec.flops, i)
        if rec.joules is not None:
            w.add_scalar(joules, rec.joules, i)
            if rec.joules_per_tos is not None and rec.kind == "training":
                w.add_scalar("energy/joules_per_tos", rec.joules_per_tos, i)

    def close(self) -> None:
        pass


class LoggerSink:
    def __init__(self, log, level=logging.INFO):
        self.logger, self.level = log, level

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        energy = ""
        if rec.joules is not None:
            energy = f", {rec.joules:.6g} J" + (" (estimated)" if rec.estimated else "")
        self.logger.log(self.level, "torch_tos step %d (%s, cache %s): %.6g TOs, %d FLOPs, total %.6g TOs%s",
                        rec.index, rec.kind, rec.cache, rec.tos, rec.flops, running_tos, energy)

    def close(self) -> None:
        pass


def rank_path(path: str, rank: int) -> str:
    """``steps.csv`` → ``steps.rank3.csv`` (``log`` → ``log.rank3``)."""
    p = Path(path)
    return str(p.with_name(f"{p.stem}.rank{rank}{p.suffix}")) if p.suffix else f"{path}.rank{rank}"


def _distributed_rank():
    """This process's rank when a process group of more than one rank is initialised, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank()
    return None


class CSVSink:
    """Appends one row per step (columns :data:`STEP_COLUMNS`; under torch.distributed ``rank``
    first, to a file of this rank: see the module doc), each as one whole line; writes the header
    when the file is new."""

    def __init__(self, path, rank: int | None = None):
        self.rank = rank
        self.columns = STEP_COLUMNS if rank is None else ["rank", *STEP_COLUMNS]
        path = os.fspath(path)
        self.path = path if rank is None else rank_path(path, rank)
        self._fd = None
        self._check()

    def _check(self) -> None:
        path = self.path
        if os.path.isdir(path):
            raise ValueError(f"log_to(): {path} is a directory; give a CSV file path")
        d = os.path.dirname(path)
        try:
            if d:
                os.makedirs(d, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as e:
            raise ValueError(f"log_to(): cannot write {path}: {e.strerror or e}") from None
        try:
            self._repair()
            if os.fstat(fd).st_size == 0:
                self._write(fd, self._line(self.columns))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _repair(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        if not data:
            return
        header = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if next(csv.reader([header]), []) != self.columns:
            expected = ",".join(self.columns[:3])
            raise ValueError(f"log_to(): {self.path} is not a step log of TOsCounter (its first line "
                             f"is not the header {expected},...); use another path")
        bad = [i + 1 for i, line in enumerate(data.split(b"\n")) if b"\x00" in line]
        if bad:
            warnings.warn(f"log_to(): {self.path} has NUL bytes on line(s) {bad[:5]}; those rows are "
                          "damaged (pandas reads them as garbage)", RuntimeWarning, stacklevel=6)
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            warnings.warn(f"log_to(): {self.path}: removing an incomplete last line (a run was killed "
                          "while writing it)", RuntimeWarning, stacklevel=6)
            with open(self.path, "r+b") as f:  # only the torn tail goes: every whole row stays
                f.truncate(cut)

    @staticmethod
    def _line(values) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue().encode("utf-8")

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:  # one write of the whole line; a short write (a full disk) is finished here
            try:
                n = os.write(fd, view)
            except OSError as e:
                raise OSError(e.errno, f"log_to(): cannot append to {self.path}: {e.strerror or e}") from None
            view = view[n:]

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        if self._fd is None:  # the counter was exited and entered again: append to the same file
            self._check()
        row = rec.to_dict()
        values = [row[c] for c in STEP_COLUMNS]
        self._write(self._fd, self._line(values if self.rank is None else [self.rank, *values]))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class CallableSink:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        self.fn(rec)

    def close(self) -> None:
        pass


def make_sink(target, level: int = logging.INFO):
    """The sink for a :meth:`TOsCounter.log_to` target (see there)."""
    if isinstance(target, (logging.Logger, logging.LoggerAdapter)):
        return LoggerSink(target, level)
    if isinstance(target, (str, os.PathLike)):
        rank = _distributed_rank()
        sink = CSVSink(target, rank)
        if rank is not None:
            logger.info("torch_tos: rank %d logs its steps to %s", rank, sink.path)
        return sink
    if callable(getattr(target, "add_scalar", None)):
        return TensorBoardSink(target)
    if callable(target):
        return CallableSink(target)
    raise TypeError("log_to() accepts a torch.utils.tensorboard.SummaryWriter, a logging.Logger, "
                    f"a CSV path or a callable, got {type(target).__name__}")
