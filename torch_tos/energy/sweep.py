"""The sweep runner: measure the training energy of every configuration of a family.

For each configuration (paper Table IV, :mod:`torch_tos.energy.families`):

1. the TOs and FLOPs of one training step (forward, MSE loss, backward, SGD step) come from
   :func:`torch_tos.profile` on the meta device (nothing computed), once per distinct batch size
   of an epoch (the last batch may be smaller), and are multiplied by the steps of the run;
2. ``repeats`` training runs of ``epochs`` epochs, each on a freshly initialised model (seed =
   ``seed`` + repeat), are measured by the meter with ``torch.set_num_threads(threads)`` (1, as
   in the paper: core-to-core traffic is not what TOs count), Python's garbage collector paused
   inside the window. One untimed step of each configuration warms up first. Runs are
   interleaved across configurations by default (see ``order``).

Every finished run is appended to ``out`` at once (flushed and fsynced), so killing the sweep
loses no finished run; rerunning with the same ``out`` skips every (configuration, epochs,
repeat) already there. The file refuses runs from another meter, or with different counts for
the same configuration (e.g. another image size), rather than mixing them. Trimming the highest
and lowest runs (paper: drop 5 + 5 of 50) is done when fitting (``trim=``), so the file keeps
every measurement.
"""

from __future__ import annotations

import csv
import gc
import logging
import math
import os
import re
import socket
import time
from pathlib import Path

import pandas as pd
import torch

from ..api import profile
from .families import Config, Family, get_family
from .meters import Meter, get_meter
from .runs import COLUMNS, trim_runs, validate_runs

logger = logging.getLogger("torch_tos.energy")
ORDERS = ("interleaved", "grouped")


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


# -- counting and training --------------------------------------------------------------------
def batch_sizes(n: int, batch: int) -> dict[int, int]:
    """``{batch size: steps per epoch}`` for ``n`` samples in order, the last batch partial."""
    sizes = {batch: n // batch} if n >= batch else {}
    if n % batch:
        sizes[n % batch] = sizes.get(n % batch, 0) + 1
    return sizes


def count_run(family: Family, config: Config, X: torch.Tensor, y: torch.Tensor, epochs: int,
              lr: float = 0.01) -> tuple[float, int]:
    """TOs and FLOPs of a whole training run: Σ over batch sizes of steps x one step's counts."""
    model = family.build(config)
    tos, flops = 0.0, 0
    for size, steps in batch_sizes(len(X), family.batch_size).items():
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        report = profile(model, X[:size], mode="training", loss_fn=family.loss_fn(), target=y[:size],
                         optimizer=opt, device="meta")
        if report.unsupported:
            ops = ", ".join(sorted({u.op for u in report.unsupported}))
            logger.warning("%s: ops without a counting rule count zero: %s", config.label, ops)
        tos += steps * epochs * report.tos
        flops += steps * epochs * report.flops
    return tos, flops


def train(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn, batch: int, epochs: int,
          lr: float = 0.01, max_steps: int | None = None) -> float:
    """Plain SGD training over ``X`` in order (exactly the steps :func:`count_run` counts)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss = torch.zeros(())
    steps = 0
    for _ in range(epochs):
        for i in range(0, len(X), batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(X[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return float(loss.detach())
    return float(loss.detach())


# -- the results file -------------------------------------------------------------------------
def _norm(value) -> str:
    text = "" if value is None else str(value).strip()
    if text.lower() in ("", "nan", "none"):
        return ""
    try:
        f = float(text)
        return str(int(f)) if f.is_integer() else text
    except ValueError:
        return text


def run_key(row: dict) -> tuple:
    """Identity of a run in the results file: configuration, epochs, repeat."""
    return tuple(_norm(row.get(c)) for c in ("family", "width", "depth", "activation", "epochs", "repeat"))


def read_existing(out: Path) -> list[dict]:
    """Rows already in ``out`` (as strings). A last line cut short by a kill is removed."""
    if not out.exists() or out.stat().st_size == 0:
        return []
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        logger.warning("%s: removing an incomplete last line (the previous sweep was killed while "
                       "writing it)", out)
        with open(out, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
        if not data:
            return []
    lines = data.decode("utf-8").splitlines()
    header = next(csv.reader([lines[0]]))
    if header != COLUMNS:
        raise ValueError(f"{out} is not a runs file of this sweep: its header is {','.join(header)}, "
                         f"expected {','.join(COLUMNS)}; use another --out")
    return list(csv.DictReader(lines))


def append_row(out: Path, row: dict) -> None:
    new = not out.exists() or out.stat().st_size == 0
    with open(out, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


# -- the sweep --------------------------------------------------------------------------------
def sweep(family: str = "ffn", out: str | os.PathLike = "runs.csv", *, widths=None, depths=None,
          activations=None, epochs: int | None = None, repeats: int = 3, meter="auto", shard=None,
          seed: int = 0, batch_size: int = 64, lr: float | None = None, image_size: int | None = None,
          n_images: int | None = None, threads: int = 1, cooldown: float = 0.0,
          order: str = "interleaved", trim: int = 0, progress: bool = True, callback=None) -> pd.DataFrame:
    """Run (or resume) a sweep of ``family`` (``"ffn"`` or ``"cnn"``) into the CSV ``out``.

    ``widths``/``depths``/``activations``: lists (defaults: the paper's ranges, see
    :mod:`~torch_tos.energy.families`); ``epochs``: per run (default 10 for ffn, 1 for cnn; the
    paper: 2000 and 25); ``repeats``: runs per configuration (paper: 50); ``meter``: ``"auto"``,
    ``"rapl"``, ``"nvml"``, ``"cputime"`` or a :class:`~torch_tos.energy.meters.Meter`;
    ``shard="i/n"``: only every n-th configuration starting at the i-th, so several machines can
    share a sweep, each writing its own file; ``cooldown``: seconds to sleep before each run;
    ``order``: ``"interleaved"`` (default: round r runs repeat r of every configuration, so slow
    drifts of the machine - heat, other load - spread over all configurations instead of biasing
    some) or ``"grouped"`` (all repeats of a configuration back to back); ``callback(row)``: called
    after each run is written.

    Returns the runs of this sweep's configurations and epochs now in ``out`` (a DataFrame,
    :data:`COLUMNS`, numeric columns as numbers), without each configuration's ``trim`` highest
    and lowest runs when ``trim`` is given (the file always keeps every run).
    """
    options = {k: v for k, v in (("image_size", image_size), ("n_images", n_images)) if v is not None}
    fam = get_family(family, batch_size=batch_size, **options)
    configs = fam.configs(widths, depths, activations)
    epochs = fam.default_epochs if epochs is None else epochs
    for name, v in (("epochs", epochs), ("repeats", repeats), ("threads", threads)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if trim and (not isinstance(trim, int) or trim < 0 or repeats <= 2 * trim):
        raise ValueError(f"trim={trim!r} drops {trim} highest and {trim} lowest runs of each configuration: "
                         f"it needs a non-negative integer and more than {2 * trim} repeats, got {repeats}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; accepted: {', '.join(ORDERS)}")
    lr = (0.01 if fam.name == "ffn" else 1e-4) if lr is None else float(lr)
    sh = parse_shard(shard)
    if sh is not None:
        configs = configs[sh[0] - 1::sh[1]]
    out = Path(out)
    if out.parent and not out.parent.exists():
        raise FileNotFoundError(f"folder {str(out.parent)!r} of the output file does not exist")
    existing = read_existing(out)
    meter = get_meter(meter)
    meters_in_file = sorted({r["meter"] for r in existing if r.get("meter")})
    if meters_in_file and meters_in_file != [meter.source]:
        raise ValueError(f"{out} holds runs measured with {', '.join(meters_in_file)} but this sweep would "
                         f"measure with {meter.source}; energies from different meters do not belong in "
                         f"one fit: use another --out or --meter {meters_in_file[0].split('-')[0]}")
    done = {run_key(r): r for r in existing}
    host, version = socket.gethostname(), torch.__version__
    X, y = fam.data()
    loss_fn = fam.loss_fn()
    keys = {c.key() for c in configs}

    todo = {c: [r for r in range(repeats) if run_key(_row_id(c, epochs, r)) not in done] for c in configs}
    counts = {}
    for config in _bar(configs, desc="counting TOs/FLOPs", unit="cfg", leave=False,
                       disable=not progress or not any(todo.values())):
        if todo[config]:
            counts[config] = count_run(fam, config, X, y, epochs, lr)
            _check_counts(out, config, epochs, *counts[config], existing)
    if order == "interleaved":  # round r runs repeat r of every configuration: drift spreads evenly
        queue = [(c, r) for r in range(repeats) for c in configs if r in todo[c]]
    else:
        queue = [(c, r) for c in configs for r in todo[c]]
    left = {c: len(todo[c]) for c in configs}
    cfg_bar = _bar(total=len(configs), initial=sum(1 for c in configs if not left[c]), desc="configs",
                   unit="cfg", disable=not progress)
    run_bar = _bar(total=len(configs) * repeats, initial=len(configs) * repeats - len(queue), desc="runs",
                   unit="run", disable=not progress)
    warm = set()
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for config, repeat in queue:
            tos, flops = counts[config]
            if config not in warm:  # first-call costs (kernel selection, allocator) stay out of runs
                torch.manual_seed(seed)
                train(fam.build(config), X, y, loss_fn, fam.batch_size, 1, lr, max_steps=1)
                warm.add(config)
            torch.manual_seed(seed + repeat)
            model = fam.build(config)
            if cooldown:
                time.sleep(cooldown)
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                with meter.measure() as m:
                    train(model, X, y, loss_fn, fam.batch_size, epochs, lr)
            finally:
                if gc_was_enabled:
                    gc.enable()
            row = {**_row_id(config, epochs, repeat), "tos": tos, "flops": flops,
                   "joules": m.joules, "seconds": m.seconds, "meter": m.source,
                   "estimated": m.estimated, "host": host, "torch": version}
            row = {k: _fmt(v) for k, v in row.items()}
            append_row(out, row)
            done[run_key(row)] = row
            run_bar.update(1)
            run_bar.set_postfix_str(f"{config.label} #{repeat}: {m.joules:.3g} J")
            left[config] -= 1
            if not left[config]:
                cfg_bar.update(1)
            if callback is not None:
                callback(row)
    finally:
        torch.set_num_threads(previous_threads)
        run_bar.close()
        cfg_bar.close()
    rows = [r for r in read_existing(out) if (r["family"], *(_norm(r[c]) for c in ("width", "depth")),
                                              r["activation"]) in keys and _norm(r["epochs"]) == str(epochs)]
    df = pd.DataFrame(rows, columns=COLUMNS).replace("", float("nan"))
    if df.empty:
        return df
    df = validate_runs(df, name=str(out))
    df["estimated"] = df["estimated"].astype(str).str.lower() == "true"
    return trim_runs(df, trim)


def _row_id(config: Config, epochs: int, repeat: int) -> dict:
    return {"family": config.family, "width": config.width, "depth": config.depth,
            "activation": config.activation, "repeat": repeat, "epochs": epochs}


def _check_counts(out, config, epochs, tos, flops, existing) -> None:
    for r in existing:
        if run_key(r)[:5] != run_key(_row_id(config, epochs, 0))[:5]:
            continue
        try:
            old_tos, old_flops = float(r["tos"]), float(r["flops"])
        except (TypeError, ValueError):
            continue
        if not math.isclose(old_tos, tos, rel_tol=1e-9) or not math.isclose(old_flops, flops, rel_tol=1e-9):
            raise ValueError(f"{out} holds runs of {config.label} with {old_tos:.6g} TOs / {old_flops:.6g} "
                             f"FLOPs, but this sweep counts {tos:.6g} / {flops:.6g} (another image size, "
                             f"batch size or torch_tos version?): use another --out")
        return


def _bar(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, **kwargs)


__all__ = ["sweep", "count_run", "train", "parse_ints", "parse_shard", "batch_sizes", "Meter"]
