"""Where ``torch-tos profile`` writes: ``--out`` (the table, CSV, JSON or HTML) and ``--plot`` (the
figure). Both paths are checked before anything is counted — a folder, a device such as
``/dev/full``, a missing or read-only folder, an image format matplotlib cannot write are one-line
errors — and a failed write (a full disk) is one line naming the file, which keeps its previous
content (:mod:`torch_tos.fileio`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import CLIError


def check_output(path: str, option: str, example: str = "report.html") -> Path:
    """``path`` if a file can be written there (an existing regular file is replaced): the results
    files' own check (:func:`torch_tos.energy.runfile.check_output`) as a one-line CLI error;
    ``example`` is the file name a folder is hinted with."""
    from ..energy.runfile import check_output as check_writable

    try:
        return check_writable(path, what=option, example=example)
    except ValueError as e:
        raise CLIError(str(e)) from None


def check_plot(path: str) -> Path:
    """``--plot``: a writable path whose suffix matplotlib can write; matplotlib installed."""
    p = check_output(path, "--plot", "figure.png")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'torch-tos[plot]'") from None
    formats = Figure().canvas.get_supported_filetypes()
    suffix = p.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise CLIError(f"--plot {path!r}: unknown image format {suffix or '(no suffix)'!r}; accepted: "
                       f"{', '.join(sorted(formats))}")
    return p


def write_text(text: str, path: Path | None) -> None:
    """``text`` to ``path`` (stdout without one), a failed write as one line."""
    if path is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from ..fileio import atomic_write_text

    try:
        atomic_write_text(path, text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise CLIError(f"--out: {e.strerror or e}") from None


def save_plot(report, path: Path, **kwargs) -> None:
    try:
        report.plot(path=path, **kwargs)
    except OSError as e:
        raise CLIError(f"--plot: {e.strerror or e}") from None
