"""Small data bundled with torch_tos: the UCI Banknote Authentication set (paper Table IV).

``load_banknote()`` reads ``data_banknote_authentication.txt`` (1372 rows: variance, skewness,
curtosis, entropy, class), after checking its sha256 against the value recorded in this folder's
README.md. Source and licence (CC BY 4.0, Lohweg 2013, doi:10.24432/C55P57): see README.md here.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np

BANKNOTE_FILE = "data_banknote_authentication.txt"
BANKNOTE_SHA256 = "50573e4d341c0c211668136a8b83b592b8dda436520785c3cc3d536fe407a157"
BANKNOTE_COLUMNS = ("variance", "skewness", "curtosis", "entropy", "class")
BANKNOTE_ROWS = 1372


def banknote_bytes() -> bytes:
    """The raw file, verified: a ``ValueError`` if its sha256 is not the recorded one."""
    data = resources.files(__package__).joinpath(BANKNOTE_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BANKNOTE_SHA256:
        raise ValueError(f"bundled {BANKNOTE_FILE} is corrupt: sha256 {digest}, expected "
                         f"{BANKNOTE_SHA256}; reinstall torch-tos")
    return data


def load_banknote() -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)``: ``X`` float32 of shape (1372, 4) (the four wavelet features, file order),
    ``y`` float32 of shape (1372, 1) (the class, 0 or 1)."""
    rows = [line.split(",") for line in banknote_bytes().decode("ascii").splitlines() if line]
    table = np.asarray(rows, dtype=np.float64)
    if table.shape != (BANKNOTE_ROWS, len(BANKNOTE_COLUMNS)):
        raise ValueError(f"bundled {BANKNOTE_FILE} has shape {table.shape}, expected "
                         f"({BANKNOTE_ROWS}, {len(BANKNOTE_COLUMNS)})")
    return table[:, :4].astype(np.float32), table[:, 4:].astype(np.float32)
