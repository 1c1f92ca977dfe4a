"""The text table of a :class:`~torch_tos.report.Report` (torchinfo-style aligned columns).

Rows are listed in model order (each layer's phases together), then the pseudo-layers ``(loss)``,
``(optimizer)``. By default two kinds of rows are folded into one summary line, so the table of a
real model stays readable: rows that cost nothing (views, casts, a ``Flatten``) and integer
bookkeeping rows (a batch norm's ``num_batches_tracked += 1``, index arithmetic). Their counts stay
in every total; ``report.table(all_rows=True)`` lists them.
"""

from __future__ import annotations

from .bos import BO_NAMES
from .counts import MODEL_LAYER, phase_sort_key
from .tables import INT_FORMATS, dtype_name

_INT_NAMES = frozenset(dtype_name(d) for d in INT_FORMATS)


def human(x: float) -> str:
    """3 significant digits with an SI suffix: 2.25M, 1.01G, 950."""
    x = float(x)
    for div, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.4g}" if x != int(x) else f"{int(x)}"


def _grid(header, rows, right_from: int) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(r):
        cells = [str(c).rjust(w) if i >= right_from else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    return [rule, fmt(header), rule, *(fmt(r) for r in rows), rule]


def is_folded(row: dict) -> bool:
    """A zero-cost row or an integer bookkeeping row (folded by default)."""
    return (row["tos"] == 0 and row["flops"] == 0) or row["dtype"] in _INT_NAMES


def table_rows(report, depth=None, all_rows: bool = False) -> tuple[list[dict], list[dict]]:
    """``(shown, folded)`` rows of the table, shown in model order."""
    sort = report._layer_sort
    rows = sorted(report.rows(depth), key=lambda r: (sort(r["layer"]), phase_sort_key(r["phase"])))
    if all_rows:
        return rows, []
    return [r for r in rows if not is_folded(r)], [r for r in rows if is_folded(r)]


def render_table(report, depth=None, all_rows: bool = False) -> str:
    law = report.law is not None
    extra = ["Joules"] if law else []
    header = ["Layer", "Type", "Phase", "Dtype", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs",
              *extra]
    shown, folded = table_rows(report, depth, all_rows)

    def cells(r):
        return [*(human(r[n]) for n in BO_NAMES), human(r["tos"]), human(r["flops"]),
                *([human(r["joules"])] if law else [])]

    body = [[r["layer"] if r["layer"] != "" else MODEL_LAYER, r["type"], r["phase"], r["dtype"], *cells(r)]
            for r in shown]
    if folded:
        total = {k: sum(r[k] for r in folded) for k in (*BO_NAMES, "tos", "flops", *(["joules"] if law else []))}
        body.append([f"({len(folded)} zero-cost / integer rows folded)", "", "", "", *cells(total)])
    lines = _grid(header, body, right_from=4) if body else ["(no operations recorded)"]
    if folded:
        lines.append("table(all_rows=True) lists the folded rows")
    joules = report.joules_by_phase() if law else {}
    phase_rows = []
    for phase, t in report.by_phase().items():
        phase_rows.append([phase, *(human(v) for v in t.bos), human(t.tos), human(t.flops),
                           *([human(joules[phase])] if law else [])])
    b = report.bos
    if law:
        phase_rows.append(["(overhead)", *([""] * 7), human(report.overhead_joules)])
    phase_rows.append(["total", *(human(v) for v in b), human(report.tos), human(report.flops),
                       *([human(report.joules)] if law else [])])
    lines += [""] + _grid(["Totals", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs", *extra],
                          phase_rows, 1)
    meta = report.metadata
    info = [f"mode: {meta.get('mode', '?')}"]
    if meta.get("dtype_override"):
        info.append(f"priced as {meta['dtype_override']}")
    if meta.get("loss"):
        info.append(f"loss: {meta['loss']}")
    if meta.get("device"):
        info.append(f"device: {meta['device']}")
    lines.append("  ".join(info))
    summary = f"TOs = {report.tos:,.1f}   FLOPs = {report.flops:,}   BOs = {sum(b):,}"
    if law:
        summary += f"   joules = {report.joules:,.6g}"
    lines.append(summary)
    if report.unsupported:
        names = sorted({u.op for u in report.unsupported})
        lines.append(f"unsupported ops (counted as zero): {', '.join(names)}")
    return "\n".join(lines)
