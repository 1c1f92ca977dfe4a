"""``report.to_html()``: one self-contained HTML page — totals, the per-layer table and the
figure of :mod:`torch_tos.plotting` embedded as a base64 PNG (no external files, scripts or
styles). Without matplotlib the page says the figure was left out instead of failing."""

from __future__ import annotations

import base64
from html import escape

from .bos import BO_NAMES
from .counts import MODEL_LAYER
from .display import human, table_rows

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
          "table{border-collapse:collapse;font-size:13px}th,td{padding:2px 8px;border-bottom:1px solid #ddd}"
          "td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}"
          "img{max-width:100%}")


def _table(header, rows, numeric_from: int) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{escape(str(c))}</td>' if i >= numeric_from else f"<td>{escape(str(c))}</td>"
        for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def report_html(report, *, depth: int | None = None, all_rows: bool = False, figure: bool = True,
                top: int = 15, title: str | None = None) -> str:
    """The page as a string (write it to a ``.html`` file). ``depth`` and ``all_rows`` as for
    :meth:`Report.table`; ``top`` as for :meth:`Report.plot`; ``figure=False`` leaves it out."""
    meta = report.metadata
    law = report.law is not None
    title = title or f"torch_tos report: {meta.get('model', 'model')} ({meta.get('mode', '')})"
    extra = ["Joules"] if law else []
    phase_rows = []
    joules = report.joules_by_phase()
    for phase, t in report.by_phase().items():
        phase_rows.append([phase, *(human(v) for v in t.bos), human(t.tos), human(t.flops),
                           *([human(joules[phase])] if law else [])])
    if law:
        phase_rows.append(["(overhead)", *([""] * 7), human(report.overhead_joules)])
    phase_rows.append(["total", *(human(v) for v in report.bos), human(report.tos), human(report.flops),
                       *([human(report.joules)] if law else [])])
    totals = _table(["Phase", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs", *extra], phase_rows, 1)
    shown, folded = table_rows(report, depth, all_rows)
    rows = [[r["layer"] or MODEL_LAYER, r["type"], r["phase"], r["dtype"], *(human(r[n]) for n in BO_NAMES),
             human(r["tos"]), human(r["flops"]), *([human(r["joules"])] if law else [])] for r in shown]
    layers = _table(["Layer", "Type", "Phase", "Dtype", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs",
                     *extra], rows, 4)
    note = (f"<p>{len(folded)} zero-cost / integer bookkeeping rows folded "
            f"(<code>report.to_html(all_rows=True)</code> lists them).</p>") if folded else ""
    fig = ""
    if figure:
        try:
            from .plotting import figure_png

            png = base64.b64encode(figure_png(report, top=top, depth=depth)).decode("ascii")
            fig = f'<h2>Where the cost goes</h2><img alt="per-layer cost" src="data:image/png;base64,{png}">'
        except ImportError:
            fig = "<p>(figure left out: matplotlib is not installed)</p>"
    info = ", ".join(f"{k}: {escape(str(meta[k]))}" for k in ("mode", "model", "device", "loss", "optimizer",
                                                                "dtype_override", "torch") if meta.get(k))
    unsupported = ""
    if report.unsupported:
        names = ", ".join(sorted({u.op for u in report.unsupported}))
        unsupported = f"<p><b>Unsupported ops (counted as zero):</b> {escape(names)}</p>"
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1><p>{info}</p>"
            f"<p>TOs = {report.tos:,.1f} &nbsp; FLOPs = {report.flops:,} &nbsp; BOs = {sum(report.bos):,}"
            f"{f' &nbsp; joules = {report.joules:,.6g}' if law else ''}</p>{unsupported}"
            f"<h2>Totals</h2>{totals}{fig}<h2>Layers</h2>{layers}{note}</body></html>\n")
