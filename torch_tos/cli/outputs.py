"""Where ``torch-tos profile`` writes: ``--out`` (the table, CSV, JSON or HTML) and ``--plot`` (the
figure). Both paths are checked before anything is counted — a folder, a device such as
``/dev/full``, a missing or read-only folder, an image format matplotlib cannot write are one-line
errors — and a failed write (a full disk) is one line naming the file."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import CLIError


def check_output(path: str, option: str) -> Path:
    """``path`` if a file can be written there (an existing regular file is replaced)."""
    p = Path(path)
    if p.exists():
        mode = p.stat().st_mode
        if stat.S_ISDIR(mode):
            raise CLIError(f"{option} {path!r} is a folder; give a file name, e.g. {str(p / 'report.html')!r}")
        if not stat.S_ISREG(mode):
            raise CLIError(f"{option} {path!r} is not a regular file (a device or a pipe); give a file on a disk")
        if not os.access(p, os.W_OK):
            raise CLIError(f"{option} {path!r} is not writable by this user; choose another file")
        return p
    parent = p.parent
    if not parent.is_dir():
        raise CLIError(f"{option} {path!r}: folder {str(parent)!r} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {path!r}: folder {str(parent)!r} is not writable by this user; "
                       f"choose another folder")
    return p


def check_plot(path: str) -> Path:
    """``--plot``: a writable path whose suffix matplotlib can write; matplotlib installed."""
    p = check_output(path, "--plot")
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
    try:
        path.write_text(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise CLIError(f"cannot write --out {str(path)!r}: {e.strerror or e}") from None


def save_plot(report, path: Path, **kwargs) -> None:
    try:
        report.plot(path=path, **kwargs)
    except OSError as e:
        raise CLIError(f"cannot write --plot {str(path)!r}: {e.strerror or e}") from None
