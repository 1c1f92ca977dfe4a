"""Calibration: measure this device into a cost model.

:func:`calibrate` makes a :class:`~.costmodel.CostModel` in three measured stages, each resumable:

1. **microbenchmarks** → the machine profile (:func:`.benchfile.measure_profile`, into
   ``law.bench.jsonl``): every op class of :mod:`.opclasses`, every requested dtype, a sweep of
   work per call (:mod:`.benchsuite`);
2. **the step-level suite** → measured runs (:func:`.runner.run_plan`, into ``law.runs.csv``):
   small models of many kinds (:data:`SUITE`: MLPs, convolutional, residual, depthwise and
   MobileNet-style nets, transformers, embeddings, LSTM/GRU, the paper's FFN and CNN), trained
   with SGD, SGD with momentum, Adam or AdamW and run for inference under ``no_grad``, mostly
   float32 with some runs in the other calibrated dtypes, each at two run lengths
   (:data:`LENGTHS`, so per-step and per-run costs separate), ``repeats`` times;
3. **the fit**: every run's counts priced by the profile (:func:`.pricing.price_runs`), the
   step-level law of each mode fitted on them (:mod:`.steplaw`), the model saved atomically with the
   fingerprints of the machines that measured the profile and the runs, and judged
   (:func:`heldout_errors`: leave-one-configuration-out and leave-one-family-out errors of the cost
   model beside the paper's TOs and FLOPs laws, a mean-only baseline and the noise floor).

The suite's sizes are fixed: each entry's epochs are set so a run lasts about 0.25 s
single-threaded on a 2020s x86 core (the two lengths are a quarter and all of that; an entry of one
epoch runs at one length).
"""

from __future__ import annotations


import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .families import Config, get_family
from .isolate import fresh_server, resolve_isolate
from .reference import Reference, calibration_noise, noise_notes, recorrect
from .runfile import check_output
from .runner import Workload, run_plan
from .runs import CONFIG_COLUMNS, _norm, read_runs

#: (family, width, depth, activation, input_size, batch size, epochs, mode, dtype, optimizer).
#: ``dtype`` None: float32, replaced by the calibrated dtypes where a dtype is not calibrated.
SUITE = (
    ("ffn", 64, 3, "gelu", None, 64, 12, "training", None, None),
    ("mlp", 256, 2, "relu", None, 32, 35, "training", None, "adam"),
    ("mlp", 2048, 2, "relu", None, 4, 3, "training", None, "sgd_momentum"),
    ("mlp", 64, 12, "relu", None, 32, 36, "training", None, None),
    ("mlpdrop", 512, 3, "relu", None, 32, 9, "training", None, "adamw"),
    ("conv", 8, 2, "relu", 64, 16, 2, "training", None, None),
    ("conv", 32, 3, "relu", 32, 16, 2, "training", None, "sgd_momentum"),
    ("conv", 512, 2, "relu", 2, 16, 1, "training", None, None),
    ("resnet", 16, 3, "relu", 32, 16, 3, "training", None, "adam"),
    ("resnet", 64, 4, "relu", 32, 8, 1, "training", None, "sgd_momentum"),
    ("dwconv", 32, 4, "relu", 32, 16, 1, "training", None, None),
    ("dwconv", 128, 3, "relu", 8, 16, 3, "training", None, "adamw"),
    ("mobile", 16, 4, None, 32, 16, 2, "training", None, "sgd_momentum"),
    ("mobile", 16, 8, None, 64, 16, 1, "training", None, None),
    ("transformer", 64, 2, "gelu", 32, 8, 4, "training", None, "adamw"),
    ("transformer", 256, 2, "gelu", 16, 8, 2, "training", None, "adam"),
    ("transformer", 64, 6, "gelu", 16, 8, 2, "training", None, None),
    ("embed", 256, None, None, 100000, 32, 1, "training", None, None),
    ("lstm", 128, 2, None, 32, 16, 4, "training", None, "adam"),
    ("gru", 64, 2, None, 16, 16, 5, "training", None, None),
    ("cnn", None, 2, "gelu", 32, 64, 2, "training", None, None),
    ("mlp", 512, 3, "relu", None, 32, 6, "training", "float64", "sgd_momentum"),
    ("conv", 32, 3, "relu", 16, 16, 1, "training", "float64", None),
    ("resnet", 16, 3, "relu", 32, 16, 3, "training", "bfloat16", "adamw"),
    ("transformer", 64, 2, "gelu", 32, 8, 3, "training", "bfloat16", "adam"),
    ("mlp", 1024, 3, "gelu", None, 32, 12, "inference", None, None),
    ("conv", 64, 6, "relu", 16, 16, 3, "inference", None, None),
    ("resnet", 32, 4, "relu", 32, 16, 4, "inference", None, None),
    ("mobile", 24, 6, None, 32, 16, 5, "inference", None, None),
    ("transformer", 128, 1, "relu", 64, 8, 12, "inference", None, None),
    ("transformer", 64, 4, "gelu", 16, 8, 24, "inference", None, None),
    ("lstm", 128, 2, None, 32, 16, 20, "inference", None, None),
    ("gru", 64, 2, None, 16, 16, 15, "inference", None, None),
    ("dwconv", 128, 3, "relu", 8, 16, 13, "inference", None, None),
    ("transformer", 256, 2, "gelu", 16, 8, 8, "inference", None, None),
    ("mobile", 16, 8, None, 64, 16, 2, "inference", None, None),
    ("resnet", 16, 3, "relu", 32, 16, 8, "inference", None, None),
    ("dwconv", 32, 4, "relu", 32, 16, 3, "inference", None, None),
    ("mlp", 64, 12, "relu", None, 32, 80, "inference", None, None),
    ("ffn", 64, 3, "gelu", None, 64, 40, "inference", None, None),
    ("cnn", None, 2, "gelu", 32, 64, 4, "inference", None, None),
    ("mlp", 1024, 3, "gelu", None, 32, 25, "inference", "bfloat16", None),
    ("conv", 64, 4, "relu", 16, 16, 2, "inference", "float64", None),
)
DEFAULT_REPEATS = 2
#: SGD steps of a calibration's drift reference (:class:`~.reference.Reference`): about 20 ms on a
#: 2020s x86 core, read about 400 times in a CPU calibration; medians over neighbouring readings
#: (:class:`~.reference.DriftTrack`, :func:`~.reference.recorrect`) absorb a single reading's noise.
REFERENCE_STEPS = 50
#: Every entry runs at these fractions of its epochs (two lengths: see :func:`suite_workloads`).
LENGTHS = (0.25, 1.0)


def suite_workloads(*, threads: int = 1, device: str = "cpu", dtypes=None, families=None, scale: float = 1.0,
                    lengths=LENGTHS, suite=SUITE, shard=None) -> list[Workload]:
    """The suite as :class:`~.runner.Workload` objects, each entry at every run length of
    ``lengths`` (fractions of its epochs, at least one epoch); entries in a dtype not among
    ``dtypes`` are left out; ``families``: keep only these; ``scale``: multiply every entry's
    epochs; ``shard=(i, n)``: only every n-th kept entry starting at the i-th (an entry's lengths
    stay together, so each model's per-step and per-run costs are measured on one host)."""
    if families is not None:
        known = {s[0] for s in suite}
        bad = sorted(set(families) - known)
        if bad:
            raise ValueError(f"unknown suite family {bad[0]!r}; accepted: {', '.join(sorted(known))}")
    if not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    out, kept = [], [e for e in suite if (families is None or e[0] in families)
                     and (dtypes is None or (e[8] or "float32") in dtypes)]
    if shard is not None:
        kept = kept[shard[0] - 1::shard[1]]
    for name, width, depth, act, size, batch, epochs, mode, dtype, optimizer in kept:
        dtype = dtype or "float32"
        opts = {"batch_size": batch}
        if name == "cnn":
            opts["image_size"] = size
        elif name != "ffn":
            opts["input_size"] = size
        fam = get_family(name, **opts)
        config = Config(name, width, depth, act, size)
        runs = sorted({max(1, round(epochs * scale * f)) for f in lengths})
        out += [Workload(fam, config, e, fam.default_lr, threads, mode, dtype, device, optimizer) for e in runs]
    return out


def workload_key(w: Workload, n_samples: int) -> tuple:
    """The configuration key of a workload's runs (as :func:`~.runs.config_keys` reads a runs table)."""
    settings = w.settings(n_samples)
    return tuple(_norm(settings.get(c)) for c in CONFIG_COLUMNS)


def paths(law_path) -> tuple[Path, Path]:
    """Where a calibration keeps its measurements: ``law.json`` → ``law.runs.csv``, ``law.bench.jsonl``."""
    p = Path(law_path)
    return p.with_name(p.stem + ".runs.csv"), p.with_name(p.stem + ".bench.jsonl")


def runs_path(law_path) -> Path:
    return paths(law_path)[0]


@dataclass
class Calibration:
    """What :func:`calibrate` returns: the ``law`` (a CostModel), the priced ``runs``, the files,
    the held-out ``errors`` (:func:`heldout_errors`), ``seconds`` (wall time of the calibration)."""

    law: object
    runs: pd.DataFrame
    law_path: Path
    runs_path: Path
    bench_path: Path
    errors: pd.DataFrame
    seconds: float
    notes: list = field(default_factory=list)


def calibrate(out="law.json", *, device="cpu", dtypes=None, threads: int = 1, meter="auto", repeats: int = DEFAULT_REPEATS,
              runs=None, bench=None, reference=None, families=None, scale: float = 1.0, workloads=None, seed: int = 0,
              progress: bool = True, callback=None, thin: int = 1, isolate: bool | None = None) -> Calibration:
    """Measure this device and fit its cost model (module doc); returns a :class:`Calibration`.

    ``device``: ``cpu``, ``cuda``, ``cuda:i``; ``dtypes``: the dtypes to measure (default: the
    device's, :data:`~.device.DEFAULT_DTYPES`); ``threads``: torch threads (1 unless told);
    ``runs``/``bench``: the runs CSV and the microbenchmark file (default next to ``out``);
    ``reference``: drift-correct the microbenchmarks and every run to one nominal
    (:class:`~.reference.DriftTrack`): ``True``, ``False`` or a :class:`~.reference.Reference`;
    ``None`` (default): on a CPU, where the reference workload runs; ``families``/``scale``: a
    narrower or longer suite; ``workloads``: microbenchmark workloads (all by default); ``thin``: a
    sparser microbenchmark sweep (every ``thin``-th size; for meters that need long windows);
    ``isolate``: measure each suite run in a process of its own, forked before the microbenchmarks
    (:mod:`.isolate`: the allocator state of a user's training process); ``None`` (default): on a
    CPU where ``os.fork`` exists, at one thread (:func:`~.isolate.resolve_isolate`)."""
    from .benchfile import measure_profile
    from .costmodel import CostModel
    from .device import check_dtypes, resolve_device
    from .meters import get_meter
    from .pricing import price_runs

    t0 = time.perf_counter()
    law_path = check_output(out, what="--out")
    default_runs, default_bench = paths(law_path)
    csv_path = check_output(default_runs if runs is None else runs, what="runs file")
    bench_path = check_output(default_bench if bench is None else bench, what="microbenchmark file")
    if len({csv_path.resolve(), law_path.resolve(), bench_path.resolve()}) < 3:
        raise ValueError(f"the law, its runs and its microbenchmarks need three files; got {law_path}, {csv_path}, "
                         f"{bench_path}")
    dev = resolve_device(device)
    dtypes = check_dtypes(dtypes, dev)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    suite = suite_workloads(threads=threads, device=str(dev), dtypes=set(dtypes), families=families, scale=scale)
    if workloads is not None and isinstance(workloads[0], str):
        from .benchsuite import get_workloads

        get_workloads(workloads)  # an unknown name fails before any measuring
    meter = get_meter(meter)
    ref = _reference(reference, dev)
    isolate = resolve_isolate(isolate, suite, dev)
    with fresh_server(isolate, isolated_runs(suite), meter) as server:
        profile = measure_profile(dev, dtypes, meter, bench_path, threads=threads, workloads=workloads,
                                  progress=progress, thin=thin, reference=ref)
        counted: dict = {}
        run_plan(suite, csv_path, repeats=repeats, meter=meter, reference=ref, seed=seed, progress=progress,
                 callback=callback, desc="step-level runs", counted=counted, nominal=profile.reference, fresh=server)
    table = read_runs(csv_path, features=("tos", "flops"))
    if ref is not None:
        table = recorrect(table, profile.reference, csv_path)
    priced = price_runs(table, _run_counts(suite, counted), profile)
    meta = {"dtypes": list(dtypes), "threads": threads, "meter": meter.source, "device": str(dev), "repeats": repeats,
            "isolate": isolate}
    if ref is not None:
        meta.update(reference_joules=profile.reference, reference_steps=ref.steps)
    meta.update(calibration_noise(table, profile.reference if ref is not None else None))
    law = fit_cost_model(profile, priced, meta=meta)
    law.save(law_path)
    errors = heldout_errors(priced)
    return Calibration(law, priced, law_path, csv_path, bench_path, errors, time.perf_counter() - t0,
                       noise_notes(meta))


def isolated_runs(suite) -> list:
    """The suite entries a calibration measures in fresh processes (:mod:`.isolate`): the
    training ones. Their page faults follow the bytes a step allocates, which the training law
    prices (β_m, :mod:`.steplaw`). An inference step's faults depend on how glibc trims the few
    buffers alive at once, which nothing in the law follows (a term per fresh byte did not lower
    their held-out error): measured in fresh processes they raised the inference law's
    held-out-family error from 15 % to 24 % (mean, Table V) and widened its interval from ×0.65–×1.4
    to ×0.65–×2.5, so inference runs are measured in the calibrating process."""
    return [w for w in suite if w.mode == "training"]


def _reference(reference, dev):
    """The drift reference of a calibration on ``dev``: a :class:`~.reference.Reference` or None
    (``reference`` None: the built-in one on a CPU — its workload runs on the CPU, so it tracks a
    CPU's drift only)."""
    if reference is None:
        reference = dev.type == "cpu"
    return (Reference(REFERENCE_STEPS) if reference is True else reference) or None


def _run_counts(workloads, counted: dict):
    """``run_counts(row)`` for :func:`~.pricing.price_runs`: the counts of a runs-table row's run,
    from the workloads counted while measuring (counted now when a resumed plan skipped them)."""
    from .runner import count_run

    by_key = {}
    for w in workloads:
        X, y = w.data()
        by_key[workload_key(w, len(X))] = (w, X, y)

    def run_counts(row):
        key = tuple(_norm(row.get(c)) for c in CONFIG_COLUMNS)
        hit = by_key.get(key)
        if hit is None:
            raise ValueError(f"the runs file holds a run of a configuration this calibration does not define "
                             f"({', '.join(f'{c}={v}' for c, v in zip(CONFIG_COLUMNS, key) if v)}); use another --out")
        w, X, y = hit
        c = counted.get(w)
        if c is None:
            c = counted[w] = count_run(w, X, y)
        return c.run

    return run_counts


def workload_of_row(row) -> Workload:
    """The :class:`~.runner.Workload` a runs-table row measured, rebuilt from its configuration
    columns (the family by name with its batch size and input size); a family this torch_tos does
    not define is an error naming it."""
    from .families import FAMILIES

    name = str(row.get("family"))
    if name not in FAMILIES:
        raise ValueError(f"the runs hold family {name!r}, which this torch_tos cannot rebuild to count it (known: "
                         f"{', '.join(FAMILIES)})")

    def value(col, cast=int):
        v = _norm(row.get(col))
        return cast(float(v)) if v and cast is int else (v or None)

    opts = {"batch_size": value("batch_size")}
    size = value("input_size")
    if name == "cnn":
        opts["image_size"] = size
    elif name != "ffn" and size is not None:
        opts["input_size"] = size
    fam = get_family(name, **opts)
    config = Config(name, value("width"), value("depth"), value("activation", str), size if name != "ffn" else None)
    mode = value("mode", str) or "training"
    optimizer = value("optimizer", str) if mode == "training" else None
    if optimizer == fam.optimizer_name:
        optimizer = None
    return Workload(fam, config, value("epochs"), fam.default_lr, value("threads") or 1, mode,
                    value("dtype", str) or "float32", value("device", str) or "cpu", optimizer)


def run_counts_of(runs: pd.DataFrame):
    """``run_counts(row)`` for :func:`~.pricing.price_runs` on any runs table: each configuration
    rebuilt (:func:`workload_of_row`) and counted once."""
    from .runner import count_run

    cache: dict = {}

    def run_counts(row):
        key = tuple(_norm(row.get(c)) for c in CONFIG_COLUMNS)
        hit = cache.get(key)
        if hit is None:
            w = workload_of_row(row)
            X, y = w.data()
            hit = cache[key] = count_run(w, X, y).run
        return hit

    return run_counts


def fit_cost_model(profile, priced: pd.DataFrame, meta: dict | None = None, *, profile_fingerprint: dict | None = None,
                   profile_fingerprints=None):
    """The :class:`~.costmodel.CostModel` of ``profile`` and the priced runs table ``priced``, with
    the fingerprints of the machines that measured them: ``profile_fingerprint`` (the machine that
    measured the microbenchmarks; default: the profile's own :attr:`~.machine.MachineProfile.fingerprint`,
    else this machine with the profile's device and threads),
    ``profile_fingerprints`` (every shard's, when the profile merges shards) and one per
    (host, machine, torch, threads) of the runs. Runs of several machines, and runs of one
    configuration measured on two hosts, are refused (a cost model is one machine's)."""
    from .costmodel import CostModel
    from .fingerprint import fingerprint
    from .runs import check_one_machine, config_keys, config_label

    check_one_machine(priced, how="the runs of machine ")
    given = profile_fingerprint or getattr(profile, "fingerprint", None)
    _check_runs_machine(given, priced)

    def column(name, default=""):
        col = priced[name] if name in priced else pd.Series([default] * len(priced), index=priced.index)
        return col.fillna(default)

    machines, hosts = column("machine").astype(str), column("host").astype(str)
    versions, threads = column("torch").astype(str), column("threads", 0).astype(int)
    who = hosts + " / " + machines
    keys = config_keys(priced)
    for key, idx in priced.groupby(keys, sort=False).indices.items():
        found = sorted(set(who.iloc[idx]))
        if len(found) > 1:
            raise ValueError(f"runs of {config_label(priced.iloc[idx[0]])} were measured on {len(found)} machines "
                             f"({'; '.join(found)}): a cost model is one machine's; fit the runs of each machine "
                             "separately")
    runs_fp = []
    for (host, machine, version, n), _ in priced.groupby([hosts, machines, versions, threads], sort=True):
        runs_fp.append({"host": host or None, "machine": machine or None, "torch": version or None,
                        "threads": int(n) or None})
    dev = profile.device
    prof_fp = dict(given) if given else fingerprint(threads=dev.get("threads"))
    if not given and dev.get("type") == "cuda":
        prof_fp.update(gpu=dev.get("name"), device=f"cuda:{dev.get('index') or 0}")
    fps = {"profile": prof_fp, "runs": runs_fp}
    if profile_fingerprints:
        fps["profiles"] = [dict(f) for f in profile_fingerprints]
    return CostModel(profile, fingerprints=fps, meta=meta).fit(priced)


def _check_runs_machine(profile_fp: dict | None, priced: pd.DataFrame) -> None:
    """Runs measured on another machine than the profile's are refused: the profile prices their
    calls at its own machine's costs."""
    from .runs import machines_of

    theirs = (profile_fp or {}).get("gpu") or (profile_fp or {}).get("cpu")
    found = [m for m in machines_of(priced) if m != "unknown"]
    if theirs and found and found[0] != theirs:
        raise ValueError(f"the runs were measured on {found[0]!r} but the machine profile on {theirs!r} "
                         f"({(profile_fp or {}).get('host')}): a cost model is one machine's; calibrate "
                         f"{found[0]!r} with torch-tos calibrate on it")


def heldout_errors(priced: pd.DataFrame) -> pd.DataFrame:
    """Leave-one-configuration-out and leave-one-family-out scores of the cost model (per mode) beside
    the paper's TOs and FLOPs laws, the mean-only baseline and the noise floor
    (:func:`~.evaluate.evaluate`; print with :func:`~.evaluate.format_evaluation`)."""
    from .evaluate import evaluate_cost_model

    return evaluate_cost_model(priced)


__all__ = ["SUITE", "LENGTHS", "DEFAULT_REPEATS", "calibrate", "suite_workloads", "fit_cost_model", "heldout_errors",
           "paths", "runs_path", "workload_key", "workload_of_row", "run_counts_of", "Calibration"]
