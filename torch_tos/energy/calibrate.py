"""Calibration: measure a built-in suite of micro-workloads on this machine and fit its energy law.

:data:`SUITE` spans what real training steps do, so that predicting a real model interpolates
instead of extrapolating (per step: 14 to ~1,000 kernel calls, 200 to 26 M parameters, 5e8 to
6e13 TOs):

- the paper's ``ffn`` (Banknote, tens of calls, tiny matmuls) and ``cnn`` (32-channel convs);
- ``mlp``: wide matmuls up to 2048 × 2048 × 4 layers (17 M parameters: optimizer traffic), a
  batch-4 run where the optimizer dominates, a 12-layer narrow stack (call-bound), ``mlpdrop``
  (dropout: random-number generation);
- ``conv``: narrow convs on large maps (8 channels, 64²) to wide convs on tiny maps (512 channels,
  2², also 6 layers at batch 8: ~14 M weights streamed per step, more low-intensity conv bytes than
  resnet18 at the demo's 16×32×32), batch norm; ``dwconv``: depthwise-separable blocks; ``mobile``: MobileNetV3
  blocks (3×3 and 5×5 depthwise convs at strides 1 and 2, squeeze-and-excitation, ReLU/hardswish); ``resnet``: small ResNets
  (strided convs, residual adds, projections, max pooling; 16–512 channels, down to
  resnet18's late stages: 256 channels on 4² and 512 on 2² maps at batch 8);
- ``transformer``: embeddings, attention, layer norm, dropout, 1 to 6 layers (up to ~500 calls);
- ``embed``: a 100 k × 256 embedding (26 M parameters, dense gradient);
- ``lstm``/``gru``: recurrent layers (counted on the CPU: fused kernels, see
  :mod:`torch_tos.energy.families.micro`).

Each entry's epochs are set so a run lasts about 0.4 s single-threaded on a 2020s x86 core, and
each entry is also run at a quarter of that length (:data:`LENGTHS`) so per-step and per-run
costs separate; the whole suite, 3 repeats, is about 60 s of measured runs on an idle core (+ the
reference workload when asked).
:func:`calibrate` measures it with :func:`~torch_tos.energy.runner.run_plan` into a runs CSV
next to the law (``law.json`` → ``law.runs.csv``; resumable like sweeps: a rerun measures only
what is missing), fits ``EnergyModel(features=...)`` (:mod:`.fit`), saves it with the machine's
fingerprint (:mod:`.law`) and reports its leave-one-configuration-out and leave-one-family-out
errors (:func:`heldout_errors`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .evaluate import DEFAULT_FEATURES as _DEFAULT_LAW_FEATURES

from .families import Config, get_family
from .runfile import check_output
from .runner import Workload, run_plan
from .runs import read_runs

#: (family, width, depth, activation, input_size, batch size, epochs)
SUITE = (
    ("ffn", 8, 3, "sigmoid", None, 64, 70), ("ffn", 64, 3, "gelu", None, 64, 32),
    ("ffn", 512, 3, "tanh", None, 64, 8),
    ("mlp", 256, 2, "relu", None, 32, 190), ("mlp", 1024, 3, "gelu", None, 32, 10),
    ("mlp", 2048, 4, "relu", None, 32, 2), ("mlp", 2048, 2, "relu", None, 4, 9),
    ("mlp", 64, 12, "relu", None, 32, 100), ("mlpdrop", 512, 3, "relu", None, 32, 40),
    ("conv", 8, 2, "relu", 64, 16, 6), ("conv", 32, 3, "relu", 32, 16, 4), ("conv", 128, 2, "relu", 8, 16, 8),
    ("conv", 256, 2, "relu", 4, 16, 7), ("conv", 512, 2, "relu", 2, 16, 3), ("conv", 64, 6, "relu", 16, 16, 2),
    ("conv", 512, 6, "relu", 2, 8, 2),
    ("resnet", 16, 3, "relu", 32, 16, 10), ("resnet", 32, 4, "relu", 32, 16, 3), ("resnet", 64, 3, "relu", 16, 16, 5),
    ("resnet", 64, 4, "relu", 32, 8, 2),
    ("dwconv", 32, 4, "relu", 32, 16, 2), ("dwconv", 128, 3, "relu", 8, 16, 10),
    ("dwconv", 256, 2, "relu", 4, 16, 19),
    ("mobile", 16, 4, None, 32, 16, 5), ("mobile", 24, 6, None, 32, 16, 3), ("mobile", 16, 8, None, 64, 16, 2),
    ("transformer", 64, 2, "gelu", 32, 8, 14), ("transformer", 128, 1, "relu", 64, 8, 8),
    ("transformer", 256, 2, "gelu", 16, 8, 6), ("transformer", 64, 6, "gelu", 16, 8, 10),
    ("embed", 64, None, None, 50000, 32, 29), ("embed", 256, None, None, 100000, 32, 2),
    ("lstm", 64, 1, None, 16, 16, 70), ("lstm", 128, 2, None, 32, 16, 17), ("gru", 64, 2, None, 16, 16, 20),
    ("cnn", None, 2, "gelu", 32, 64, 7), ("cnn", None, 5, "gelu", 32, 64, 2),
)
#: The default features of a calibrated law: those of :data:`~torch_tos.energy.evaluate.DEFAULT_LAW`
#: (TOs, bytes, elementwise bytes, conv and matmul calls, plus the kernel-efficiency terms of
#: :mod:`~torch_tos.energy.efficiency` — slow-path depthwise backward TOs among them — and norm
#: calls, fused recurrent-layer calls), the candidate with the lowest mean of the
#: leave-one-configuration-out and leave-one-family-out errors on this suite
#: (benchmarks/bench_energy_law.py; figures in docs/law5-report.md).
DEFAULT_FEATURES = _DEFAULT_LAW_FEATURES
DEFAULT_REPEATS = 3
#: Every entry runs at these fractions of its epochs (two lengths: see :func:`suite_workloads`).
LENGTHS = (0.25, 1.0)


def suite_workloads(*, threads: int = 1, families=None, scale: float = 1.0, batch_size: int | None = None,
                    lengths=LENGTHS, suite=SUITE) -> list[Workload]:
    """The suite as :class:`~torch_tos.energy.runner.Workload` objects, each entry at every run
    length of ``lengths`` (fractions of its epochs: runs of one model at two lengths separate the
    per-step costs from the per-run ones, which equal-length runs would confound); ``families``:
    keep only these; ``scale``: multiply every entry's epochs; ``batch_size``: override every entry's."""
    if families is not None:
        known = {s[0] for s in suite}
        bad = sorted(set(families) - known)
        if bad:
            raise ValueError(f"unknown suite family {bad[0]!r}; accepted: {', '.join(sorted(known))}")
    if not scale > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    out = []
    for name, width, depth, act, size, batch, epochs in suite:
        if families is not None and name not in families:
            continue
        opts = {"batch_size": batch_size or batch}
        if name == "cnn":
            opts["image_size"] = size
        elif name != "ffn":
            opts["input_size"] = size
        fam = get_family(name, **opts)
        config = Config(name, width, depth, act, size)
        runs = sorted({max(1, round(epochs * scale * f)) for f in lengths})
        out += [Workload(fam, config, e, fam.default_lr, threads) for e in runs]
    return out


def runs_path(law_path) -> Path:
    """Where the calibration's runs CSV lives: ``law.json`` → ``law.runs.csv``."""
    p = Path(law_path)
    return p.with_name(p.stem + ".runs.csv")


@dataclass
class Calibration:
    """What :func:`calibrate` returns: the fitted ``law``, its ``runs`` (DataFrame), the files,
    the held-out ``errors`` (the tidy DataFrame of :func:`heldout_errors`), ``seconds``."""

    law: object
    runs: pd.DataFrame
    law_path: Path
    runs_path: Path
    errors: pd.DataFrame
    seconds: float


def calibrate(out="law.json", *, runs=None, meter="auto", repeats: int = DEFAULT_REPEATS, reference=False,
              threads: int = 1, features=DEFAULT_FEATURES, families=None, scale: float = 1.0,
              batch_size: int | None = None, seed: int = 0, progress: bool = True, callback=None) -> Calibration:
    """Measure :data:`SUITE` on this machine, fit and save the law (see the module doc).

    ``out``: the law's JSON file; ``runs``: the runs CSV (default :func:`runs_path`);
    ``reference``: drift-correct every run (:mod:`.reference`); ``threads``: torch threads per
    run (1 unless told); ``features``: the law's counted features; ``families``/``scale``/
    ``batch_size``: a smaller or longer suite (see :func:`suite_workloads`).
    """
    from .fit import EnergyModel

    t0 = time.perf_counter()
    law_path = check_output(out, what="--out")
    csv_path = check_output(runs_path(law_path) if runs is None else runs, what="runs file")
    if csv_path.resolve() == law_path.resolve():
        raise ValueError(f"the law and its runs cannot both be {str(law_path)!r}")
    model = EnergyModel(features=tuple(features))
    model._check_linear()  # a measured column as a feature fails here, before any run
    workloads = suite_workloads(threads=threads, families=families, scale=scale, batch_size=batch_size)
    run_plan(workloads, csv_path, repeats=repeats, meter=meter, reference=reference, seed=seed,
             progress=progress, callback=callback, desc="calibration runs")
    table = read_runs(csv_path, features=tuple(features))
    law = model.fit(table)
    law.save(law_path)
    errors = heldout_errors(table, features=tuple(features))
    return Calibration(law, table, law_path, csv_path, errors, time.perf_counter() - t0)


def evaluation_laws(features=DEFAULT_FEATURES, n_runs: int | None = None) -> dict:
    """The laws a calibration is judged by: the paper's TOs and FLOPs laws, the per-step laws of
    :func:`~.evaluate.default_laws` and the calibrated law on ``features``; with ``n_runs``, only
    the laws with at most half as many coefficients as runs (a held-out fold must fit them)."""
    from .evaluate import _n_coef, default_laws
    from .fit import EnergyModel

    laws = default_laws()
    if not any(tuple(m.features or ()) == tuple(features) for m in laws.values()):
        laws["+".join(features)] = EnergyModel(features=tuple(features))
    if n_runs is not None:
        laws = {k: v for k, v in laws.items() if _n_coef(v) <= n_runs // 2}
    return laws


def heldout_errors(runs: pd.DataFrame, features=DEFAULT_FEATURES) -> pd.DataFrame:
    """Leave-one-configuration-out and leave-one-family-out scores of :func:`evaluation_laws`,
    the mean-only baseline and the noise floor (:func:`~.evaluate.evaluate`; print with
    :func:`~.evaluate.format_evaluation`)."""
    from .evaluate import evaluate

    splits = ("loco", "lofo") if runs["family"].nunique() > 1 else ("loco",)
    return evaluate(runs, laws=evaluation_laws(features, len(runs)), splits=splits)


__all__ = ["heldout_errors", "evaluation_laws", "SUITE", "DEFAULT_FEATURES", "calibrate", "suite_workloads",
           "runs_path", "Calibration"]
