"""Measure training runs into a results file: the engine shared by sweeps and calibration.

A :class:`Workload` is one configuration (a family's model, data and step) trained for
``epochs`` epochs with ``threads`` torch threads. For each workload:

1. its **counted features per step** (:func:`torch_tos.energy.features.step_features`: TOs,
   FLOPs, BOs per kind, calls, bytes, per dtype and per op class) come from
   :func:`torch_tos.profile` of one training step (forward, loss, backward, optimizer step) per
   distinct batch size of an epoch (the last batch may be smaller), averaged over the run's steps.
   They are counted on the meta device (nothing computed) unless the family runs other kernels
   there than on the run's device (``count_device = "run"``: fused recurrent layers); the row's
   ``count_device`` says which;
2. each repeat trains a freshly initialised model (seed + repeat) inside one meter window, with
   Python's garbage collector paused; one untimed step warms each workload up first. With a
   :class:`~torch_tos.energy.reference.Reference`, the reference workload is measured right
   before and after the run and the run is drift-corrected (:mod:`.reference`).

:func:`run_plan` walks the (workload, repeat) plan lazily — ``repeats=10**7`` costs nothing
before the first run — in ``"interleaved"`` order (round r runs repeat r of every workload, so a
slow drift of the machine spreads over all configurations) or ``"grouped"``. Every run is
measured and appended while holding the results file's lock (:class:`~.runfile.ResultFile`),
after re-reading what other writers finished, so concurrent sweeps on one file never run or write
a run twice, and a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import socket
import time
from dataclasses import dataclass

import torch

from ..api import profile
from .families import Config, Family
from .features import step_features
from .meters import get_meter
from .reference import Reference, measure_run
from .runfile import ResultFile
from .runs import COLUMNS, FEATURE_COLUMNS, RUN_KEY, _norm

logger = logging.getLogger("torch_tos.energy")
ORDERS = ("interleaved", "grouped")


def batch_sizes(n: int, batch: int) -> dict[int, int]:
    """``{batch size: steps per epoch}`` for ``n`` samples in order, the last batch partial."""
    sizes = {batch: n // batch} if n >= batch else {}
    if n % batch:
        sizes[n % batch] = sizes.get(n % batch, 0) + 1
    return sizes


@dataclass(frozen=True, eq=False)
class Workload:
    """One configuration to measure: ``family``'s model ``config``, ``epochs`` epochs at ``lr``."""

    family: Family
    config: Config
    epochs: int
    lr: float
    threads: int = 1

    def data(self):
        return self.family.data(self.config)

    def steps(self, n_samples: int) -> int:
        return self.epochs * sum(batch_sizes(n_samples, self.family.batch_size).values())

    def settings(self, n_samples: int) -> dict:
        """The configuration columns of the runs CSV."""
        c, f = self.config, self.family
        return {"family": c.family, "width": c.width, "depth": c.depth, "activation": c.activation,
                "input_size": f.input_size(c), "batch_size": f.batch_size, "optimizer": f.optimizer_name,
                "epochs": self.epochs, "steps": self.steps(n_samples), "dtype": f.dtype,
                "threads": self.threads}

    @property
    def label(self) -> str:
        return self.config.label


def count_features(w: Workload, X: torch.Tensor, y: torch.Tensor) -> tuple[dict, str]:
    """Counted features per step of ``w`` (mean over its steps) and the device they were counted on."""
    fam, device = w.family, ("meta" if w.family.count_device == "meta" else str(X.device))
    model = fam.build(w.config)
    total, steps = dict.fromkeys(FEATURE_COLUMNS, 0.0), 0
    for size, n in batch_sizes(len(X), fam.batch_size).items():
        opt = fam.optimizer(model.parameters(), w.lr)
        report = profile(model, X[:size], mode="training", loss_fn=fam.loss_fn(), target=y[:size],
                         optimizer=opt, device=device)
        if report.unsupported:
            ops = ", ".join(sorted({u.op for u in report.unsupported}))
            logger.warning("%s: ops without a counting rule count zero: %s", w.label, ops)
        for k, v in step_features(report, model=model).items():
            total[k] = total.get(k, 0.0) + n * w.epochs * v
        steps += n * w.epochs
    return {k: v / steps for k, v in total.items()}, device


def train(model, X, y, loss_fn, batch: int, epochs: int, lr: float = 0.01, max_steps: int | None = None,
          optimizer=None) -> float:
    """Training over ``X`` in order (exactly the steps :func:`count_features` counts); ``optimizer``:
    a factory ``(params, lr) → Optimizer`` (default SGD)."""
    opt = (optimizer or (lambda p, lr: torch.optim.SGD(p, lr=lr)))(model.parameters(), lr)
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


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def plan(workloads, repeats: int, order: str = "interleaved"):
    """The (workload, repeat) pairs in measuring order, lazily."""
    if order == "interleaved":
        return ((w, r) for r in range(repeats) for w in workloads)
    return ((w, r) for w in workloads for r in range(repeats))


class _State:
    """What the runner knows of the results file: finished run keys, nominal reference joules."""

    def __init__(self, rf: ResultFile):
        self.rf, self.done, self.size, self.nominal, self.meters = rf, set(), -1, None, set()
        self.features = {}

    def refresh(self) -> None:
        size = os.stat(self.rf.path).st_size if self.rf.path.exists() else 0
        if size == self.size:
            return
        if size == 0:
            self.size = 0
            return
        for row in self.rf.rows():
            self.done.add(tuple(_norm(row.get(c)) for c in RUN_KEY))
            if row.get("meter"):
                self.meters.add(row["meter"])
            if self.nominal is None and _norm(row.get("ref_nominal")):
                self.nominal = float(row["ref_nominal"])
            key = tuple(_norm(row.get(c)) for c in RUN_KEY[:-2])
            if key not in self.features and _norm(row.get("tos")):
                self.features[key] = (float(row["tos"]), float(row["flops"]))
        self.size = os.stat(self.rf.path).st_size


def run_plan(workloads, out, *, repeats: int = 3, meter="auto", reference=None, seed: int = 0,
             order: str = "interleaved", cooldown: float = 0.0, progress: bool = True, callback=None,
             desc: str = "runs") -> ResultFile:
    """Measure ``repeats`` runs of every workload into the CSV ``out`` (see the module doc).

    ``reference``: ``None``/``False`` (raw meter figures), ``True`` (the built-in
    :class:`~.reference.Reference`) or a :class:`~.reference.Reference`. ``callback(row)`` is
    called after each run is written. Returns the :class:`~.runfile.ResultFile`.
    """
    workloads = list(workloads)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; accepted: {', '.join(ORDERS)}")
    rf = ResultFile(out, COLUMNS)  # checks the output before any work
    state = _State(rf)
    state.refresh()
    meter = get_meter(meter)
    others = sorted(state.meters - {meter.source})
    if others:
        raise ValueError(f"{rf.path} holds runs measured with {', '.join(others)} but this run would "
                         f"measure with {meter.source}; energies from different meters do not belong in "
                         f"one fit: use another --out or --meter {others[0].split('-')[0]}")
    ref = Reference() if reference is True else (reference or None)
    host, version = socket.gethostname(), torch.__version__
    cache: dict[int, tuple] = {}
    total = len(workloads) * repeats
    bar = _bar(total=total, desc=desc, unit="run", disable=not progress)
    previous_threads = torch.get_num_threads()
    try:
        for w, repeat in plan(workloads, repeats, order):
            if id(w) not in cache:
                X, y = w.data()
                settings = {k: _fmt(v) for k, v in w.settings(len(X)).items()}
                cache[id(w)] = (X, y, settings, None)
            X, y, settings, counted = cache[id(w)]
            key = tuple(_norm(v) for v in (*settings.values(), repeat, host))
            if key in state.done:
                bar.update(1)
                continue
            if counted is None:
                counted = count_features(w, X, y)
                _check_counts(rf.path, w, key[:-2], counted[0], state)
                cache[id(w)] = (X, y, settings, counted)
            torch.set_num_threads(w.threads)
            with rf.locked():
                state.refresh()  # another writer may have finished this run meanwhile
                if key in state.done:
                    bar.update(1)
                    continue
                if ref is not None and state.nominal is None:
                    state.nominal = ref.nominal(meter)
                row = _measure(w, X, y, repeat, seed, meter, ref, state.nominal, cooldown, cache)
                row = {**settings, "repeat": str(repeat), **row, "host": host, "torch": version,
                       "count_device": counted[1], **{k: _fmt(v) for k, v in counted[0].items()}}
                rf.append(row)
                state.done.add(key)
                state.size = os.stat(rf.path).st_size
            bar.set_postfix_str(f"{w.label} #{repeat}: {float(row['joules']):.3g} J", refresh=False)
            bar.update(1)
            if callback is not None:
                callback(row)
    finally:
        torch.set_num_threads(previous_threads)
        bar.close()
    return rf


def _measure(w: Workload, X, y, repeat, seed, meter, ref, nominal, cooldown, cache) -> dict:
    fam, loss_fn = w.family, w.family.loss_fn()
    warm_key = ("warm", id(w))
    if warm_key not in cache:  # first-call costs (kernel selection, allocator) stay out of runs
        torch.manual_seed(seed)
        train(fam.build(w.config), X, y, loss_fn, fam.batch_size, 1, w.lr, max_steps=1, optimizer=fam.optimizer)
        cache[warm_key] = True
    torch.manual_seed(seed + repeat)
    model = fam.build(w.config)
    if cooldown:
        time.sleep(cooldown)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        m = measure_run(meter, lambda: train(model, X, y, loss_fn, fam.batch_size, w.epochs, w.lr,
                                             optimizer=fam.optimizer), ref, nominal)
    finally:
        if gc_was_enabled:
            gc.enable()
    return {"joules": _fmt(m.joules), "joules_raw": _fmt(m.joules_raw), "seconds": _fmt(m.seconds),
            "ref_before": _fmt(m.ref_before), "ref_after": _fmt(m.ref_after),
            "ref_nominal": _fmt(m.ref_nominal), "meter": m.source, "estimated": str(m.estimated)}


def _check_counts(path, w: Workload, key, features: dict, state: _State) -> None:
    old = state.features.get(key)
    if old is None:
        return
    tos, flops = features["tos"], features["flops"]
    if not math.isclose(old[0], tos, rel_tol=1e-9) or not math.isclose(old[1], flops, rel_tol=1e-9):
        raise ValueError(f"{path} holds runs of {w.label} with {old[0]:.6g} TOs / {old[1]:.6g} FLOPs per step, "
                         f"but this run counts {tos:.6g} / {flops:.6g} (another torch_tos version or "
                         "model definition?): use another --out")


def _bar(iterable=None, **kwargs):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, **kwargs)


__all__ = ["Workload", "run_plan", "plan", "count_features", "train", "batch_sizes", "ORDERS"]
