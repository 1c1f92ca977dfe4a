"""The torch.fx graph view: BOs and TOs per fx node, from the same rules table as ``profile()``.

``torch_tos.graph(model, inputs)`` traces ``model`` with ``torch.fx.symbolic_trace`` and runs the
traced graph with an ``fx.Interpreter`` under the counting :class:`~torch_tos.counter.Engine`;
every aten op a node executes is booked under that node's name. ``call_module``,
``call_function`` (a ``torch.sigmoid`` inside ``forward`` is its own node) and ``call_method``
nodes all get their forward BOs/TOs; placeholders, attribute fetches and the output are zero.
No formula lives here: one rules table serves both views.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.fx

from ._compat import qualified_name
from .bos import BO_NAMES, BOs
from .copying import working_copy
from .counter import Engine
from .counts import FIELDS, FLOPS, N_BOS, Counts
from .display import grid
from .units import si
from .tables import DEFAULT_TABLE, TransistorTable, dtype_name
from .validation import check_profile_args, split_inputs


class GraphTraceError(RuntimeError):
    """The model cannot be traced by torch.fx (use ``torch_tos.profile`` instead)."""


@dataclass(frozen=True)
class NodeCount:
    """Forward counts of one fx node."""

    name: str
    op: str          # placeholder | get_attr | call_function | call_method | call_module | output
    target: str
    bos: BOs
    tos: float
    flops: int
    dtype: str | None


class _NodeScope:
    """Stand-in for :class:`~torch_tos.attribution.ModuleScope`: the running fx node is the layer."""

    def __init__(self):
        self.stack: list[str] = []

    @property
    def current(self):
        return self.stack[-1] if self.stack else None

    def owner_of(self, node):
        return None


class _CountingInterpreter(torch.fx.Interpreter):
    def __init__(self, gm, scope: _NodeScope):
        super().__init__(gm)
        self.scope = scope

    def run_node(self, n):
        self.scope.stack.append(n.name)
        try:
            return super().run_node(n)
        finally:
            self.scope.stack.pop()


def _target_name(node) -> str:
    t = node.target
    if isinstance(t, str):
        return t
    try:
        return qualified_name(t)
    except Exception:  # noqa: BLE001 - odd callables: fall back to their name
        return getattr(t, "__qualname__", None) or getattr(t, "__name__", None) or str(t)


class GraphReport:
    """Per-fx-node forward counts. ``print()`` shows the table; ``nodes`` lists :class:`NodeCount`;
    ``counts`` is the :class:`~torch_tos.counts.Counts` table (layer = fx node name) they come from."""

    def __init__(self, nodes: list[NodeCount], unsupported: list, gm: torch.fx.GraphModule,
                 counts: Counts | None = None, tos_exact: Fraction | None = None):
        self.nodes = nodes
        self.unsupported = unsupported
        self.graph_module = gm
        self.counts = counts if counts is not None else Counts()
        self.tos_exact = tos_exact if tos_exact is not None else Fraction(0)

    @property
    def bos(self) -> BOs:
        return self.counts.bos

    @property
    def tos(self) -> float:
        return float(self.tos_exact)

    @property
    def flops(self) -> int:
        return self.counts.flops

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([{"name": n.name, "op": n.op, "target": n.target, "dtype": n.dtype,
                              **n.bos.to_dict(), "tos": n.tos, "flops": n.flops} for n in self.nodes],
                            columns=["name", "op", "target", "dtype", *BO_NAMES, "tos", "flops"])

    def __str__(self) -> str:
        header = ["Node", "Op", "Target", *(b.capitalize() for b in BO_NAMES), "TOs", "FLOPs"]
        rows = [[n.name, n.op, n.target, *(si(v) for v in n.bos), si(n.tos), si(n.flops)]
                for n in self.nodes]
        lines = grid(header, rows, right_from=3)
        lines.append(f"forward: TOs {si(self.tos)}   FLOPs {si(self.flops)}")
        return "\n".join(lines)

    __repr__ = __str__


def graph(model: torch.nn.Module, inputs, *, dtype=None, device=None,
          table: TransistorTable | None = None, concrete_args: dict | None = None) -> GraphReport:
    """Trace ``model`` with torch.fx and count the forward BOs/TOs of every graph node.

    ``inputs`` as for :func:`torch_tos.profile`. The model is traced and run as a working copy
    (on ``device`` when given, ``"meta"`` to count without computing); it is never modified.
    """
    dtype, device = check_profile_args(model, "inference", dtype, device, None, None, table)
    table = table or DEFAULT_TABLE
    model_c, inputs_c = working_copy((model, inputs), device)
    try:
        gm = torch.fx.symbolic_trace(model_c, concrete_args=concrete_args)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds; quote its reason
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise GraphTraceError(f"torch.fx cannot trace {type(model).__name__}: {reason} — "
                              f"use torch_tos.profile(model, inputs), which needs no tracing") from e
    args, kwargs = split_inputs(inputs_c)
    if kwargs:
        placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
        args = tuple(kwargs[p] for p in placeholders if p in kwargs)
    scope = _NodeScope()
    engine = Engine(scope)
    engine.phase = "forward"
    with engine, torch.no_grad():
        _CountingInterpreter(gm, scope).run(*args)
    counts = engine.counts
    per_node = counts.group("layer")
    tos = counts.priced("layer", table=table, dtype=dtype)
    dtypes: dict[str, object] = {}
    for layer, _phase, dt, _op in counts.rows:  # a node's dtype: the first its ops computed in
        dtypes.setdefault(layer, dtype if dtype is not None else dt)
    nodes = []
    zero = [0] * len(FIELDS)
    for n in gm.graph.nodes:
        row = per_node.get((n.name,), zero)
        dt = dtypes.get(n.name)
        nodes.append(NodeCount(n.name, n.op, _target_name(n), BOs(*row[:N_BOS]),
                               float(tos.get((n.name,), 0)), row[FLOPS],
                               dtype_name(dt) if dt is not None else None))
    unsupported = [dict(op=o, node=l, calls=c) for (o, l, _p), c in engine.unsupported.items()]
    return GraphReport(nodes, unsupported, gm, counts, sum(tos.values(), Fraction(0)))
