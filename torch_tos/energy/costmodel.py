"""The cost model: a device's machine profile and its step-level laws — what ``torch-tos calibrate``
makes and ``load_law`` reads.

A :class:`CostModel` predicts the joules and seconds of training or inference steps of any model
from its counts:

1. every counts row is priced by the machine profile (:mod:`.machine`, :mod:`.pricing`): its
   calls' kernel costs, read off curves measured on the device per op class and dtype;
2. the step-level law of the mode (:mod:`.steplaw`) turns the kernel costs and the ops per phase
   into the run's cost: a row costs ``α · kernel cost + β_phase · calls``; the steps and the run
   add ``e_step · steps + e_run`` (the ``(fixed)`` part no layer owns);
3. the prediction interval is the law's held-out residual ratios applied to the total.

:meth:`CostModel.price` is that one function, over a :class:`~torch_tos.counts.Counts` table or a
:class:`~torch_tos.report.Report`: ``law.predict(model, inputs, …)`` counts the model
(:func:`.stepcount.count_steps`) and calls it, ``profile(model, …, law=law)`` and
``report.with_law(law)`` call it on the report's counts — so they agree exactly. A run of
``steps`` steps is priced as its first step plus ``steps − 1`` steady steps when both are given
(the optimizer's first step creates its state).

Where it cannot vouch for a number it says so: a floating dtype the profile has not measured is an
error naming the ``--dtypes`` to add (:class:`~.machine.DtypeNotMeasured`); a mode it has no law
for is an error; more steps than the longest calibrated run, kernel cost or ops per step far outside
(beyond half or twice) the calibrated ranges, calls with more
work than any measured call, ops without a cost class, another machine or thread count than the
calibration's are warnings (:class:`~.predict.ExtrapolationWarning`, also listed in
``Prediction.warnings``).
"""

from __future__ import annotations

import warnings

import torch

from ..validation import check_count
from .pricing import PHASE_GROUPS, price_counts
from .predict import ExtrapolationWarning, Prediction, per_layer_table
from .steplaw import QUANTITIES, TERMS, UNITS

FORMAT, VERSION = "torch_tos.costmodel", 2


class CostModel:
    """A calibrated cost model (module doc).

    ``profile``: the :class:`~.machine.MachineProfile`; ``laws``: ``{(mode, quantity): StepLaw}``
    (fitted; or fit them with :meth:`fit`, scikit-learn style); ``fingerprints``: ``{"profile": {...}, "runs": [{...}, ...]}`` — the machine that
    measured the profile and the machines that measured the runs; ``meta``: free-form notes
    (dtypes, threads, meter, suite)."""

    def __init__(self, profile, laws: dict | None = None, *, fingerprints: dict | None = None,
                 meta: dict | None = None):
        self.profile = profile
        self.laws = dict(laws or {})
        self.fingerprints = dict(fingerprints or {})
        self.meta = dict(meta or {})

    # -- fitting ---------------------------------------------------------------------------------
    def fit(self, X, y=None) -> "CostModel":
        """Fit the step-level law of every mode in ``X`` — a priced runs table
        (:func:`.pricing.price_runs` with this model's profile) with a ``mode`` column — for joules
        and seconds (``y`` is read from its ``joules`` and ``seconds`` columns); returns ``self``."""
        from .steplaw import StepLaw

        if y is not None:
            raise ValueError("CostModel.fit reads joules and seconds from the priced runs table; pass y=None")
        modes = sorted(set(X["mode"].astype(str))) if "mode" in X else ["training"]
        laws = {}
        for mode in modes:
            runs = X[X["mode"].astype(str) == mode] if "mode" in X else X
            for q in QUANTITIES:
                laws[(mode, q)] = StepLaw(mode, q).fit(runs)
        self.laws = laws
        return self

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for m, _ in self.laws))

    @property
    def dtypes(self) -> tuple[str, ...]:
        return self.profile.dtypes

    def law(self, mode: str, quantity: str = "joules"):
        hit = self.laws.get((mode, quantity))
        if hit is None:
            raise ValueError(f"this law has no {mode} terms (it was calibrated on {', '.join(self.modes) or 'nothing'} "
                             f"runs); calibrate again with {mode} runs (torch-tos calibrate measures both)")
        return hit

    # -- the one prediction path -----------------------------------------------------------------
    def price(self, counts, *, mode: str | None = None, steps: int = 1, steady=None, coverage: float = 0.9,
              tf32: bool | None = None, types: dict | None = None, report=None, warn: bool = True) -> Prediction:
        """The :class:`~.predict.Prediction` of ``steps`` steps whose first step has the counts
        ``counts`` (a Counts or a Report) and whose later steps have ``steady`` (default: the same
        counts). ``mode``: ``"training"`` or ``"inference"`` (default: training when the counts have
        a backward phase); ``tf32``: price float32 GEMMs and convolutions as TF32 where the profile
        measured it (default: PyTorch's current TF32 flags, on a CUDA profile); ``types``: layer →
        module type for the per-layer table."""
        from .features import as_counts

        steps = _check_steps(steps)
        first = as_counts(counts)
        later = as_counts(steady) if steady is not None else first
        if mode is None:
            mode = "training" if "backward" in first.phases else "inference"
        laws = {q: self.law(mode, q) for q in QUANTITIES}
        tf32 = self._tf32() if tf32 is None else bool(tf32)
        run = price_counts(self.profile, first, tf32=tf32)
        if steps > 1:
            run = run.plus(price_counts(self.profile, later, tf32=tf32).scaled(steps - 1))
        by_row, totals, fixed, terms = {}, {}, {}, {}
        for q, law in laws.items():
            c = law.coef_
            k = 1 if q == "joules" else 0  # Priced rows are (seconds, joules)
            for key, cost in run.rows.items():
                beta = c.get(f"beta_{PHASE_GROUPS.get(key[1], 'forward')}", 0.0)
                v = c["alpha"] * cost[k] + beta * run.calls[key] + c.get("beta_memory", 0.0) * run.fresh.get(key, 0.0)
                j, s = by_row.get(key, (0.0, 0.0))
                by_row[key] = (v, s) if q == "joules" else (j, v)
            fixed[q] = c.get("e_step", 0.0) * steps + c.get("e_run", 0.0)
            ops = run.ops()
            terms[q] = law.terms(cost=run.joules if q == "joules" else run.seconds, ops=ops, steps=steps,
                                 fresh=run.bytes_fresh)
            totals[q] = sum(terms[q].values())
        notes = list(run.notes) + self._range_notes(mode, steps, run) + self._machine_notes()
        if warn:
            for n in notes:
                warnings.warn(n, ExtrapolationWarning, stacklevel=3)
        (jl, jh), (sl, sh) = (laws[q].interval(coverage) for q in QUANTITIES)
        return Prediction(joules=totals["joules"], joules_low=jl * totals["joules"], joules_high=jh * totals["joules"],
                          seconds=totals["seconds"], seconds_low=sl * totals["seconds"],
                          seconds_high=sh * totals["seconds"], steps=steps, mode=mode, coverage=coverage,
                          per_layer=per_layer_table(by_row, (fixed["joules"], fixed["seconds"]), types),
                          by_row=by_row, fixed_joules=fixed["joules"], fixed_seconds=fixed["seconds"], terms=terms,
                          warnings=notes, report=report, law=self.describe_law(mode))

    def predict(self, model: torch.nn.Module, inputs, *, mode: str = "training", steps: int = 1, target=None,
                loss_fn=None, optimizer=None, device=None, coverage: float = 0.9, table=None) -> Prediction:
        """The joules and seconds of ``steps`` training steps (``mode="training"``: forward, loss,
        backward, ``optimizer.step()``; the first step with the optimizer's state as given, the
        others from the state it leaves) or inference steps (``mode="inference"``: a forward pass
        under ``torch.no_grad()``) of ``model`` on ``inputs``. ``loss_fn``/``target`` as in
        :func:`torch_tos.profile` (default: the ``output.sum()`` surrogate); ``optimizer``: the
        optimizer of each training step (``None``: no optimizer step); ``device``: where to count
        (default: meta, or the weights' device for layers with fast paths,
        :func:`.stepcount.counting_device`). Neither the model nor the optimizer is touched."""
        from .stepcount import count_steps

        steps = _check_steps(steps)
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.law(mode)  # a mode this law cannot predict fails before any counting
        counted = count_steps(model, inputs, mode=mode, target=target, loss_fn=loss_fn, optimizer=optimizer,
                              device=device, table=table)
        report = counted.steady
        types = {layer: report.layer_type(layer) for layer in {k[0] for k in report.counts.rows}}
        pred = self.price(counted.first.counts, mode=mode, steps=steps, steady=counted.steady.counts,
                          coverage=coverage, types=types, report=report, warn=False)
        notes = pred.warnings
        for n in notes:
            warnings.warn(n, ExtrapolationWarning, stacklevel=2)
        return pred

    def machine_state(self, meter=None, repeats: int = 5) -> float:
        """The machine's current cost of work over the calibration's: the calibration's drift
        reference (:mod:`.reference`) read now — ``repeats`` readings after a warm-up, median, with
        the calibration's meter (default) and threads — over its nominal. Multiply a prediction by
        it (:meth:`~.predict.Prediction.rescaled`) to predict at the machine's state now rather than
        at the calibration's. A law calibrated without the reference is an error."""
        from .meters import get_meter
        from .reference import Reference

        nominal, steps = self.meta.get("reference_joules"), self.meta.get("reference_steps")
        if not nominal or not steps:
            raise ValueError("this cost model was calibrated without the drift reference, so the machine's state "
                             "cannot be compared with the calibration's; calibrate again (on a CPU the reference is "
                             "on by default)")
        meter = get_meter(meter if meter is not None else self.meta.get("meter") or "auto")
        previous = torch.get_num_threads()
        try:
            torch.set_num_threads(int(self.meta.get("threads") or previous))
            return Reference(int(steps)).nominal(meter, repeats) / float(nominal)
        finally:
            torch.set_num_threads(previous)

    # -- checks ----------------------------------------------------------------------------------
    def _tf32(self) -> bool:
        if self.profile.device.get("type") != "cuda" or "tf32" not in self.profile.dtypes:
            return False
        return bool(torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest")

    def _range_notes(self, mode: str, steps: int, run) -> list[str]:
        ranges = self.law(mode).ranges_
        out = []
        lo, hi = ranges.get("steps", (None, None))
        if hi is not None and steps > hi:
            out.append(f"{steps} steps is beyond the longest calibrated run ({hi:g} steps; calibrated {lo:g} – {hi:g}): "
                       "the per-step and per-run terms extrapolate")
        per_step = {"cost_joules": run.joules / steps, **{f"ops_{g}": n / steps for g, n in run.ops().items()}}
        for col, v in per_step.items():
            lo, hi = ranges.get(col, (None, None))
            if lo is None or (hi == 0 and v == 0):
                continue
            if v > 2 * hi or v < lo / 2:
                what = "kernel cost" if col == "cost_joules" else col.replace("ops_", "") + " ops"
                out.append(f"{what} per step ({v:.4g}) is outside the calibrated {lo:.4g} – {hi:.4g}: the step-level "
                           "law extrapolates")
        return out

    def _machine_notes(self) -> list[str]:
        from .fingerprint import compare_here
        from .reference import noise_notes

        threads = compare_here(self.fingerprints.get("profile") or {}, self.meta.get("threads"))
        return threads + noise_notes(self.meta)

    # -- description -----------------------------------------------------------------------------
    def describe_law(self, mode: str) -> str:
        c = self.law(mode, "joules").coef_
        parts = [f"{c['alpha']:.3g} × kernel cost"]
        for term in TERMS[mode][1:]:
            parts.append(f"{c[term]:.3g} J{UNITS[term]}")
        return f"{mode}: E = " + " + ".join(parts)

    def __str__(self) -> str:
        dev = self.profile.device
        lines = [f"cost model of {dev.get('name', '?')} ({dev.get('type', '?')}, {self.meta.get('threads', '?')} "
                 f"thread(s), meter {self.meta.get('meter', '?')}); dtypes: {', '.join(self.dtypes)}",
                 f"  machine profile: {len(self.profile.points)} measured calls, dispatch floor "
                 f"{self.profile.floor['seconds'] * 1e6:.2f} µs"]
        lines += self._measured_by()
        for mode in self.modes:
            lines.append("  " + self.describe_law(mode))
            lo, hi = self.law(mode).interval()
            lines.append(f"    90 % interval ×{lo:.2f} – ×{hi:.2f} ({self.law(mode).interval_source_})")
        return "\n".join(lines)

    __repr__ = __str__

    def _measured_by(self) -> list[str]:
        """Which machines measured the profile and the runs (from :attr:`fingerprints`)."""
        def hosts(fps) -> str:
            seen: dict = {}
            for fp in fps:
                what = fp.get("gpu") or fp.get("machine") or fp.get("cpu") or "?"
                key = f"{fp.get('host') or '?'} ({what}, torch {fp.get('torch') or '?'})"
                seen[key] = seen.get(key, 0) + 1
            shown = [k + (f" ×{v}" if v > 1 else "") for k, v in list(seen.items())[:4]]
            return ", ".join(shown) + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")

        out = []
        profiles = self.fingerprints.get("profiles") or ([self.fingerprints["profile"]]
                                                         if self.fingerprints.get("profile") else [])
        if profiles:
            shards = f" ({len(profiles)} shards, merged)" if len(profiles) > 1 else ""
            out.append(f"  microbenchmarks measured on {hosts(profiles)}{shards}")
        runs = self.fingerprints.get("runs") or []
        if runs:
            out.append(f"  runs measured on {hosts(runs)}")
        return out

    # -- files -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The model as JSON-ready data (the law.json format; :mod:`.law` reads and checks it)."""
        laws: dict = {}
        for (mode, q), law in self.laws.items():
            laws.setdefault(mode, {})[q] = law.to_dict()
        return {"format": FORMAT, "version": VERSION, "meta": dict(self.meta), "profile": self.profile.to_dict(),
                "laws": laws, "fingerprints": dict(self.fingerprints), "summary": str(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "CostModel":
        """The model of :meth:`to_dict` (checked whole by :func:`torch_tos.energy.load_law`)."""
        from .machine import MachineProfile
        from .steplaw import StepLaw

        laws = {(mode, q): StepLaw.from_dict(mode, q, d) for mode, per in data["laws"].items() for q, d in per.items()}
        return cls(MachineProfile.from_dict(data["profile"]), laws, fingerprints=data.get("fingerprints"),
                   meta=data.get("meta"))

    def save(self, path) -> None:
        """Write the model to ``path`` as JSON, atomically (a crash or a full disk leaves the
        previous file intact)."""
        import json

        from ..fileio import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")


def _check_steps(steps) -> int:
    return check_count(steps, "steps", what="steps to predict")


__all__ = ["CostModel", "FORMAT", "VERSION"]
