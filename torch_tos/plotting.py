"""``report.plot()``: where the cost goes, as stacked horizontal bars per layer (matplotlib).

Panels, one bar per layer (model order, the ``top`` costliest layers; the rest folded into one
``(N other layers)`` bar; layers that cost nothing are left out): TOs stacked by basic-operation kind (add, sub, mul, div, root — each
kind's count × its transistor cost in the dtype it ran in), TOs stacked by phase, and — when the
report carries an energy law (:meth:`Report.with_law`) — variable joules stacked by phase (the
law's per-step overhead is named in the title: no layer owns it).

matplotlib is imported only here, when a figure is drawn (extra ``plot``); the figure is a
:class:`matplotlib.figure.Figure` built without pyplot, so no GUI backend or global state is used.
"""

from __future__ import annotations

from .bos import BO_NAMES
from .counts import MODEL_LAYER, N_BOS, phase_sort_key

_MISSING = "report.plot() needs matplotlib: pip install matplotlib (or pip install 'torch-tos[plot]')"


def _matplotlib():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(_MISSING) from e
    return Figure


def plot_data(report, top: int = 15, depth: int | None = None) -> dict:
    """The numbers :func:`plot_report` draws: ``layers`` (labels, model order, the folded bar
    last), ``kinds`` ({BO kind: TOs per layer}), ``phases`` ({phase: TOs per layer}) and, with a
    law, ``joules`` ({phase: joules per layer}); every list is aligned with ``layers``."""
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    table = report.transistor_table
    by_kind: dict[str, list[float]] = {}
    for (layer, dtype), row in report._group("layer", "dtype", depth=depth).items():
        costs = table.costs(dtype)
        acc = by_kind.setdefault(layer, [0.0] * N_BOS)
        for i in range(N_BOS):
            acc[i] += float(row[i] * costs[i])
    phases = sorted({p for (_, p) in report._group("layer", "phase", depth=depth)}, key=phase_sort_key)
    priced = report._priced("layer", "phase", depth=depth)
    joules = report._joules("layer", "phase", depth=depth) if report.law is not None else None
    total = {layer: sum(v) for layer, v in by_kind.items()}
    sort = report._layer_sort
    ranked = sorted((layer for layer in total if total[layer] > 0), key=lambda layer: -total[layer])
    keep, rest = set(ranked[:top]), ranked[top:]
    layers = sorted(keep, key=sort)
    groups = [[layer] for layer in layers] + ([rest] if rest else [])
    labels = [MODEL_LAYER if layer == "" else layer for layer in layers]
    if rest:
        labels.append(f"({len(rest)} other layers)")

    def column(get):
        return [sum(get(layer) for layer in group) for group in groups]

    out = {"layers": labels,
           "kinds": {k: column(lambda layer, i=i: by_kind[layer][i]) for i, k in enumerate(BO_NAMES)},
           "phases": {p: column(lambda layer, p=p: float(priced.get((layer, p), 0))) for p in phases}}
    if joules is not None:
        out["joules"] = {p: column(lambda layer, p=p: joules.get((layer, p), 0.0)) for p in phases}
    return out


def plot_report(report, *, top: int = 15, depth: int | None = None, path=None, figsize=None):
    """Draw the panels described in the module docstring; returns the matplotlib ``Figure`` and,
    with ``path``, also saves it there, atomically (format from the suffix: ``.png``, ``.svg``,
    ``.pdf``; a file object as ``savefig`` takes it)."""
    Figure = _matplotlib()
    data = plot_data(report, top=top, depth=depth)
    panels = [("TOs by operation kind", data["kinds"]), ("TOs by phase", data["phases"])]
    if "joules" in data:
        overhead = report.overhead_joules
        panels.append((f"joules by phase (+ {overhead:.3g} J overhead per step)", data["joules"]))
    n = len(data["layers"])
    fig = Figure(figsize=figsize or (5 * len(panels), 1.2 + 0.32 * max(n, 1)), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    ys = list(range(n))
    for ax, (title, series) in zip(axes, panels):
        left = [0.0] * n
        for name, values in series.items():
            if any(values):
                ax.barh(ys, values, left=left, label=name)
                left = [a + b for a, b in zip(left, values)]
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.04 - 0.5 / max(n, 4)),
                  ncol=5, frameon=False)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, data["layers"], fontsize=8)
    axes[0].invert_yaxis()  # model order from the top
    meta = report.metadata
    fig.suptitle(f"{meta.get('model', 'model')} — {meta.get('mode', '')}: {report.tos:.3g} TOs", fontsize=11)
    if path is not None:
        from .fileio import save_figure

        save_figure(fig, path, dpi=120)
    return fig


def figure_png(report, **kwargs) -> bytes:
    """The figure as PNG bytes (for :func:`torch_tos.html.report_html`)."""
    import io

    buf = io.BytesIO()
    plot_report(report, **kwargs).savefig(buf, format="png", dpi=100)
    return buf.getvalue()

