"""Measure training runs into a results file: the engine shared by sweeps and calibration.

A :class:`Workload` is one configuration (a family's model, data and step) trained for
``epochs`` epochs with ``threads`` torch threads. For each workload:

1. its **counts** (:func:`count_run`): the first step and a steady step per distinct batch size
   of an epoch (the last batch may be smaller), from :func:`~.stepcount.count_steps` — training
   (forward, loss, backward, optimizer step) or inference (a forward pass under ``no_grad``) — and
   the counts of the whole run (first step + every later step), which a cost model prices; the
   **counted features per step** of the runs CSV (:func:`torch_tos.energy.features.step_features`:
   TOs, FLOPs, BOs, calls, bytes, TOs per dtype), the paper's law's inputs, averaged over the run's
   steps. They are counted on the meta device (nothing computed) unless the model has layers that
   run other kernels on the run's device (:func:`~.stepcount.counting_device`); the row's
   ``count_device`` says which;
2. each repeat trains (or runs inference with) a freshly initialised model (seed + repeat) in its
   dtype inside one meter window, with Python's garbage collector paused; one untimed step warms
   each workload up first. With ``fresh`` (:mod:`.isolate`; a calibration on a CPU passes it for
   its training workloads), every run of a workload the server was made for is measured in a
   process of its own, forked from a server made before any measuring, after its own untimed
   step: the allocator state of a user's training process. With a
   :class:`~torch_tos.energy.reference.Reference`, the reference
   workload is measured right before and after the run and the run is drift-corrected
   (:mod:`.reference`).

:func:`run_plan` walks the (workload, repeat) plan lazily — ``repeats=10**7`` costs nothing
before the first run — in ``"interleaved"`` order (round r runs repeat r of every workload, so a
slow drift of the machine spreads over all configurations) or ``"grouped"``. Every run is
measured and appended while holding the results file's lock (:class:`~.runfile.ResultFile`),
after re-reading what other writers finished, so concurrent sweeps on one file never run or write
a run twice, and a killed sweep resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import dataclass

import torch

from ..counts import Counts
from .families import Config, Family
from .features import step_features
from .meters import get_meter
from .isolate import gc_paused
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


MODES = ("training", "inference")
#: Optimizers a workload may train with, by name.
OPTIMIZERS = {"sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
              "sgd_momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
              "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
              "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr)}


@dataclass(frozen=True, eq=False)
class Workload:
    """One configuration to measure: ``family``'s model ``config``, ``epochs`` epochs at ``lr``, in
    ``mode`` (training or inference) and ``dtype`` (default: the family's), on ``device``."""

    family: Family
    config: Config
    epochs: int
    lr: float
    threads: int = 1
    mode: str = "training"
    dtype: str | None = None
    device: str = "cpu"
    optimizer: str | None = None

    def make_optimizer(self, params):
        """The optimizer of each training step: :data:`OPTIMIZERS` ``[optimizer]`` at ``lr``, or the
        family's own when ``optimizer`` is None."""
        if self.optimizer is None:
            return self.family.optimizer(params, self.lr)
        return OPTIMIZERS[self.optimizer](params, self.lr)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; accepted: {', '.join(MODES)}")
        if self.optimizer is not None and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        from ..tables import parse_dtype

        return parse_dtype(self.dtype or self.family.dtype)

    def data(self):
        X, y = self.family.data(self.config)
        dt = self.torch_dtype
        X = X.to(self.device, dt) if X.is_floating_point() else X.to(self.device)
        y = y.to(self.device, dt) if y.is_floating_point() else y.to(self.device)
        return X, y

    def build(self) -> torch.nn.Module:
        model = self.family.build(self.config).to(self.device)
        if self.torch_dtype != torch.float32:
            model = model.to(self.torch_dtype)
        return model.eval() if self.mode == "inference" else model

    def steps(self, n_samples: int) -> int:
        return self.epochs * sum(batch_sizes(n_samples, self.family.batch_size).values())

    def settings(self, n_samples: int) -> dict:
        """The configuration columns of the runs CSV."""
        c, f = self.config, self.family
        return {"family": c.family, "width": c.width, "depth": c.depth, "activation": c.activation,
                "input_size": f.input_size(c), "batch_size": f.batch_size,
                "optimizer": (self.optimizer or f.optimizer_name) if self.mode == "training" else "",
                "epochs": self.epochs, "steps": self.steps(n_samples), "dtype": self.dtype or f.dtype,
                "threads": self.threads, "mode": self.mode, "device": self.device}

    @property
    def label(self) -> str:
        label = self.config.label
        if (self.dtype or self.family.dtype) != "float32":
            label += f" {self.dtype}"
        if self.optimizer and self.mode == "training":
            label += f" {self.optimizer}"
        return label + (" inference" if self.mode == "inference" else "")


@dataclass
class Counted:
    """What :func:`count_run` gives: the run's counts, its per-step features, where counted."""

    run: Counts
    features: dict
    device: str


def count_run(w: Workload, X: torch.Tensor, y: torch.Tensor) -> Counted:
    """The counts of a whole run of ``w`` (first step, then every later step at its batch size), the
    counted features per step (mean over its steps) and the device they were counted on."""
    from .stepcount import count_steps

    fam = w.family
    model = w.build()
    sizes = batch_sizes(len(X), fam.batch_size)
    first = next(iter(sizes))
    run, total, steps, device = Counts(), dict.fromkeys(FEATURE_COLUMNS, 0.0), 0, "meta"
    for size, n in sizes.items():
        opt = w.make_optimizer(model.parameters()) if w.mode == "training" else None
        counted = count_steps(model, X[:size], mode=w.mode, loss_fn=fam.loss_fn(), target=y[:size], optimizer=opt)
        device = counted.device
        if counted.first.unsupported:
            ops = ", ".join(sorted({u.op for u in counted.first.unsupported}))
            logger.warning("%s: ops without a counting rule count zero: %s", w.label, ops)
        later = n * w.epochs - (1 if size == first else 0)
        if size == first:
            run.merge(counted.first.counts)
        run.merge(counted.steady.counts, later)
        for k, v in step_features(counted.steady).items():
            total[k] = total.get(k, 0.0) + n * w.epochs * v
        steps += n * w.epochs
    return Counted(run, {k: v / steps for k, v in total.items()}, device)


def count_features(w: Workload, X: torch.Tensor, y: torch.Tensor) -> tuple[dict, str]:
    """Counted features per step of ``w`` (mean over its steps) and the device they were counted on."""
    c = count_run(w, X, y)
    return c.features, c.device


def train(model, X, y, loss_fn, batch: int, epochs: int, lr: float = 0.01, max_steps: int | None = None,
          optimizer=None) -> float:
    """Training over ``X`` in order (exactly the steps :func:`count_run` counts); ``optimizer``:
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


def infer(model, X, batch: int, epochs: int, max_steps: int | None = None) -> None:
    """Inference over ``X`` in order under ``torch.no_grad()``: the forward passes :func:`count_run`
    counts in inference mode."""
    steps = 0
    with torch.no_grad():
        for _ in range(epochs):
            for i in range(0, len(X), batch):
                model(X[i:i + batch])
                steps += 1
                if max_steps is not None and steps >= max_steps:
                    return


def run_workload(w: Workload, model, X, y, max_steps: int | None = None):
    """Run ``w``'s steps on ``model`` (train or infer)."""
    fam = w.family
    if w.mode == "inference":
        return infer(model, X, fam.batch_size, w.epochs, max_steps)
    return train(model, X, y, fam.loss_fn(), fam.batch_size, w.epochs, w.lr, max_steps,
                 optimizer=lambda params, lr: w.make_optimizer(params))


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
             desc: str = "runs", counted: dict | None = None, nominal: float | None = None,
             fresh=None) -> ResultFile:
    """Measure ``repeats`` runs of every workload into the CSV ``out`` (see the module doc).

    ``reference``: ``None``/``False`` (raw meter figures), ``True`` (the built-in
    :class:`~.reference.Reference`) or a :class:`~.reference.Reference`. ``callback(row)`` is
    called after each run is written. ``counted``: a dict the :class:`Counted` of each workload is
    kept in (keyed by the workload), so a caller that prices the runs does not count them again.
    ``nominal``: the reference joules to correct to when the file has none yet (a calibration
    shares its microbenchmarks' nominal; default: measured when the first run is).
    ``fresh``: a :class:`~.isolate.FreshProcesses` made by :func:`~.isolate.fresh_processes` with
    this meter: each run of a workload it was made for is then measured in a process of its own
    (its own warm-up step first; the reference readings stay here), the others here.
    Returns the :class:`~.runfile.ResultFile`.
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
    from .fingerprint import machine_name

    host, version = socket.gethostname(), torch.__version__
    machines: dict[str, str] = {}
    cache: dict[int, tuple] = {}
    counted_of = counted if counted is not None else {}
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
                c = counted_of.get(w) or count_run(w, X, y)
                counted_of[w] = c
                counted = (c.features, c.device)
                _check_counts(rf.path, w, key[:-2], counted[0], state)
                cache[id(w)] = (X, y, settings, counted)
            torch.set_num_threads(w.threads)
            with rf.locked():
                state.refresh()  # another writer may have finished this run meanwhile
                if key in state.done:
                    bar.update(1)
                    continue
                if ref is not None and state.nominal is None:
                    state.nominal = nominal if nominal is not None else ref.nominal(meter)
                row = _measure(w, X, y, repeat, seed, meter, ref, state.nominal, cooldown, cache, fresh)
                machine = machines.get(w.device) or machines.setdefault(w.device, machine_name(w.device))
                row = {**settings, "repeat": str(repeat), **row, "host": host, "machine": machine, "torch": version,
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


def _measure(w: Workload, X, y, repeat, seed, meter, ref, nominal, cooldown, cache, fresh=None) -> dict:
    if fresh is not None and fresh.covers(w):
        if cooldown:
            time.sleep(cooldown)
        with gc_paused():
            m = measure_run(meter, None, ref, nominal, measured=lambda: fresh.run(w, seed, repeat))
    else:
        warm_key = ("warm", id(w))
        if warm_key not in cache:  # first-call costs (kernel selection, allocator) stay out of runs
            torch.manual_seed(seed)
            run_workload(w, w.build(), X, y, max_steps=1)
            cache[warm_key] = True
        torch.manual_seed(seed + repeat)
        model = w.build()
        if cooldown:
            time.sleep(cooldown)
        with gc_paused():
            m = measure_run(meter, lambda: run_workload(w, model, X, y), ref, nominal)
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


__all__ = ["Workload", "Counted", "run_plan", "plan", "count_run", "count_features", "train", "infer", "run_workload",
           "batch_sizes", "ORDERS", "MODES"]
