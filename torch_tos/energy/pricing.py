"""Pricing counts with a machine profile: the kernel cost of every counts row, and of whole runs.

:func:`price_counts` prices each row ``(layer, phase, dtype, op)`` of a
:class:`~torch_tos.counts.Counts` table from its work histogram
(:meth:`~torch_tos.counts.Counts.work_of`) with :meth:`.machine.MachineProfile.price`, and keeps
its calls per phase group — ``forward`` (the forward pass and the loss, called from Python),
``backward`` (called by the autograd engine), ``optimizer`` — and its **fresh bytes**, the bytes of
the new output buffers its calls allocate (every call's output bytes, except ops that write in
place and views, which allocate nothing): the inputs of the step-level law (:mod:`.steplaw`). An op the class table does not know is priced as
:data:`~.opclasses.FALLBACK` and named in the notes.

:func:`price_runs` turns a runs table and the counts of each run into the priced runs table a
:class:`~.steplaw.StepLaw` fits: ``cost_joules``, ``cost_seconds``, ``ops_forward``,
``ops_backward``, ``ops_optimizer``, ``bytes_fresh`` of each whole run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..counts import CALLS, Counts
from ..tables import dtype_name
from .machine import allocates
from .opclasses import op_class, unclassified

#: phase → the step-level law's group of ops.
PHASE_GROUPS = {"forward": "forward", "loss": "forward", "backward": "backward", "optimizer": "optimizer"}
GROUPS = ("forward", "backward", "optimizer")


@dataclass
class Priced:
    """Kernel seconds and joules of each row (``rows``: key → (seconds, joules)), calls of each row
    (``calls``), fresh bytes of each row (``fresh``), and notes (extrapolations, unclassified ops)."""

    rows: dict = field(default_factory=dict)
    calls: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    fresh: dict = field(default_factory=dict)

    @property
    def bytes_fresh(self) -> float:
        return sum(self.fresh.values())

    @property
    def seconds(self) -> float:
        return sum(s for s, _ in self.rows.values())

    @property
    def joules(self) -> float:
        return sum(j for _, j in self.rows.values())

    def ops(self) -> dict[str, int]:
        """Calls per phase group (:data:`GROUPS`)."""
        out = dict.fromkeys(GROUPS, 0)
        for key, n in self.calls.items():
            out[PHASE_GROUPS.get(key[1], "forward")] += n
        return out

    def scaled(self, n: float) -> "Priced":
        return Priced({k: (s * n, j * n) for k, (s, j) in self.rows.items()},
                      {k: c * n for k, c in self.calls.items()}, list(self.notes),
                      {k: b * n for k, b in self.fresh.items()})

    def plus(self, other: "Priced") -> "Priced":
        rows, calls = dict(self.rows), dict(self.calls)
        for k, (s, j) in other.rows.items():
            s0, j0 = rows.get(k, (0.0, 0.0))
            rows[k] = (s0 + s, j0 + j)
        for k, c in other.calls.items():
            calls[k] = calls.get(k, 0) + c
        fresh = dict(self.fresh)
        for k, b in other.fresh.items():
            fresh[k] = fresh.get(k, 0.0) + b
        return Priced(rows, calls, list(dict.fromkeys(self.notes + other.notes)), fresh)


def price_counts(profile, counts: Counts, *, tf32: bool = False) -> Priced:
    """The kernel cost of every row of ``counts`` on ``profile`` (module doc)."""
    out = Priced()
    notes = []
    for key, row in counts.rows.items():
        _layer, _phase, dtype, op = key
        work = counts.work_of(key)
        secs, joules, n = profile.price(op, dtype_name(dtype), work, tf32=tf32)
        out.rows[key] = (secs, joules)
        out.calls[key] = row[CALLS]
        out.fresh[key] = fresh_bytes(op, work)
        notes += n
    missing = unclassified({k[3] for k in counts.rows})
    if missing:
        notes.append(f"op(s) without a cost class, priced as elementwise by their bytes: {', '.join(missing)}")
    out.notes = list(dict.fromkeys(notes))
    return out


def fresh_bytes(op: str, work: dict) -> float:
    """The bytes of the output buffers the calls of one counts row allocate: ``work`` is its
    histogram ``{(flops, bytes_in, bytes_out, attrs): calls}``; 0 for an op that writes in place
    and for views (module doc)."""
    return float(sum(calls * b[2] for b, calls in work.items() if allocates(op, op_class(op, b[3]))))


def price_runs(runs: pd.DataFrame, run_counts, profile, *, tf32: bool = False) -> pd.DataFrame:
    """The priced runs table (module doc): ``run_counts(row)`` gives the :class:`Counts` of the
    whole run of a runs-table row (called once per configuration)."""
    from .runs import config_keys

    keys = config_keys(runs)
    cache: dict = {}
    cols = {c: [] for c in ("cost_joules", "cost_seconds", *(f"ops_{g}" for g in GROUPS), "bytes_fresh")}
    for key, (_, row) in zip(keys, runs.iterrows()):
        hit = cache.get(key)
        if hit is None:
            p = price_counts(profile, run_counts(row), tf32=tf32)
            hit = cache[key] = (p.joules, p.seconds, p.ops(), p.bytes_fresh)
        cols["cost_joules"].append(hit[0])
        cols["cost_seconds"].append(hit[1])
        for g in GROUPS:
            cols[f"ops_{g}"].append(hit[2][g])
        cols["bytes_fresh"].append(hit[3])
    out = runs.copy()
    for c, v in cols.items():
        out[c] = v
    return out


__all__ = ["Priced", "price_counts", "price_runs", "fresh_bytes", "PHASE_GROUPS", "GROUPS"]
