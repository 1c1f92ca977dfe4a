"""Laws that travel: save a fitted per-step law with the fingerprint of the machine it was
calibrated on, load it elsewhere, and warn when the machine differs.

``law.save("law.json")`` / :func:`load_law` write and read JSON::

    {"format": "torch_tos.law", "version": 1, "features": [...], "fixed": [...],
     "e_step": J/step, "e_run": J, "coef": {feature: J per unit per step},
     "ranges": {feature: [min, max] per step, "steps": [min, max]},
     "ratios": [E/Ê of the calibration runs (for intervals)], "interval_source": "...",
     "n_train": runs, "fingerprint": {...}, "meta": {...}}

The fingerprint (:func:`fingerprint`): CPU model, physical and logical cores, torch threads, GPU
(name, or null), torch version, meter, date, host. A law predicts energy on the machine (and meter)
it was calibrated on; :func:`check_fingerprint` warns (:class:`FingerprintWarning`) when CPU, cores,
GPU or torch version differ.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import socket
import warnings
from pathlib import Path

import numpy as np

FORMAT, VERSION = "torch_tos.law", 1
#: Fingerprint fields that must match for a law to apply (threads and date may differ).
MATCH = ("cpu", "cores", "logical_cores", "gpu", "torch")


class FingerprintWarning(UserWarning):
    """The law was calibrated on another machine (or torch version) than the one predicting."""


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=None)
def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except Exception:  # noqa: BLE001 - psutil optional
        try:
            ids = set()
            phys = core = None
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    ids.add((phys, core))
            return len(ids) or None
        except OSError:
            return None


def fingerprint(meter: str | None = None, threads: int | None = None) -> dict:
    """This machine's fingerprint (see the module doc)."""
    import torch

    gpu = None
    try:
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken driver is "no GPU" here
        gpu = None
    return {"cpu": cpu_model(), "cores": _physical_cores(), "logical_cores": os.cpu_count(),
            "threads": int(threads) if threads is not None else torch.get_num_threads(), "gpu": gpu,
            "torch": torch.__version__, "meter": meter, "host": socket.gethostname(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def check_fingerprint(law, here: dict | None = None, stacklevel: int = 3) -> list[str]:
    """Differences between the law's fingerprint and this machine's (``here``), each also issued
    as a :class:`FingerprintWarning`; ``[]`` when they match or the law has none."""
    fp = getattr(law, "fingerprint_", None)
    if not fp:
        return []
    here = here or fingerprint()
    diffs = [f"{k}: law {fp.get(k)!r}, here {here.get(k)!r}" for k in MATCH
             if fp.get(k) is not None and fp.get(k) != here.get(k)]
    if diffs:
        warnings.warn("this law was calibrated on another machine (" + "; ".join(diffs) + "): its joules "
                      "may not apply here; calibrate on this machine", FingerprintWarning,
                      stacklevel=stacklevel)
    return diffs


def _meter_of(runs) -> str | None:
    try:
        meters = sorted(set(runs["meter"].dropna().astype(str)))
    except (KeyError, TypeError, AttributeError):
        return None
    return ",".join(meters) or None


def _threads_of(runs) -> int | None:
    try:
        t = sorted(set(runs["threads"].dropna().astype(int)))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return t[0] if len(t) == 1 else None


def law_to_dict(law) -> dict:
    law._require_linear()
    feats, fixed = law._check_linear()
    fp = law.fingerprint_ or fingerprint()
    return {"format": FORMAT, "version": VERSION, "features": list(feats), "fixed": list(fixed),
            "e_step": law.e_step_, "e_run": law.e_run_,
            "coef": {f: float(b) for f, b in zip(feats, law.coef_)},
            "ranges": {k: list(v) for k, v in law.ranges_.items()},
            "ratios": [float(r) for r in law.calibration_ratios()],
            "interval_source": getattr(law, "interval_source_", None), "n_train": int(law.n_train_),
            "law": law.law(), "fingerprint": fp, "meta": dict(getattr(law, "meta_", {}) or {})}


def law_from_dict(data: dict, source: str = "law"):
    from .fit import EnergyModel

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{source}: not a torch_tos law file (expected \"format\": \"{FORMAT}\"); make one "
                         "with law.save(path) or torch-tos calibrate/fit --save")
    if data.get("version") != VERSION:
        raise ValueError(f"{source}: law file version {data.get('version')!r} is not supported (this "
                         f"torch_tos reads version {VERSION})")
    try:
        feats = tuple(data["features"])
        law = EnergyModel(features=feats, fixed=tuple(data["fixed"]))
        law._check_linear()
        law.e_step_, law.e_run_ = float(data["e_step"]), float(data["e_run"])
        law.intercept_ = law.e_run_
        law.coef_ = np.array([float(data["coef"][f]) for f in feats])
        law.ranges_ = {k: (float(v[0]), float(v[1])) for k, v in data["ranges"].items()}
        law.ratios_ = np.array([float(r) for r in data["ratios"]])
        law.interval_source_ = data.get("interval_source")
        law.n_train_ = int(data["n_train"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ValueError(f"{source}: malformed law file ({type(e).__name__}: {e})") from None
    if (law.coef_ < 0).any() or law.e_step_ < 0 or law.e_run_ < 0:
        raise ValueError(f"{source}: a law's coefficients must be non-negative")
    law.feature_names_in_ = np.array(feats, dtype=object)
    law.n_features_in_ = len(feats)
    law.fingerprint_ = data.get("fingerprint") or None
    law.meta_ = data.get("meta") or {}
    law._calibration = None
    return law


def save_law(law, path) -> None:
    """Write ``law`` (a fitted per-step :class:`~torch_tos.energy.EnergyModel`) to ``path``."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"folder {str(path.parent)!r} of the law file does not exist")
    path.write_text(json.dumps(law_to_dict(law), indent=2) + "\n")


def load_law(path):
    """Read a law written by ``law.save(path)``; a missing or malformed file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"law file {str(path)!r} does not exist; make one with torch-tos calibrate "
                                "--out law.json or torch-tos fit runs.csv --save law.json")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON law file ({e})") from None
    return law_from_dict(data, str(path))


def stamp(law, runs=None, meter: str | None = None, **meta):
    """Attach this machine's fingerprint (meter and threads from the runs table when given) and
    ``meta`` to a freshly fitted law; returns it."""
    law.fingerprint_ = fingerprint(meter or (_meter_of(runs) if runs is not None else None),
                                   _threads_of(runs) if runs is not None else None)
    law.meta_ = {**(getattr(law, "meta_", {}) or {}), **meta}
    return law


__all__ = ["fingerprint", "check_fingerprint", "save_law", "load_law", "stamp", "FingerprintWarning",
           "law_to_dict", "law_from_dict", "cpu_model"]
