"""The per-layer view that ``print(report)``, ``report.plot()`` and ``report.to_html()`` show.

One :class:`LayerRow` per layer at a folding ``depth`` (torchinfo's ``depth``: a module deeper
than ``depth`` is summed into its ancestor at ``depth``; a module above it keeps only the ops it
runs itself), phases and dtypes summed, in model order, then the pseudo-layers ``(loss)``,
``(optimizer)``. Each row carries the layer's type, output shape, parameters, BOs, exact TOs
(:class:`fractions.Fraction`), FLOPs and, with an energy law, joules; its share of the step is
``row.tos / view.tos``.

Three foldings keep a real model's view short, each a row that names what it holds, and every
count stays in the totals:

* layers that cost nothing and hold no parameters (``Flatten``, ``Identity``, a view) are summed
  into one ``(N zero-cost layers)`` row;
* **repeated blocks**: sibling layers whose names differ only in their numeric indices
  (``layers.1.mlp``, ``layers.2.mlp``, …) and whose counts, type, parameters and output shapes
  are identical become one row ``layers.[1-31].mlp`` of type ``31 × MLP``;
* beyond ``max_rows``, the costliest layers are kept (model order) and the rest summed into one
  ``(N other layers)`` row.

``depth="auto"`` (the default of every view) picks the deepest depth whose rows fit in
``max_rows``; where the model repeats blocks and grouping them lets a deeper depth fit, that
grouped depth. So a ResNet shows its blocks, a transformer its attention and MLP per block kind,
and a model that does not fit at depth 1 its ``max_rows`` costliest top-level layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from .counts import MODEL_LAYER, N_BOS, fold_layer, is_pseudo_layer

AUTO = "auto"
#: Rows of the text table at ``depth="auto"``.
MAX_ROWS = 30
_N_FIELDS = N_BOS + 3  # BOs, calls, flops, bytes


@dataclass
class LayerRow:
    """One row of the view. ``kind``: ``"layer"``, ``"group"`` (repeated blocks), ``"zero"``
    (zero-cost layers) or ``"other"`` (the layers beyond ``max_rows``); ``layers``: the counts
    layers (folded names) it sums."""

    label: str
    kind: str
    layers: tuple[str, ...]
    type: str = ""
    shape: str = ""
    params: int | None = None
    bos: list[int] = field(default_factory=lambda: [0] * N_BOS)
    calls: int = 0
    flops: int = 0
    tos: Fraction = Fraction(0)
    joules: float | None = None

    @property
    def costs_nothing(self) -> bool:
        return self.tos == 0 and self.flops == 0 and not any(self.bos)


@dataclass
class LayerView:
    """The rows and how they were chosen: ``depth`` (None: every layer unfolded), ``grouped``
    (repeated blocks merged), ``auto`` (depth chosen by ``depth="auto"``), ``max_depth`` (the
    deepest module path), ``tos`` (exact total of the report)."""

    rows: list[LayerRow]
    depth: int | None
    grouped: bool
    auto: bool
    max_depth: int
    tos: Fraction

    def share(self, row: LayerRow) -> float:
        """``row``'s share of the report's TOs, 0–1."""
        return float(row.tos / self.tos) if self.tos else 0.0


def layer_depth(layer: str) -> int:
    return 0 if not layer or is_pseudo_layer(layer) else layer.count(".") + 1


def shape_text(signatures: list[tuple] | None) -> str:
    """``[8, 64, 56, 56]`` for one output tensor; ``+k`` when the output holds k more tensors;
    ``…`` when later calls returned other shapes."""
    if not signatures or not signatures[0]:
        return ""
    first = signatures[0]
    text = "[" + ", ".join(str(s) for s in first[0]) + "]"
    if len(first) > 1:
        text += f" +{len(first) - 1}"
    if len(signatures) > 1:
        text += " …"
    return text


class _Base:
    """Per-layer sums of a report at depth ``None`` (computed once), folded on demand."""

    def __init__(self, report):
        self.report = report
        self.fields = report._group("layer")  # {(layer,): [add, ..., root, calls, flops, bytes]}
        self.tos = report._priced("layer")
        self.joules = report._joules("layer") if report.law is not None else None
        self.layers = [k[0] for k in self.fields]
        self.max_depth = max((layer_depth(name) for name in self.layers), default=0)
        self.sort = report._layer_sort

    def params(self, layer: str, depth: int | None) -> int | None:
        """Parameters of ``layer``'s row: with its submodules where they are folded into it (a
        layer at ``depth``), else those it holds itself; None where the report does not know."""
        r = self.report
        if not r.params or is_pseudo_layer(layer):
            return None
        if depth is not None and layer_depth(layer) == depth:
            return r.params.get(layer)
        if not r.own_params and r.params.get("", 0):  # built without own parameters
            return None
        return r.own_params.get(layer, 0)

    def rows(self, depth: int | None) -> list[LayerRow]:
        """One row per layer folded to ``depth`` (model order, pseudo-layers last)."""
        acc: dict[str, list] = {}
        for (layer,), row in self.fields.items():
            name = fold_layer(layer, depth)
            a = acc.get(name)
            if a is None:
                acc[name] = [list(row), self.tos[(layer,)],
                             self.joules.get((layer,), 0.0) if self.joules is not None else None]
            else:
                for i in range(_N_FIELDS):
                    a[0][i] += row[i]
                a[1] += self.tos[(layer,)]
                if self.joules is not None:
                    a[2] += self.joules.get((layer,), 0.0)
        r = self.report
        out = []
        for name in sorted(acc, key=self.sort):
            f, tos, joules = acc[name]
            out.append(LayerRow(label=MODEL_LAYER if name == "" else name, kind="layer", layers=(name,),
                                type=r.layer_type(name), shape=shape_text(r.output_shapes.get(name)),
                                params=self.params(name, depth), bos=f[:N_BOS], calls=f[N_BOS],
                                flops=f[N_BOS + 1], tos=tos, joules=joules))
        return out


def _add(into: LayerRow, row: LayerRow) -> None:
    for i in range(N_BOS):
        into.bos[i] += row.bos[i]
    into.calls += row.calls
    into.flops += row.flops
    into.tos += row.tos
    if row.joules is not None:
        into.joules = (into.joules or 0.0) + row.joules
    if row.params is not None:
        into.params = (into.params or 0) + row.params
    into.layers += row.layers


def _summed(label: str, kind: str, rows: list[LayerRow]) -> LayerRow:
    out = LayerRow(label=label, kind=kind, layers=())
    for r in rows:
        _add(out, r)
    return out


def fold_zero_cost(rows: list[LayerRow]) -> list[LayerRow]:
    """Layers that cost nothing and hold no parameters summed into one row (at the end), where
    there are two or more."""
    zero = [r for r in rows if r.kind == "layer" and r.costs_nothing and not r.params]
    if len(zero) < 2:
        return rows
    kept = [r for r in rows if not (r.kind == "layer" and r.costs_nothing and not r.params)]
    return [*kept, _summed(f"({len(zero)} zero-cost layers)", "zero", zero)]


def _ranges(values: list[int]) -> str:
    values = sorted(values)
    parts, start, prev = [], values[0], values[0]
    for v in values[1:] + [None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ",".join(parts)


def _group_label(names: list[str]) -> str:
    split = [n.split(".") for n in names]
    varying = [i for i in range(len(split[0])) if len({s[i] for s in split}) > 1]
    parts = list(split[0])
    if len(varying) == 1:
        i = varying[0]
        parts[i] = "[" + _ranges([int(s[i]) for s in split]) + "]"
    else:
        for i in varying:
            parts[i] = "*"
    return ".".join(parts)


def group_repeats(rows: list[LayerRow]) -> list[LayerRow]:
    """Layers whose names differ in one numeric index only (``layers.3.mlp``, ``layers.4.mlp``)
    and whose counts, type, parameters and output shapes are identical, merged into one
    ``"group"`` row; the rows of one name pattern stand together at its first place. Where a
    row could join groups over different indices, the larger group wins."""
    candidates: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.kind != "layer" or not r.layers[0] or is_pseudo_layer(r.layers[0]):
            continue
        parts = r.layers[0].split(".")
        same = (r.type, r.shape, r.params, tuple(r.bos), r.calls, r.flops, r.tos)
        for at, p in enumerate(parts):
            if p.isdigit():
                candidates.setdefault((*parts[:at], "*", *parts[at + 1:], same), []).append(i)
    taken: dict[int, int] = {}  # row -> first row of its group
    groups: dict[int, tuple[tuple, list[int]]] = {}
    for key in sorted(candidates, key=lambda k: (-len(candidates[k]), candidates[k][0])):
        members = [i for i in candidates[key] if i not in taken]
        if len(members) >= 2:
            groups[members[0]] = (key[:-1], members)
            taken.update((i, members[0]) for i in members)
    if not groups:
        return rows
    place = {}  # name pattern -> the first row of any of its groups or singles
    for first, (pattern, members) in groups.items():
        place[pattern] = min(place.get(pattern, first), first)
    out: list[tuple[tuple, LayerRow]] = []
    for i, r in enumerate(rows):
        if i in taken and taken[i] != i:
            continue
        at = i
        if i in groups:
            pattern, members = groups[i]
            at = place[pattern]
            first = rows[i]
            r = _summed(_group_label([rows[j].layers[0] for j in members]), "group", [rows[j] for j in members])
            r.type = f"{len(members)} × {first.type}" if first.type else f"{len(members)} ×"
            r.shape = first.shape
        elif r.kind == "layer" and r.layers[0] and not is_pseudo_layer(r.layers[0]):
            parts = r.layers[0].split(".")
            for k, p in enumerate(parts):
                hit = place.get((*parts[:k], "*", *parts[k + 1:])) if p.isdigit() else None
                if hit is not None:
                    place[(*parts[:k], "*", *parts[k + 1:])] = at = min(hit, i)
                    break
        out.append(((at, i), r))
    out.sort(key=lambda t: t[0])
    return [r for _, r in out]


def keep_costliest(rows: list[LayerRow], max_rows: int) -> list[LayerRow]:
    """At most ``max_rows`` rows: the costliest layers in model order and one ``(N other
    layers)`` row summing the rest (the zero-cost row stays last)."""
    if len(rows) <= max_rows:
        return rows
    tail = [r for r in rows if r.kind == "zero"]
    body = [r for r in rows if r.kind != "zero"]
    room = max(1, max_rows - 1 - len(tail))
    ranked = sorted(range(len(body)), key=lambda i: (-body[i].tos, -body[i].flops, i))
    keep = set(ranked[:room])
    rest = [body[i] for i in range(len(body)) if i not in keep]
    n = sum(len(r.layers) for r in rest)
    other = _summed(f"({n} other layer{'' if n == 1 else 's'})", "other", rest)
    return [body[i] for i in range(len(body)) if i in keep] + [other] + tail


def _drop_zero(rows: list[LayerRow]) -> list[LayerRow]:
    return [r for r in rows if not (r.costs_nothing and not r.joules)]


def layer_view(report, depth=AUTO, *, max_rows: int | None = MAX_ROWS, zero: str = "fold",
               fold: bool = True) -> LayerView:
    """The rows at ``depth`` (an int ≥ 1, ``None`` for every layer, or ``"auto"``).
    ``zero``: what becomes of layers that cost nothing and hold no parameters — ``"fold"`` (one
    row), ``"drop"`` (left out: a figure has no bar for them) or ``"keep"``. ``max_rows`` bounds
    the rows at ``depth="auto"`` (``None``: every layer); ``fold=False`` keeps every layer as its
    own row (nothing summed into "zero-cost" or "other" rows, no repeated blocks merged)."""
    if zero not in ("fold", "drop", "keep"):
        raise ValueError(f"zero must be 'fold', 'drop' or 'keep', got {zero!r}")
    if max_rows is not None and (not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    if not fold:
        zero = "keep" if zero == "fold" else zero
    zeroed = {"fold": fold_zero_cost, "drop": _drop_zero, "keep": lambda rows: rows}[zero]
    base = _Base(report)
    total = report.tos_exact
    if depth != AUTO or not fold or max_rows is None:
        d = None if depth == AUTO else depth
        return LayerView(zeroed(base.rows(d)), d, False, depth == AUTO, base.max_depth, total)
    if base.max_depth == 0:  # no module paths: the root and the pseudo-layers only
        return LayerView(keep_costliest(zeroed(base.rows(None)), max_rows), None, False, True, 0, total)
    plain, grouped = {}, {}
    best_plain = best_grouped = None
    for d in range(1, base.max_depth + 1):
        plain[d] = zeroed(base.rows(d))
        if len(plain[d]) <= max_rows:
            best_plain = d
        grouped[d] = group_repeats(plain[d])
        if len(grouped[d]) <= max_rows:
            best_grouped = d
    if best_plain == base.max_depth:
        return LayerView(plain[best_plain], best_plain, False, True, base.max_depth, total)
    if best_grouped is not None and (best_plain is None or best_grouped > best_plain):
        return LayerView(grouped[best_grouped], best_grouped, True, True, base.max_depth, total)
    if best_plain is not None:
        return LayerView(plain[best_plain], best_plain, False, True, base.max_depth, total)
    return LayerView(keep_costliest(grouped[1], max_rows), 1, len(grouped[1]) < len(plain[1]), True,
                     base.max_depth, total)
