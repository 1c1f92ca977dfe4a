"""How a :class:`~torch_tos.report.Report` leaves Python: the text table ``print(report)`` shows
(:mod:`torch_tos.display`), the pandas DataFrame, the JSON, the matplotlib figure
(:mod:`torch_tos.plotting`) and the self-contained HTML page (:mod:`torch_tos.html`). Each reads
the report's views (:meth:`~torch_tos.report.Report.rows`, :meth:`~torch_tos.report.Report.by_phase`,
the totals), never the counts table directly.
"""

from __future__ import annotations

import json

from .bos import BO_NAMES

#: Columns of :meth:`Report.rows` / :meth:`Report.to_dataframe`.
COLUMNS = ["layer", "type", "phase", "dtype", *BO_NAMES, "tos", "flops"]


class Exports:
    """The exports of :class:`~torch_tos.report.Report` (it provides the views they read)."""

    def to_dataframe(self, depth: int | None = None):
        """pandas DataFrame, one row per layer × phase × dtype: ``layer, type, phase, dtype, add,
        sub, mul, div, root, tos, flops`` (``depth`` folds deeper submodules into their ancestor)."""
        import pandas as pd

        return pd.DataFrame(self.rows(depth), columns=COLUMNS + (["joules"] if self.law is not None else []))

    def table(self, depth="auto", *, full: bool = False, exact: bool = False, all_rows: bool = False,
              max_rows: int = 30) -> str:
        """The text table ``print(report)`` shows (:mod:`torch_tos.display`): one row per layer
        with type, output shape, parameters, BOs, TOs, share of the TOs and FLOPs, then the totals
        per phase. ``depth``: ``"auto"`` (the depth that fits ``max_rows``, repeated blocks
        merged), an int (torchinfo's ``depth``) or None (every layer); ``full=True``: one row per
        layer, phase and dtype; ``exact=True``: exact counts; ``all_rows=True``: nothing folded."""
        from .display import render_table

        return render_table(self, depth, full=full, exact=exact, all_rows=all_rows, max_rows=max_rows)

    def to_dict(self) -> dict:
        phases = {p: {"bos": t.bos.to_dict(), "tos": t.tos, "flops": t.flops}
                  for p, t in self.by_phase().items()}
        total = {"bos": self.bos.to_dict(), "tos": self.tos, "flops": self.flops}
        if self.law is not None:
            for p, j in self.joules_by_phase().items():
                phases[p]["joules"] = j
            total.update(joules=self.joules, overhead_joules=self.overhead_joules)
        return {
            "total": total,
            "phases": phases,
            "rows": self.rows(),
            "unsupported": [u.__dict__ for u in self.unsupported],
            "metadata": self.metadata,
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, default=str)

    # -- pictures ---------------------------------------------------------------------------
    def plot(self, path=None, **kwargs):
        """Where the cost goes (matplotlib): ``report.plot("r18.png")`` saves the figure there, as
        ``Figure.savefig`` would, and returns it; see :func:`torch_tos.plotting.plot_report`."""
        from .plotting import plot_report

        return plot_report(self, path=path, **kwargs)

    def to_html(self, *args, **kwargs) -> str:
        """One self-contained HTML page: totals, the table, the figure; see
        :func:`torch_tos.html.report_html`."""
        from .html import report_html

        return report_html(self, *args, **kwargs)
