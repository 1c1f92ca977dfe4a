"""``report.to_html()``: one self-contained HTML page — the run's settings and totals, the totals
per phase, the figure of :mod:`torch_tos.plotting` embedded as a base64 PNG, the per-layer table
of ``print(report)`` (:mod:`torch_tos.layerview`: output shapes, parameters, share of the TOs)
and, folded away, the full table (one row per layer, phase and dtype).

Every table sorts by a click on a column header (a few lines of inline JavaScript; numbers sort
by value, the Layer column by model order; a second click reverses). No external file, script,
style or font is referenced, so the page opens offline and can be mailed as it is. Without
matplotlib the page says the figure was left out instead of failing.
"""

from __future__ import annotations

import base64
from html import escape

from .bos import BO_NAMES
from .counts import MODEL_LAYER
from .display import (BO_HEADERS, LAYER_HEADER, number, params_text, phase_totals, settings_line, share,
                      table_rows, totals_line)
from .layerview import AUTO, MAX_ROWS, layer_view
from .units import energy

_STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
          "table{border-collapse:collapse;font-size:13px;margin-bottom:.5em}"
          "th,td{padding:2px 8px;border-bottom:1px solid #ddd}"
          "td.n{text-align:right;font-variant-numeric:tabular-nums}"
          "th{background:#f4f4f4;white-space:nowrap}table.sortable th{cursor:pointer;user-select:none}"
          "th[data-dir=asc]::after{content:' \\25B2'}th[data-dir=desc]::after{content:' \\25BC'}"
          "tr.fold td{color:#777;font-style:italic}img{max-width:100%}summary{cursor:pointer}")

#: Click a header to sort by it; numbers by their ``data-v`` value, text alphabetically.
_SORT_JS = """
document.querySelectorAll("table.sortable th").forEach(function (th) {
  th.addEventListener("click", function () {
    var table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    var dir = th.dataset.dir === "asc" ? "desc" : "asc";
    table.querySelectorAll("th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = dir;
    function key(row) {
      var c = row.cells[col];
      return c.dataset.v !== undefined ? parseFloat(c.dataset.v) : c.textContent;
    }
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      var o = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
      return dir === "asc" ? o : -o;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _cell(text, value=None, numeric: bool = False) -> str:
    v = "" if value is None else f' data-v="{float(value)!r}"'
    cls = ' class="n"' if numeric else ""
    return f"<td{cls}{v}>{escape(str(text))}</td>"


def _table(header, rows, *, sortable: bool = True) -> str:
    """``rows``: lists of ``(text, sort value or None, numeric)`` cells, or ``("fold", cells)``."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cls = ""
        if row and row[0] == "fold":
            cls, row = ' class="fold"', row[1]
        body.append(f"<tr{cls}>" + "".join(_cell(*c) for c in row) + "</tr>")
    attr = ' class="sortable"' if sortable else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _layers(report, depth, all_rows: bool, exact: bool, max_rows: int) -> tuple[str, str]:
    law = report.law is not None
    view = layer_view(report, depth, max_rows=max_rows, fold=not all_rows)
    rows = []
    for i, r in enumerate(view.rows):
        cells = [(r.label, i, False), (r.type, None, False), (r.shape, None, False),
                 (params_text(r.params, exact), r.params or 0, True),
                 *((number(v, exact), v, True) for v in r.bos), (number(r.tos, exact), r.tos, True),
                 (share(r.tos, view.tos), view.share(r), True), (number(r.flops, exact), r.flops, True)]
        if law:
            cells.append((energy(r.joules or 0.0), r.joules or 0.0, True))
        rows.append(("fold", cells) if r.kind in ("zero", "other") else cells)
    where = ("every layer" if view.depth is None or view.depth >= view.max_depth
             else f"layers at depth {view.depth} of {view.max_depth}")
    if view.grouped:
        where += "; repeated blocks merged into one row ([i-j]: their indices)"
    note = f"<p>{escape(where)}. Click a column header to sort; Layer sorts by model order.</p>"
    return _table([*LAYER_HEADER, *(["Energy"] if law else [])], rows), note


def _full(report, exact: bool) -> str:
    law = report.law is not None
    shown, _ = table_rows(report, None, all_rows=True)
    total = report.tos
    rows = []
    for i, r in enumerate(shown):
        rows.append([(r["layer"] or MODEL_LAYER, i, False), (r["type"], None, False), (r["phase"], None, False),
                     (r["dtype"], None, False), *((number(r[n], exact), r[n], True) for n in BO_NAMES),
                     (number(r["tos"], exact), r["tos"], True),
                     (share(r["tos"], total), r["tos"] / total if total else 0.0, True),
                     (number(r["flops"], exact), r["flops"], True),
                     *([(energy(r["joules"]), r["joules"], True)] if law else [])])
    header = ["Layer", "Type", "Phase", "Dtype", *BO_HEADERS, "TOs", "% TOs", "FLOPs", *(["Energy"] if law else [])]
    return _table(header, rows)


def report_html(report, *, depth=AUTO, all_rows: bool = False, figure: bool = True, top: int = 15,
                title: str | None = None, exact: bool = False, max_rows: int = MAX_ROWS,
                full: bool = True) -> str:
    """The page as a string (write it to a ``.html`` file). ``depth``, ``all_rows``, ``exact``
    and ``max_rows`` as for :meth:`Report.table`; ``top`` as for :meth:`Report.plot`;
    ``figure=False`` leaves the figure out, ``full=False`` the full table."""
    meta = report.metadata
    title = title or f"torch_tos report: {meta.get('model', 'model')} ({meta.get('mode', '')})"
    header, phase_rows = phase_totals(report, exact)
    totals = _table(header, [[(c, None, i > 0) for i, c in enumerate(r)] for r in phase_rows], sortable=False)
    layers, note = _layers(report, depth, all_rows, exact, max_rows)
    fig = ""
    if figure:
        try:
            from .plotting import figure_png

            png = base64.b64encode(figure_png(report, top=top, depth=depth)).decode("ascii")
            fig = f'<h2>Where the cost goes</h2><img alt="per-layer cost" src="data:image/png;base64,{png}">'
        except ImportError:
            fig = "<p>(figure left out: matplotlib is not installed)</p>"
    unsupported = ""
    if report.unsupported:
        names = ", ".join(sorted({u.op for u in report.unsupported}))
        unsupported = f"<p><b>Unsupported ops (counted as zero):</b> {escape(names)}</p>"
    details = (f"<details><summary>Every layer, phase and dtype ({len(report.rows())} rows)</summary>"
               f"{_full(report, exact)}</details>") if full else ""
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>{escape(settings_line(report))}</p><p><b>{escape(totals_line(report, exact))}</b></p>"
            f"{unsupported}<h2>Totals per phase</h2>{totals}{fig}<h2>Layers</h2>{note}{layers}{details}"
            f"<script>{_SORT_JS}</script></body></html>\n")
