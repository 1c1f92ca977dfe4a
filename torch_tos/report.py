"""The :class:`Report`: per-layer BOs, TOs and FLOPs of one profiled run, with its exports.

Counts are stored at the finest grain the engine produces — ``(layer, phase, dtype, op)`` — and
every view (totals, per phase, per layer, per op, the DataFrame, the table) is a sum over them, so
all views agree by construction. TOs are computed with exact fractions from the integer BOs and the
transistor table recorded in :attr:`Report.metadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction

import torch

from .bos import BO_NAMES, BOs
from .tables import DEFAULT_TABLE, TransistorTable, dtype_name

COLUMNS = ["layer", "type", "phase", "dtype", *BO_NAMES, "tos", "flops"]
PHASE_ORDER = {"forward": 0, "loss": 1, "backward": 2, "optimizer": 3}


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


class Report:
    """Counts of one profiled run. ``print(report)`` shows the per-layer table.

    Attributes: ``bos`` (:class:`BOs`), ``tos`` (float), ``tos_exact`` (Fraction), ``flops`` (int,
    ``torch.utils.flop_counter`` formulas), ``unsupported`` (list of :class:`UnsupportedOp`),
    ``metadata`` (dict: mode, dtype override, transistor constants, loss, …).
    """

    def __init__(self, stats: dict, unsupported: dict, *, types: dict | None = None,
                 order: dict | None = None, dtype: torch.dtype | None = None,
                 table: TransistorTable | None = None, metadata: dict | None = None):
        self.transistor_table = table or DEFAULT_TABLE
        self.dtype_override = dtype
        self._types = dict(types or {})
        self._order = dict(order or {})
        # (layer, phase, dtype, op) -> [add, sub, mul, div, root, calls, flops]
        self._stats = {k: list(v) for k, v in stats.items()}
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

    # -- pricing ----------------------------------------------------------------------------
    def _price_dtype(self, dtype):
        return self.dtype_override if self.dtype_override is not None else dtype

    def _tos_exact(self, row, dtype) -> Fraction:
        return self.transistor_table.tos_exact(row[:5], self._price_dtype(dtype))

    # -- totals -----------------------------------------------------------------------------
    def _sum(self, keep=lambda key: True):
        bos = [0, 0, 0, 0, 0]
        tos = Fraction(0)
        flops = 0
        for key, row in self._stats.items():
            if not keep(key):
                continue
            for i in range(5):
                bos[i] += row[i]
            tos += self._tos_exact(row, key[2])
            flops += row[6]
        return BOs(*bos), tos, flops

    @property
    def bos(self) -> BOs:
        return self._sum()[0]

    @property
    def tos_exact(self) -> Fraction:
        return self._sum()[1]

    @property
    def tos(self) -> float:
        return float(self.tos_exact)

    @property
    def flops(self) -> int:
        return sum(row[6] for row in self._stats.values())

    @property
    def phases(self) -> list[str]:
        return sorted({k[1] for k in self._stats}, key=lambda p: PHASE_ORDER.get(p, 9))

    def by_phase(self) -> dict[str, PhaseTotal]:
        """``{phase: PhaseTotal(bos, tos, flops)}`` in the order forward, loss, backward, optimizer."""
        out = {}
        for phase in self.phases:
            b, t, f = self._sum(lambda k, p=phase: k[1] == p)
            out[phase] = PhaseTotal(b, float(t), f)
        return out

    def by_module(self, phases=None) -> dict[str, BOs]:
        """fvcore-style: BOs per module *including* its submodules (``""`` is the whole model)."""
        acc: dict[str, list] = {}
        for (layer, phase, _dt, _op), row in self._stats.items():
            if phases is not None and phase not in phases:
                continue
            names = [layer]
            if not layer.startswith("("):
                parts = layer.split(".") if layer else []
                names = [".".join(parts[:i]) for i in range(len(parts) + 1)]
            for name in names:
                a = acc.setdefault(name, [0, 0, 0, 0, 0])
                for i in range(5):
                    a[i] += row[i]
        return {k: BOs(*v) for k, v in sorted(acc.items(), key=lambda kv: self._layer_sort(kv[0]))}

    def by_op(self):
        """DataFrame: one row per aten op (summed over layers), with calls, BOs, TOs and FLOPs."""
        import pandas as pd

        acc: dict[str, list] = {}
        for (layer, phase, dt, op), row in self._stats.items():
            a = acc.setdefault(op, [0, 0, 0, 0, 0, 0, Fraction(0), 0])
            for i in range(5):
                a[i] += row[i]
            a[5] += row[5]
            a[6] += self._tos_exact(row, dt)
            a[7] += row[6]
        rows = [[op, a[5], *a[:5], float(a[6]), a[7]] for op, a in acc.items()]
        df = pd.DataFrame(rows, columns=["op", "calls", *BO_NAMES, "tos", "flops"])
        return df.sort_values("tos", ascending=False, kind="stable").reset_index(drop=True)

    # -- per-layer rows ---------------------------------------------------------------------
    def _layer_sort(self, layer: str):
        if layer in self._order:
            return (0, self._order[layer], layer)
        return (1, {"(loss)": 0, "(optimizer)": 1}.get(layer, 2), layer)

    def layer_type(self, layer: str) -> str:
        return self._types.get(layer, "")

    @staticmethod
    def _truncate(layer: str, depth: int | None) -> str:
        if depth is None or layer.startswith("("):
            return layer
        return ".".join(layer.split(".")[:depth]) if layer else layer

    def rows(self, depth: int | None = None) -> list[dict]:
        """One dict per (layer, phase, dtype), ordered by phase then model order. With ``depth``,
        submodules deeper than ``depth`` are folded into their ancestor at that depth."""
        acc: dict[tuple, list] = {}
        for (layer, phase, dt, op), row in self._stats.items():
            key = (self._truncate(layer, depth), phase, dt)
            a = acc.setdefault(key, [0, 0, 0, 0, 0, Fraction(0), 0])
            for i in range(5):
                a[i] += row[i]
            a[5] += self._tos_exact(row, dt)
            a[6] += row[6]
        # a zero-cost row (casts, views) beside a costed row of the same layer and phase is noise
        costed = {(k[0], k[1]) for k, a in acc.items() if any(a[:5]) or a[6]}
        acc = {k: a for k, a in acc.items() if any(a[:5]) or a[6] or (k[0], k[1]) not in costed}
        keys = sorted(acc, key=lambda k: (PHASE_ORDER.get(k[1], 9), self._layer_sort(k[0]), str(k[2])))
        out = []
        for layer, phase, dt in keys:
            a = acc[(layer, phase, dt)]
            out.append({"layer": layer, "type": self.layer_type(layer), "phase": phase,
                        "dtype": dtype_name(self._price_dtype(dt)),
                        **dict(zip(BO_NAMES, a[:5])), "tos": float(a[5]), "flops": a[6]})
        return out

    def to_dataframe(self, depth: int | None = None):
        """pandas DataFrame, one row per layer × phase × dtype: ``layer, type, phase, dtype, add,
        sub, mul, div, root, tos, flops`` (``depth`` folds deeper submodules into their ancestor)."""
        import pandas as pd

        return pd.DataFrame(self.rows(depth), columns=COLUMNS)

    def table(self, depth: int | None = None) -> str:
        """The text table; ``depth=1`` shows top-level modules only (like torchinfo's ``depth``)."""
        from .display import render_table

        return render_table(self, depth)

    def to_dict(self) -> dict:
        phases = {p: {"bos": t.bos.to_dict(), "tos": t.tos, "flops": t.flops}
                  for p, t in self.by_phase().items()}
        return {
            "total": {"bos": self.bos.to_dict(), "tos": self.tos, "flops": self.flops},
            "phases": phases,
            "rows": self.rows(),
            "unsupported": [u.__dict__ for u in self.unsupported],
            "metadata": self.metadata,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    # -- display ----------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self.__str__()

    def __eq__(self, other) -> bool:
        return isinstance(other, Report) and self._stats == other._stats and \
            self.unsupported == other.unsupported and self.dtype_override == other.dtype_override
