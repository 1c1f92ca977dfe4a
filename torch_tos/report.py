"""The :class:`Report`: per-layer BOs, TOs and FLOPs of one profiled run, with its exports.

A report holds one :class:`~torch_tos.counts.Counts` table (:attr:`Report.counts`, keyed by
``(layer, phase, dtype, op)``, the finest grain the engine produces). Every view — the totals,
:meth:`~Report.by_phase`, :meth:`~Report.by_module`, :meth:`~Report.by_op`, :meth:`~Report.rows`,
the text table, the DataFrame and the JSON — is a :meth:`Counts.group <torch_tos.counts.Counts.group>`
of that table, priced with :meth:`Counts.priced`-style exact pricing: TOs are
:class:`fractions.Fraction` values computed once per ``(group, dtype)`` from the summed integer
BOs, never once per op row. Groups and their prices are computed on first use and kept, so reading
several views of one report costs one pass each.

The class is three concerns: the count views here, the energy views with a law
(:class:`~torch_tos.reportenergy.EnergyViews`) and the exports — text table, DataFrame, JSON,
figure, HTML (:class:`~torch_tos.reportexport.Exports`). Reports are built by one factory,
:func:`torch_tos.reporting.build_report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch

from .bos import BO_NAMES, BOs
from .counts import (BYTES, CALLS, FIELDS, FLOPS, N_BOS, Counts, is_recompute, layer_and_ancestors,
                     layer_sort_key, phase_sort_key, price_groups, regroup)
from .reportenergy import EnergyViews, check_law  # noqa: F401 - check_law re-exported
from .reportexport import COLUMNS, Exports  # noqa: F401 - COLUMNS re-exported
from .tables import DEFAULT_TABLE, TransistorTable, dtype_name

#: Columns of :meth:`Report.by_op`.
OP_COLUMNS = ["op", "calls", *BO_NAMES, "tos", "flops", "bytes", "recompute"]


_FINE = ("layer", "phase", "dtype")


@dataclass(frozen=True)
class PhaseTotal:
    """BOs, TOs and FLOPs of one phase."""

    bos: BOs
    tos: float
    flops: int


@dataclass(frozen=True)
class UnsupportedOp:
    """An aten op with no counting rule: it ran, and counted zero."""

    op: str
    layer: str
    phase: str
    calls: int


class Report(EnergyViews, Exports):
    """Counts of one profiled run. ``print(report)`` shows the per-layer table.

    Attributes: ``counts`` (the :class:`~torch_tos.counts.Counts` table every view reads; treat it
    as read-only — views are cached), ``bos`` (:class:`BOs`), ``tos`` (float), ``tos_exact``
    (Fraction), ``flops`` (int, ``torch.utils.flop_counter`` formulas), ``calls``, ``bytes``,
    ``params`` (parameters per module, submodules included), ``own_params`` (parameters each
    module holds itself), ``output_shapes`` (per layer, the distinct output shapes of its calls,
    recorded by the forward hooks at count time), ``unsupported`` (list of
    :class:`UnsupportedOp`), ``metadata`` (dict: mode, dtype override, transistor constants, loss,
    …), ``law`` (a cost model or ``None``; with one, ``prediction``, ``joules``,
    ``overhead_joules`` and a ``joules`` column — see :meth:`with_law`). Guide: docs/reports.md.

    ``counts`` may be a :class:`~torch_tos.counts.Counts` or a plain ``{key: row}`` mapping; the
    report keeps its own copy.
    """

    def __init__(self, counts, unsupported: dict, *, types: dict | None = None,
                 order: dict | None = None, dtype: torch.dtype | None = None,
                 table: TransistorTable | None = None, metadata: dict | None = None,
                 params: dict | None = None, uncalled=None, law=None,
                 own_params: dict | None = None, shapes: dict | None = None):
        self.transistor_table = table or DEFAULT_TABLE
        #: parameters per module including its submodules (``""``: the whole model), model order
        self.params: dict[str, int] = dict(params or {})
        #: parameters each module holds itself (modules without any are left out)
        self.own_params: dict[str, int] = dict(own_params or {})
        #: per layer, the distinct output shapes of its calls: a list of tuples of tensor shapes
        self.output_shapes: dict[str, list[tuple]] = {k: list(v) for k, v in (shapes or {}).items()}
        self._uncalled = list(uncalled or ())
        self.law = check_law(law) if law is not None else None
        self.dtype_override = dtype
        self._types = dict(types or {})
        self._order = dict(order or {})
        self.counts = counts.copy() if isinstance(counts, Counts) else Counts(counts)
        self._cache: dict = {}
        self.unsupported = [UnsupportedOp(op, layer, phase, calls)
                            for (op, layer, phase), calls in sorted(unsupported.items(),
                                                                     key=lambda kv: (kv[0][0], kv[0][1]))]
        self.metadata = {
            "dtype_override": dtype_name(dtype) if dtype is not None else None,
            "transistor_table": self.transistor_table.as_dict(),
            "transistor_costs": self.transistor_table.per_op_table(),
            "torch": torch.__version__,
            **(metadata or {}),
        }

    # -- cached groups and prices -----------------------------------------------------------
    @property
    def _view(self) -> Counts:
        """The table the views read: :attr:`counts`, or with a dtype override every row retyped
        to it (so the rows, TOs and joules of a what-if agree)."""
        if self.dtype_override is None:
            return self.counts
        hit = self._cache.get("view")
        if hit is None:
            hit = self._cache["view"] = self.counts.retyped(self.dtype_override)
        return hit

    def _group(self, *by: str, depth: int | None = None) -> dict[tuple, list[int]]:
        """:meth:`Counts.group` of the view, cached. A grouping without ``op`` is summed from the
        ``(layer, phase, dtype)`` grouping (one pass over the table for all of them: a table
        holds several ops per layer)."""
        key = ("group", by, depth)
        hit = self._cache.get(key)
        if hit is None:
            if "op" in by or (by == _FINE and depth is None):
                hit = self._view.group(*by, depth=depth)
            else:
                hit = regroup(self._group(*_FINE), _FINE, by, depth)
            self._cache[key] = hit
        return hit

    def _priced(self, *by: str, depth: int | None = None) -> dict[tuple, Fraction]:
        """Exact TOs per group of ``by``, each ``(group, dtype)`` priced once."""
        key = ("priced", by, depth)
        hit = self._cache.get(key)
        if hit is None:
            with_dtype = by if "dtype" in by else (*by, "dtype")
            hit = self._cache[key] = price_groups(
                self._group(*with_dtype, depth=depth), with_dtype, by,
                table=self.transistor_table)
        return hit

    def _total(self) -> list[int]:
        return self._group().get((), [0] * len(FIELDS))

    # -- totals -----------------------------------------------------------------------------
    @property
    def bos(self) -> BOs:
        return BOs(*self._total()[:N_BOS])

    @property
    def tos_exact(self) -> Fraction:
        return self._priced().get((), Fraction(0))

    @property
    def tos(self) -> float:
        return float(self.tos_exact)

    @property
    def flops(self) -> int:
        return self._total()[FLOPS]

    @property
    def calls(self) -> int:
        return self._total()[CALLS]

    @property
    def bytes(self) -> int:
        """Σ bytes the ops read and wrote (an estimate; see :mod:`torch_tos.counts`)."""
        return self._total()[BYTES]

    @property
    def phases(self) -> list[str]:
        return sorted((g[0] for g in self._group("phase")), key=phase_sort_key)

    def by_phase(self) -> dict[str, PhaseTotal]:
        """``{phase: PhaseTotal(bos, tos, flops)}`` in the order forward, loss, backward, optimizer."""
        groups, priced = self._group("phase"), self._priced("phase")
        return {p: PhaseTotal(BOs(*groups[(p,)][:N_BOS]), float(priced[(p,)]), groups[(p,)][FLOPS])
                for p in self.phases}

    def by_module(self, phases=None) -> dict[str, BOs]:
        """fvcore-style: BOs per module *including* its submodules (``""`` is the whole model);
        pseudo-layers (``(loss)``, ``(optimizer)``) stand beside it. ``phases`` restricts to those."""
        sort = self._layer_sort
        return {k: BOs(*v) for (k,), v in sorted(self._inclusive(phases).items(), key=lambda kv: sort(kv[0][0]))}

    def _inclusive(self, phases, *extra: str) -> dict[tuple, list[int]]:
        """BOs per ``(module, *extra)``, each module *including* its submodules, over ``phases``
        (``None``: all)."""
        keep = None if phases is None else set(phases)
        acc: dict[tuple, list[int]] = {}
        for (layer, phase, *rest), row in self._group("layer", "phase", *extra).items():
            if keep is not None and phase not in keep:
                continue
            for name in layer_and_ancestors(layer):
                k = (name, *rest)
                a = acc.get(k)
                if a is None:
                    acc[k] = list(row[:N_BOS])
                else:
                    for i in range(N_BOS):
                        a[i] += row[i]
        return acc

    def by_op(self):
        """DataFrame: one row per aten op (summed over layers), with calls, BOs, TOs, FLOPs,
        bytes and ``recompute`` (True for the ops an activation-checkpointing recompute re-ran,
        named ``"aten.mm (recompute)"``), most TOs first."""
        import pandas as pd

        priced = self._priced("op")
        rows = [[op, a[CALLS], *a[:N_BOS], float(priced[(op,)]), a[FLOPS], a[BYTES], is_recompute(op)]
                for (op,), a in self._group("op").items()]
        df = pd.DataFrame(rows, columns=OP_COLUMNS)
        return df.sort_values("tos", ascending=False, kind="stable").reset_index(drop=True)

    def by_module_and_op(self, phases=None) -> dict[str, dict[str, BOs]]:
        """fvcore's ``by_module_and_operator``: ``{module: {op: BOs}}``, each module *including*
        its submodules (``""`` is the whole model); ``phases`` restricts to those phases."""
        acc: dict[str, dict[str, BOs]] = {}
        for (name, op), v in self._inclusive(phases, "op").items():
            acc.setdefault(name, {})[op] = BOs(*v)
        sort = self._layer_sort
        return dict(sorted(acc.items(), key=lambda kv: sort(kv[0])))

    def uncalled_modules(self) -> set[str]:
        """Names of the model's modules that never ran (fvcore's ``uncalled_modules``); a shared
        module that ran under any of its names counts as called."""
        return set(self._uncalled)

    # -- per-layer rows ---------------------------------------------------------------------
    @property
    def _layer_sort(self):
        return layer_sort_key(self._order)

    def layer_type(self, layer: str) -> str:
        return self._types.get(layer, "")

    def rows(self, depth: int | None = None) -> list[dict]:
        """One dict per (layer, phase, dtype), ordered by phase then model order. With ``depth``,
        submodules deeper than ``depth`` are folded into their ancestor at that depth."""
        key = ("rows", depth)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = self._rows(depth)
        return [dict(r) for r in hit]

    def _rows(self, depth):
        by = ("layer", "phase", "dtype")
        groups, priced = self._group(*by, depth=depth), self._priced(*by, depth=depth)
        # a zero-cost row (casts, views) beside a costed row of the same layer and phase is noise
        costed = {(k[0], k[1]) for k, a in groups.items() if any(a[:N_BOS]) or a[FLOPS]}
        keys = [k for k, a in groups.items()
                if any(a[:N_BOS]) or a[FLOPS] or (k[0], k[1]) not in costed]
        layer_sort = self._layer_sort
        keys.sort(key=lambda k: (phase_sort_key(k[1]), layer_sort(k[0]), str(k[2])))
        joules = self._joules(*by, depth=depth) if self.law is not None else None
        out = []
        for k in keys:
            layer, phase, dt = k
            a = groups[k]
            row = {"layer": layer, "type": self.layer_type(layer), "phase": phase, "dtype": dtype_name(dt),
                   **dict(zip(BO_NAMES, a[:N_BOS])), "tos": float(priced[k]), "flops": a[FLOPS]}
            if joules is not None:
                row["joules"] = joules.get(k, 0.0)
            out.append(row)
        return out

    # -- display ----------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self.__str__()

    def __eq__(self, other) -> bool:
        return isinstance(other, Report) and self.counts == other.counts and \
            self.unsupported == other.unsupported and self.dtype_override == other.dtype_override
