"""The text table of a :class:`~torch_tos.report.Report` (torchinfo-style aligned columns)."""

from __future__ import annotations

from .bos import BO_NAMES


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


def render_table(report, depth=None) -> str:
    header = ["Layer", "Type", "Phase", "Dtype", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs"]
    body = []
    for r in report.rows(depth):
        layer = r["layer"] if r["layer"] != "" else "(model)"
        body.append([layer, r["type"], r["phase"], r["dtype"], *(human(r[n]) for n in BO_NAMES),
                     human(r["tos"]), human(r["flops"])])
    lines = _grid(header, body, right_from=4) if body else ["(no operations recorded)"]
    phase_rows = []
    for phase, t in report.by_phase().items():
        phase_rows.append([phase, *(human(v) for v in t.bos), human(t.tos), human(t.flops)])
    b = report.bos
    phase_rows.append(["total", *(human(v) for v in b), human(report.tos), human(report.flops)])
    lines += [""] + _grid(["Totals", *(n.capitalize() for n in BO_NAMES), "TOs", "FLOPs"], phase_rows, 1)
    meta = report.metadata
    info = [f"mode: {meta.get('mode', '?')}"]
    if meta.get("dtype_override"):
        info.append(f"priced as {meta['dtype_override']}")
    if meta.get("loss"):
        info.append(f"loss: {meta['loss']}")
    if meta.get("device"):
        info.append(f"device: {meta['device']}")
    lines.append("  ".join(info))
    lines.append(f"TOs = {report.tos:,.1f}   FLOPs = {report.flops:,}   BOs = {sum(b):,}")
    if report.unsupported:
        names = sorted({u.op for u in report.unsupported})
        lines.append(f"unsupported ops (counted as zero): {', '.join(names)}")
    return "\n".join(lines)
