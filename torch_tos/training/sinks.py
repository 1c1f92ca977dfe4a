"""Where :meth:`TOsCounter.log_to` sends each step record as it closes: a TensorBoard
``SummaryWriter``, a ``logging.Logger``, a CSV file, or any callable.

The CSV sink checks its path when it is created (not at the first step, inside the user's loop):
a directory, an unwritable place or a file with another header is a one-line error; a last line
cut short (a run killed while writing it) is reported and removed before rows are appended, and
lines holding NUL bytes are reported — so the file always stays readable by ``pandas.read_csv``.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings

from .records import STEP_COLUMNS, StepRecord

__all__ = ["make_sink", "CSVSink"]

logger = logging.getLogger("torch_tos")


class TensorBoardSink:
    def __init__(self, writer):
        self.writer = writer

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        w, i = self.writer, rec.index
        w.add_scalar("tos/step", rec.tos, i)
        w.add_scalar("tos/total", running_tos, i)
        w.add_scalar("flops/step", rec.flops, i)
        if rec.joules is not None:
            w.add_scalar("energy/joules", rec.joules, i)
            if rec.joules_per_tos is not None:
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


class CSVSink:
    """Appends one row per step (columns :data:`STEP_COLUMNS`), flushed as it goes; writes the
    header when the file is new."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = None
        self._writer = None
        self._check()

    def _check(self) -> None:
        path = self.path
        if os.path.isdir(path):
            raise ValueError(f"log_to(): {path} is a directory; give a CSV file path")
        d = os.path.dirname(path)
        try:
            if d:
                os.makedirs(d, exist_ok=True)
            with open(path, "ab"):
                pass
        except OSError as e:
            raise ValueError(f"log_to(): cannot write {path}: {e.strerror or e}") from None
        self._repair()

    def _repair(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        if not data:
            return
        header = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
        if next(csv.reader([header]), []) != STEP_COLUMNS:
            raise ValueError(f"log_to(): {self.path} is not a step log of TOsCounter (its first line "
                             f"is not the header {','.join(STEP_COLUMNS[:3])},...); use another path")
        bad = [i + 1 for i, line in enumerate(data.split(b"\n")) if b"\x00" in line]
        if bad:
            warnings.warn(f"log_to(): {self.path} has NUL bytes on line(s) {bad[:5]}; those rows are "
                          "damaged (pandas reads them as garbage)", RuntimeWarning, stacklevel=4)
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            warnings.warn(f"log_to(): {self.path}: removing an incomplete last line (a run was killed "
                          "while writing it)", RuntimeWarning, stacklevel=4)
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        if self._file is None:
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=STEP_COLUMNS)
            if self._file.tell() == 0:
                self._writer.writeheader()
        self._writer.writerow(rec.to_dict())
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


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
        return CSVSink(target)
    if callable(getattr(target, "add_scalar", None)):
        return TensorBoardSink(target)
    if callable(target):
        return CallableSink(target)
    raise TypeError("log_to() accepts a torch.utils.tensorboard.SummaryWriter, a logging.Logger, "
                    f"a CSV path or a callable, got {type(target).__name__}")
