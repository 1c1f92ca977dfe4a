"""Sweeps: measure the training energy of every configuration of a family into a CSV.

:func:`sweep` builds one :class:`~torch_tos.energy.runner.Workload` per configuration of the
family (paper Table IV for ``ffn``/``cnn``, :mod:`torch_tos.energy.families`) and hands them to
:func:`~torch_tos.energy.runner.run_plan`, which counts each configuration's features per step,
measures ``repeats`` runs of ``epochs`` epochs each (``threads`` torch threads: 1, as in the
paper), optionally drift-corrected by a reference workload (``reference=True``), and appends
every run to ``out`` as it finishes, under a file lock. Rerunning with the same ``out`` skips
every run already there (also one finished meanwhile by a concurrent sweep on the same file);
the file refuses runs of another meter or with other counts for the same configuration. Every
row records its whole configuration (:data:`~torch_tos.energy.runs.CONFIG_COLUMNS`), so sweeps
with other epochs or batch sizes can share a file without mixing. Trimming the highest and
lowest runs (paper: drop 5 + 5 of 50) is done when fitting (``trim=``): the file keeps every run.
"""

from __future__ import annotations

import os
import re

import pandas as pd
import torch

from .families import get_family
from .isolate import fresh_server, resolve_isolate
from .meters import get_meter
from .runner import Workload, batch_sizes, count_features, run_plan, train
from .runs import COLUMNS, CONFIG_COLUMNS, _norm, trim_runs, validate_runs


# -- parsing helpers (shared with the CLI) ----------------------------------------------------
def parse_ints(text: str, what: str = "values") -> list[int]:
    """``"4-18"``, ``"4-18:2"``, ``"4,6,8"`` or a mix such as ``"2-6,8,10"`` → sorted unique ints."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+)(?::(\d+))?)?", part)
        if not m:
            raise ValueError(f"malformed {what} {text!r}; expected e.g. 4-18, 4-18:2 or 4,6,8")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if hi < lo or step < 1:
            raise ValueError(f"malformed {what} {text!r}: range {part!r} is empty")
        out.extend(range(lo, hi + 1, step))
    return sorted(set(out))


def parse_shard(shard) -> tuple[int, int] | None:
    """``"i/n"`` (1 ≤ i ≤ n) or ``(i, n)`` → ``(i, n)``; ``None`` stays ``None``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ValueError(f"malformed shard {shard!r}; expected i/n with 1 ≤ i ≤ n, e.g. 1/4")
        shard = (int(m.group(1)), int(m.group(2)))
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 1 <= i <= n):
        raise ValueError(f"shard {i}/{n} is out of range; expected i/n with 1 ≤ i ≤ n, e.g. 1/4")
    return i, n




# -- the sweep --------------------------------------------------------------------------------
def sweep(family: str = "ffn", out: str | os.PathLike = "runs.csv", *, widths=None, depths=None,
          activations=None, epochs: int | None = None, repeats: int = 3, meter="auto", shard=None,
          seed: int = 0, batch_size: int | None = None, lr: float | None = None, image_size: int | None = None,
          n_images: int | None = None, input_size: int | None = None, threads: int = 1,
          cooldown: float = 0.0, order: str = "interleaved", trim: int = 0, reference=False,
          progress: bool = True, callback=None, isolate: bool | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep of ``family`` into the CSV ``out``.

    ``family``: ``"ffn"``, ``"cnn"`` (the paper's) or a micro family of the calibration suite
    (``mlp``, ``conv``, ``dwconv``, ``transformer``, ``lstm``, …);
    ``widths``/``depths``/``activations``: lists (defaults: the family's ranges); ``epochs``: per
    run (default 10 for ffn, 1 for cnn; the paper: 2000 and 25); ``repeats``: runs per
    configuration (paper: 50); ``meter``: ``"auto"``, ``"rapl"``, ``"nvml"``, ``"cputime"`` or a
    :class:`~torch_tos.energy.meters.Meter`; ``reference``: ``True`` to measure the reference
    workload before and after each run and drift-correct it (:mod:`~torch_tos.energy.reference`);
    ``shard="i/n"``: only every n-th configuration starting at the i-th, so several machines can
    share a sweep, each writing its own file; ``cooldown``: seconds to sleep before each run;
    ``order``: ``"interleaved"`` (default: round r runs repeat r of every configuration, so slow
    drifts spread over all configurations) or ``"grouped"``; ``callback(row)``: called after each
    run is written; ``image_size``/``n_images`` (cnn), ``input_size`` (micro families);
    ``isolate``: measure each run in a process of its own, as a calibration does
    (:mod:`~torch_tos.energy.isolate`; default: where ``os.fork`` exists, at one thread).

    Returns the runs of this sweep's configurations now in ``out`` (a DataFrame, numeric columns
    as numbers), without each configuration's ``trim`` highest and lowest runs when ``trim`` is
    given (the file always keeps every run).
    """
    options = {k: v for k, v in (("image_size", image_size), ("n_images", n_images),
                                 ("input_size", input_size), ("batch_size", batch_size)) if v is not None}
    fam = get_family(family, **options)
    configs = fam.configs(widths, depths, activations)
    epochs = fam.default_epochs if epochs is None else epochs
    for name, v in (("epochs", epochs), ("repeats", repeats), ("threads", threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if trim and (not isinstance(trim, int) or trim < 0 or repeats <= 2 * trim):
        raise ValueError(f"trim={trim!r} drops {trim} highest and {trim} lowest runs of each configuration: "
                         f"it needs a non-negative integer and more than {2 * trim} repeats, got {repeats}")
    lr = fam.default_lr if lr is None else float(lr)
    sh = parse_shard(shard)
    if sh is not None:
        configs = configs[sh[0] - 1::sh[1]]
    workloads = [Workload(fam, c, epochs, lr, threads) for c in configs]
    meter = get_meter(meter)
    isolate = resolve_isolate(isolate, workloads, torch.device("cpu"))
    with fresh_server(isolate, workloads, meter) as server:
        rf = run_plan(workloads, out, repeats=repeats, meter=meter, reference=reference, seed=seed, order=order,
                      cooldown=cooldown, progress=progress, callback=callback, fresh=server)
    wanted = {tuple(_norm(v) for v in w.settings(len(w.data()[0])).values()) for w in workloads}
    rows = [r for r in rf.rows() if tuple(_norm(r[c]) for c in CONFIG_COLUMNS) in wanted]
    df = pd.DataFrame(rows, columns=COLUMNS).replace("", float("nan"))
    if df.empty:
        return df
    df = validate_runs(df, name=str(rf.path))
    return trim_runs(df, trim)


__all__ = ["sweep", "count_features", "train", "parse_ints", "parse_shard", "batch_sizes", "Workload"]
