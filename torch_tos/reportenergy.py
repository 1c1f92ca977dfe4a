"""The energy views of a :class:`~torch_tos.report.Report` given a law (a cost model such as
:class:`torch_tos.energy.CostModel`): the prediction of one step, joules per row, phase and step,
and the overhead no layer owns. All are read from ``law.price`` of the report's counts — the
function ``law.predict`` also calls, so the two agree — computed once and cached with the report's
other views.
"""

from __future__ import annotations

import copy

from .counts import fold_layer, key_indices


def check_law(law):
    """``law`` if it has the cost-model interface a Report reads (``price(counts, steps=1)``, as
    :class:`torch_tos.energy.CostModel` has), else a clear error."""
    if not callable(getattr(law, "price", None)):
        raise TypeError(f"law must be a cost model with price(counts) (torch_tos.energy.load_law('law.json') or "
                        f"torch-tos calibrate); {type(law).__name__} has none")
    return law


class EnergyViews:
    """The part of :class:`~torch_tos.report.Report` that reads its ``law``; the report provides
    ``law``, ``_cache``, ``_view``, ``_types`` and ``phases``."""

    def with_law(self, law):
        """This report with a cost model (:class:`torch_tos.energy.CostModel`): rows, the table, the
        DataFrame and the JSON gain a ``joules`` column. The prediction is ``law.price`` of this
        report's counts for one step — the function ``law.predict`` also calls, so the two agree;
        the per-step and per-run joules no layer owns are the table's ``(overhead)`` line."""
        new = copy.copy(self)
        new.law = check_law(law)
        new._cache = {k: v for k, v in self._cache.items()
                      if not (isinstance(k, tuple) and k[0] in ("joules", "rows", "law"))}
        return new

    @property
    def prediction(self):
        """The law's :class:`~torch_tos.energy.Prediction` of one step of these counts (joules and
        seconds with intervals, per layer); ``None`` without a law."""
        if self.law is None:
            return None
        hit = self._cache.get(("law", "prediction"))
        if hit is None:
            hit = self._cache[("law", "prediction")] = self.law.price(self._view, steps=1, types=self._types,
                                                                      report=self)
        return hit

    def _joules_rows(self) -> dict[tuple, float]:
        return {k: j for k, (j, _s) in self.prediction.by_row.items()}

    def _joules(self, *by: str, depth: int | None = None) -> dict[tuple, float]:
        key = ("joules", by, depth)
        hit = self._cache.get(key)
        if hit is None:
            idx = key_indices(by)
            hit = {}
            for k, j in self._joules_rows().items():
                if depth is not None:
                    k = (fold_layer(k[0], depth), *k[1:])
                g = tuple(k[i] for i in idx)
                hit[g] = hit.get(g, 0.0) + j
            self._cache[key] = hit
        return hit

    @property
    def overhead_joules(self) -> float | None:
        """The law's per-step and per-run joules no layer owns (``None`` without a law)."""
        return float(self.prediction.fixed_joules) if self.law is not None else None

    @property
    def joules(self) -> float | None:
        """Predicted joules of the step: every row's joules plus the overhead (``None`` without a
        law)."""
        return float(self.prediction.joules) if self.law is not None else None

    def joules_by_phase(self) -> dict[str, float]:
        """Variable joules per phase (the overhead is not split over phases); empty without a law."""
        if self.law is None:
            return {}
        j = self._joules("phase")
        return {p: j.get((p,), 0.0) for p in self.phases}
