"""``report.plot()``: where the cost goes, as stacked horizontal bars per layer (matplotlib).

One bar per row of :func:`torch_tos.layerview.layer_view` (model order) at ``depth="auto"``: the
deepest depth at which at most ``top`` + 1 bars name real layers (repeated blocks merged into one
bar where that lets a deeper depth fit); a model that does not fit even at depth 1 shows its
``top`` costliest layers and one ``(N other layers)`` bar. Layers that cost nothing are left out.
Panels: TOs stacked by basic-operation kind (add, sub, mul, div, root — each kind's count × its
transistor cost in the dtype it ran in), TOs stacked by phase, and — when the report carries an
energy law (:meth:`Report.with_law`) — variable joules stacked by phase (the law's per-step
overhead is named in the title: no layer owns it).

The kinds and the phases are told apart by two palettes that share no colour; a phase keeps its
colour in both phase panels. Axes are labelled with SI prefixes (``"20T"``) and energies in
J/Wh (:mod:`torch_tos.units`); every panel has its legend.

matplotlib is imported only here, when a figure is drawn (extra ``plot``); the figure is a
:class:`matplotlib.figure.Figure` built without pyplot, so no GUI backend or global state is used.
"""

from __future__ import annotations

from .bos import BO_NAMES
from .counts import N_BOS, phase_sort_key
from .layerview import AUTO, layer_view
from .units import JOULES_PER_WH, energy, si

_MISSING = "report.plot() needs matplotlib: pip install matplotlib (or pip install 'torch-tos[plot]')"

#: Colours of the BO kinds (matplotlib's tab10, first five).
KIND_COLOURS = dict(zip(BO_NAMES, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")))
#: Colours of the phases (tab10's last five: none shared with the kinds).
PHASE_COLOURS = {"forward": "#17becf", "loss": "#bcbd22", "backward": "#8c564b", "optimizer": "#e377c2"}
_SPARE_PHASE_COLOUR = "#7f7f7f"


def _matplotlib():
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter
    except ImportError as e:
        raise ImportError(_MISSING) from e
    return Figure, FuncFormatter


def plot_data(report, top: int = 15, depth=AUTO) -> dict:
    """The numbers :func:`plot_report` draws: ``layers`` (labels, model order, a folded bar
    last), ``kinds`` ({BO kind: TOs per layer}), ``phases`` ({phase: TOs per layer}), with a law
    ``joules`` ({phase: joules per layer}), ``depth`` (the depth the bars are folded at, None:
    every layer), ``max_depth`` and ``grouped`` (repeated blocks merged); every list is aligned
    with ``layers``."""
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    view = layer_view(report, depth, max_rows=top + 1, zero="drop")
    rows = view.rows
    if depth != AUTO:  # an explicit depth: every layer at it, the costliest ``top`` of them
        from .layerview import keep_costliest

        rows = keep_costliest(rows, top + 1)
    d = view.depth
    table = report.transistor_table
    by_kind: dict[str, list[float]] = {}
    for (layer, dtype), row in report._group("layer", "dtype", depth=d).items():
        costs = table.costs(dtype)
        acc = by_kind.setdefault(layer, [0.0] * N_BOS)
        for i in range(N_BOS):
            acc[i] += float(row[i] * costs[i])
    phases = sorted({p for (_, p) in report._group("layer", "phase", depth=d)}, key=phase_sort_key)
    priced = report._priced("layer", "phase", depth=d)
    joules = report._joules("layer", "phase", depth=d) if report.law is not None else None

    def column(get):
        return [sum(get(layer) for layer in r.layers) for r in rows]

    out = {"layers": [r.label for r in rows], "depth": d, "max_depth": view.max_depth, "grouped": view.grouped,
           "kinds": {k: column(lambda layer, i=i: by_kind.get(layer, [0.0] * N_BOS)[i])
                     for i, k in enumerate(BO_NAMES)},
           "phases": {p: column(lambda layer, p=p: float(priced.get((layer, p), 0))) for p in phases}}
    if joules is not None:
        out["joules"] = {p: column(lambda layer, p=p: joules.get((layer, p), 0.0)) for p in phases}
    return out


def _joules_axis(values_max: float):
    """Tick text and axis label for joules: J (SI prefixes) below 1 Wh, else Wh."""
    if values_max < JOULES_PER_WH:
        return (lambda v, _pos: si(v, "J")), "energy per step (J)"
    return (lambda v, _pos: si(v / JOULES_PER_WH, "Wh")), "energy per step (Wh)"


def plot_report(report, *, top: int = 15, depth=AUTO, path=None, figsize=None):
    """Draw the panels described in the module docstring; returns the matplotlib ``Figure`` and,
    with ``path``, also saves it there, atomically (format from the suffix: ``.png``, ``.svg``,
    ``.pdf``; a file object as ``savefig`` takes it). ``depth``: ``"auto"``, an int (fold at that
    depth, the ``top`` costliest layers) or None (every layer, the ``top`` costliest)."""
    Figure, FuncFormatter = _matplotlib()
    data = plot_data(report, top=top, depth=depth)
    panels = [("TOs by operation kind", data["kinds"], KIND_COLOURS, "TOs (transistor operations)"),
              ("TOs by phase", data["phases"], PHASE_COLOURS, "TOs (transistor operations)")]
    if "joules" in data:
        panels.append((f"energy by phase (+ {energy(report.overhead_joules)} overhead per step)",
                       data["joules"], PHASE_COLOURS, None))
    n = len(data["layers"])
    fig = Figure(figsize=figsize or (5 * len(panels), 1.4 + 0.32 * max(n, 1)), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    ys = list(range(n))
    for ax, (title, series, colours, xlabel) in zip(axes, panels):
        left = [0.0] * n
        for name, values in series.items():
            if any(values):
                ax.barh(ys, values, left=left, label=name, color=colours.get(name, _SPARE_PHASE_COLOUR))
                left = [a + b for a, b in zip(left, values)]
        if xlabel is None:
            fmt, xlabel = _joules_axis(max(left, default=0.0))
        else:
            fmt = lambda v, _pos: si(v)  # noqa: E731 - a tick formatter
        ax.xaxis.set_major_formatter(FuncFormatter(fmt))
        ax.set_xlabel(xlabel, fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.5 / max(n, 4) - 0.08), ncol=5,
                  frameon=False)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, data["layers"], fontsize=8)
    axes[0].invert_yaxis()  # model order from the top
    meta = report.metadata
    d, dmax = data["depth"], data["max_depth"]
    folded = "every layer" if d is None or d >= dmax else f"layers at depth {d} of {dmax}"
    if data["grouped"]:
        folded += ", repeated blocks merged"
    fig.suptitle(f"{meta.get('model', 'model')} — {meta.get('mode', '')}: {si(report.tos)} TOs, "
                 f"{si(report.flops)} FLOPs ({folded})", fontsize=11)
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
