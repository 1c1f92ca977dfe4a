"""The text table of a :class:`~torch_tos.report.Report` (``print(report)``, ``report.table()``).

Two layouts, both in model order with the pseudo-layers ``(loss)`` and ``(optimizer)`` last:

* **by layer** (the default): the rows of :func:`torch_tos.layerview.layer_view` — one per layer
  at a folding depth chosen so the table stays short (``depth="auto"``), phases and dtypes
  summed — with each layer's type, output shape and parameters (torchinfo's columns), its BOs,
  TOs, share of the step's TOs and FLOPs (and joules with an energy law);
* **full** (``full=True``): one row per layer × phase × dtype (every layer unless ``depth`` is
  given), the grain of :meth:`Report.rows`.

Below the layers, the totals per phase; then the run's settings and its totals in one line.
Numbers print with SI prefixes up to Y (:func:`torch_tos.units.si`), energies in J/Wh/kWh
(:func:`torch_tos.units.energy`); ``exact=True`` prints exact integers and the exact TOs
(:func:`torch_tos.units.exact`). Rows that are folded (zero-cost layers, the layers beyond the
row limit; in the full layout zero-cost and integer bookkeeping rows, e.g. a batch norm's
``num_batches_tracked += 1``) stay in every total; ``all_rows=True`` lists them.
"""

from __future__ import annotations

from .bos import BO_NAMES
from .counts import MODEL_LAYER, phase_sort_key
from .layerview import AUTO, MAX_ROWS, layer_view
from .tables import INT_FORMATS, dtype_name
from .units import energy, exact, si

_INT_NAMES = frozenset(dtype_name(d) for d in INT_FORMATS)
BO_HEADERS = [n.capitalize() for n in BO_NAMES]
#: How the footer names the options of the table (the CLI passes its flags instead).
SPELLING = {"every": "table(depth=None)", "full": "table(full=True)", "exact": "exact=True",
            "all_rows": "table(all_rows=True)"}


def human(x) -> str:
    """3 significant digits with an SI prefix (:func:`torch_tos.units.si`): 2.25M, 1.01G, 950."""
    return si(x)


def number(x, exact_: bool = False) -> str:
    """A count for a table cell: SI (``"2.25M"``) or, with ``exact_``, every digit."""
    return exact(x) if exact_ else si(x)


def share(part, whole) -> str:
    """``part / whole`` as a percentage for people: ``"12.3%"``, ``"<0.1%"``, ``"0%"``."""
    if not whole or not part:
        return "0%"
    if part == whole:
        return "100%"
    p = 100 * float(part / whole) if not isinstance(part, float) else 100 * part / float(whole)
    return "<0.1%" if 0 < p < 0.05 else f"{p:.1f}%"


def params_text(n, exact_: bool = False) -> str:
    """Parameters of a row: ``"--"`` for none (torchinfo's mark) or unknown."""
    return "--" if not n else number(n, exact_)


def grid(header, rows, right_from: int) -> list[str]:
    """Aligned columns: text left of ``right_from``, numbers right-aligned from it."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r):
        cells = [str(c).rjust(w) if i >= right_from else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    return [rule, fmt(header), rule, *(fmt(r) for r in rows), rule]



def is_folded(row: dict) -> bool:
    """A zero-cost row or an integer bookkeeping row (folded in the full layout)."""
    return (row["tos"] == 0 and row["flops"] == 0) or row["dtype"] in _INT_NAMES


def table_rows(report, depth=None, all_rows: bool = False) -> tuple[list[dict], list[dict]]:
    """``(shown, folded)`` rows of the full layout, in model order, each phase of a layer together."""
    sort = report._layer_sort
    rows = sorted(report.rows(depth), key=lambda r: (sort(r["layer"]), phase_sort_key(r["phase"])))
    if all_rows:
        return rows, []
    return [r for r in rows if not is_folded(r)], [r for r in rows if is_folded(r)]


def phase_totals(report, exact_: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the totals per phase (with a law: joules and the per-step overhead)."""
    law = report.law is not None
    header = ["Totals", *BO_HEADERS, "TOs", "% TOs", "FLOPs", *(["Energy"] if law else [])]
    joules = report.joules_by_phase() if law else {}
    total = report.tos_exact
    priced = report._priced("phase")
    rows = []
    for phase, t in report.by_phase().items():
        rows.append([phase, *(number(v, exact_) for v in t.bos), number(priced[(phase,)], exact_),
                     share(priced[(phase,)], total), number(t.flops, exact_),
                     *([energy(joules[phase])] if law else [])])
    if law:
        rows.append(["(overhead)", *([""] * (len(BO_NAMES) + 3)), energy(report.overhead_joules)])
    rows.append(["total", *(number(v, exact_) for v in report.bos), number(total, exact_),
                 "100%" if total else "0%", number(report.flops, exact_),
                 *([energy(report.joules)] if law else [])])
    return header, rows


def settings_line(report) -> str:
    """Mode, model, loss, device, dtypes and the what-if dtype of the run, in one line."""
    meta = report.metadata
    info = [f"mode: {meta.get('mode') or '?'}"]
    if meta.get("dtype_override"):
        info.append(f"priced as {meta['dtype_override']}")
    for key in ("loss", "optimizer", "device"):
        if meta.get(key):
            info.append(f"{key}: {meta[key]}")
    dtypes = sorted({dtype_name(k[0]) for k in report._group("dtype")} - _INT_NAMES)
    if dtypes:
        info.append(f"dtypes: {', '.join(dtypes)}")
    return "   ".join(info)


def totals_line(report, exact_: bool = False) -> str:
    """The run's parameters, TOs, FLOPs, BOs (and energy) in one line."""
    parts = []
    if report.params.get(""):
        parts.append(f"params {number(report.params[''], exact_)}")
    parts += [f"TOs {number(report.tos_exact, exact_)}", f"FLOPs {number(report.flops, exact_)}",
              f"BOs {number(sum(report.bos), exact_)}"]
    if report.law is not None:
        parts.append(f"energy {energy(report.joules)}")
    return "   ".join(parts)


def layer_cells(view, row, exact_: bool, law: bool) -> list[str]:
    return [row.label, row.type, row.shape, params_text(row.params, exact_),
            *(number(v, exact_) for v in row.bos), number(row.tos, exact_), share(row.tos, view.tos),
            number(row.flops, exact_), *([energy(row.joules or 0.0)] if law else [])]


LAYER_HEADER = ["Layer", "Type", "Output shape", "Params", *BO_HEADERS, "TOs", "% TOs", "FLOPs"]


def _by_layer(report, depth, exact_: bool, all_rows: bool, max_rows, spell) -> list[str]:
    law = report.law is not None
    view = layer_view(report, depth, max_rows=max_rows, fold=not all_rows)
    header = [*LAYER_HEADER, *(["Energy"] if law else [])]
    body = [layer_cells(view, r, exact_, law) for r in view.rows]
    lines = grid(header, body, right_from=3) if body else ["(no operations recorded)"]
    where = ("every layer" if view.depth is None or view.depth >= view.max_depth
             else f"depth {view.depth} of {view.max_depth}")
    if view.grouped:
        where += ", repeated blocks merged ([i-j]: their indices)"
    hints = [f"layers: {where}"]
    if view.depth is not None and view.depth < view.max_depth:
        hints.append(f"{spell['every']}: every layer")
    hints += [f"{spell['full']}: per phase and dtype", *([] if exact_ else [f"{spell['exact']}: exact counts"])]
    lines.append("; ".join(hints))
    if any(r.shape.endswith(" …") or " +" in r.shape for r in view.rows):
        lines.append("output shape: +k = k more tensors in the output; … = later calls returned other shapes")
    if any(r.kind in ("zero", "other") for r in view.rows):
        lines.append(f"{spell['all_rows']} lists the folded rows")
    return lines


def _full(report, depth, exact_: bool, all_rows: bool, spell) -> list[str]:
    law = report.law is not None
    header = ["Layer", "Type", "Phase", "Dtype", *BO_HEADERS, "TOs", "% TOs", "FLOPs",
              *(["Energy"] if law else [])]
    shown, folded = table_rows(report, depth, all_rows)
    total = report.tos

    def cells(r):
        return [*(number(r[n], exact_) for n in BO_NAMES), number(r["tos"], exact_), share(r["tos"], total),
                number(r["flops"], exact_), *([energy(r["joules"])] if law else [])]

    body = [[r["layer"] if r["layer"] != "" else MODEL_LAYER, r["type"], r["phase"], r["dtype"], *cells(r)]
            for r in shown]
    if folded:
        keys = (*BO_NAMES, "tos", "flops", *(["joules"] if law else []))
        body.append([f"({len(folded)} zero-cost / integer rows folded)", "", "", "",
                     *cells({k: sum(r[k] for r in folded) for k in keys})])
    lines = grid(header, body, right_from=4) if body else ["(no operations recorded)"]
    if folded:
        lines.append(f"{spell['all_rows']} lists the folded rows")
    return lines


def render_table(report, depth=AUTO, *, full: bool = False, exact: bool = False,  # noqa: A002
                 all_rows: bool = False, max_rows: int = MAX_ROWS, spelling: dict | None = None) -> str:
    """The table described in the module docstring. ``depth``: ``"auto"``, an int ≥ 1 or None
    (every layer); in the full layout ``"auto"`` means every layer. ``spelling`` renames the
    options the footer names (keys of :data:`SPELLING`), e.g. to the CLI's flags."""
    spell = {**SPELLING, **(spelling or {})}
    if depth != AUTO and depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)
                                                or depth < 1):
        raise ValueError(f"depth must be 'auto', None (every layer) or a positive integer, got {depth!r}")
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    if full:
        lines = _full(report, None if depth == AUTO else depth, exact, all_rows, spell)
    else:
        lines = _by_layer(report, depth, exact, all_rows, max_rows, spell)
    header, rows = phase_totals(report, exact)
    lines += ["", *grid(header, rows, 1), settings_line(report), totals_line(report, exact)]
    if report.unsupported:
        names = sorted({u.op for u in report.unsupported})
        lines.append(f"unsupported ops (counted as zero): {', '.join(names)}")
    return "\n".join(lines)
