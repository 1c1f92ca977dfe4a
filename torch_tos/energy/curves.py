"""Where a call lies on the measured costs of its class: interpolation over measured calls.

A :class:`Curve` holds the measured calls of one subset of points (one class, dtype and kernel;
:meth:`~.machine.MachineProfile.price` picks the subset) as their axes (:func:`~.opclasses.axes_of`:
work such as FLOPs and bytes, and shape axes such as output positions per image) and their costs
(seconds and joules, the dispatch floor and the output's allocation already subtracted), and gives
the cost of a call at any axes, in log space:

* **one work axis**: log cost piecewise-linear in log work between measured calls; below the
  smallest measured call the cost is that call's (a latency floor); above the largest it grows
  linearly with the work (the largest call's rate);
* **several work axes** (FLOPs and bytes): roofline-bounded as NeuSight does — the peak FLOP rate and
  the peak byte rate are read off the points (the fastest measured of each, so the ridge point is
  the measured one), each point's cost is divided by its roofline time ``max(flops/peak,
  bytes/peak)``, that ratio is interpolated linearly over a Delaunay triangulation of the points
  (nearest point outside them) and multiplied back by the call's own roofline time; the result is
  kept between the costs of measured calls that do no more (below) and no less (above) work on
  every axis;
* **shape axes** (a convolution's positions per image, a normalisation's statistics and
  positions): a shape changes which kernel loop runs — a 1×1 convolution over 2×2 maps is a GEMM
  per image four columns wide, far slower per FLOP than the same FLOPs over 32×32 maps. A call
  whose principal work (the class's first axis: FLOPs, or bytes for a normalisation) lies within
  the work measured for its shape is priced along the calls **of that shape only**: log cost
  piecewise-linear in log work, as for one axis. A shape between measured shapes takes the log
  cost interpolated linearly between its neighbouring shapes' curves (over a Delaunay
  triangulation of the measured shapes when more than one shape axis varies; the nearest
  measured shape outside them), when the call lies within the work measured for each of them.
  Any other call is priced by the interpolation over all the points above. Within one shape the
  points themselves say how the cost grows; their byte rates are not peak rates (a shape's calls
  may all be compute-bound), so no roofline is read off one shape.

Every cost is at least the cheapest measured call's. Nothing here is a constant of one machine:
rates, ridge points, cache cliffs and shape effects are whatever the points say.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Curve"]


class Curve:
    """Cost per call over a set of measured calls, for both quantities (module doc). ``axes``:
    ``(n, ndim)`` axes of the calls; ``costs``: ``(n, 2)`` seconds and joules; ``work``: per axis,
    whether it is work (in the roofline time) or locates the call's shape."""

    def __init__(self, axes: np.ndarray, costs: np.ndarray, work: tuple[bool, ...]):
        self.ndim = axes.shape[1]
        self.axes = axes
        self.costs = costs
        self.work = np.array(work, dtype=bool)
        self.low = costs.min(axis=0)
        self.interp = None
        self.shapes = None
        if self.ndim == 0:
            return
        if (~self.work).any() and self.work.any():
            self._split_by_shape()
        if self.ndim == 1:
            x, y = np.log(axes[:, 0]), np.log(costs)
            ux = np.unique(x)
            self.x = ux
            self.y = np.stack([np.median(y[x == v], axis=0) for v in ux])
        else:
            w = axes[:, self.work]
            self.peak = (w[:, None, :] / costs[:, :, None]).max(axis=0)  # (quantity, work axis)
            ratio = np.stack([np.log(costs[:, q] / self._roof(axes, q)) for q in range(2)], axis=1)
            unique, inverse = np.unique(np.log(axes), axis=0, return_inverse=True)  # one value per position
            self.grid = unique
            self.ratio = np.stack([np.median(ratio[inverse.ravel() == k], axis=0) for k in range(len(unique))])
            self._build()

    # -- shapes ---------------------------------------------------------------------------------
    def _split_by_shape(self) -> None:
        """One curve per measured shape over the principal work axis (built when first asked),
        the span of its measured work and an interpolator over the shapes, when the points have
        more than one shape."""
        logs = np.log(self.axes[:, ~self.work])
        live = np.ptp(logs, axis=0) > 0
        if not live.any():
            return
        unique, inverse = np.unique(logs, axis=0, return_inverse=True)
        self.shapes = unique
        self.shape_live = live
        self.members = [np.flatnonzero(inverse.ravel() == s) for s in range(len(unique))]
        self.principal = int(np.flatnonzero(self.work)[0])
        work = np.log(self.axes[:, self.principal])
        self.spans = [(work[m].min(), work[m].max()) for m in self.members]
        self.sub: list = [None] * len(unique)
        self.tri = None
        if live.sum() >= 2 and len(unique) > live.sum():
            from scipy.spatial import Delaunay, QhullError

            try:
                self.tri = Delaunay(unique[:, live])
            except (QhullError, ValueError):  # degenerate shapes: nearest only
                self.tri = None

    def _shape_curve(self, s: int) -> "Curve":
        c = self.sub[s]
        if c is None:
            m = self.members[s]
            c = self.sub[s] = Curve(self.axes[m][:, [self.principal]], self.costs[m], (True,))
        return c

    def _shape_weights(self, q: np.ndarray) -> list[tuple[int, float]]:
        """``[(shape index, weight), …]`` of the measured shapes whose curves make a call of log
        shape ``q`` (module doc)."""
        pts = self.shapes[:, self.shape_live]
        q = q[self.shape_live]
        if pts.shape[1] == 1:
            x, v = pts[:, 0], q[0]
            below, above = np.flatnonzero(x <= v), np.flatnonzero(x >= v)
            if len(below) and len(above):
                lo, hi = below[np.argmax(x[below])], above[np.argmin(x[above])]
                if lo == hi or x[hi] == x[lo]:
                    return [(int(lo), 1.0)]
                t = (v - x[lo]) / (x[hi] - x[lo])
                return [(int(lo), 1.0 - t), (int(hi), t)]
        elif self.tri is not None:
            k = int(self.tri.find_simplex(q[None, :])[0])
            if k >= 0:
                T = self.tri.transform[k]
                b = T[:-1] @ (q - T[-1])
                weights = np.append(b, 1.0 - b.sum())
                return [(int(s), float(w)) for s, w in zip(self.tri.simplices[k], weights)]
        return [(int(np.argmin(((pts - q) ** 2).sum(axis=1))), 1.0)]

    def _by_shape(self, axes: np.ndarray, out: np.ndarray) -> None:
        """Replaces in ``out`` the cost of every call whose principal work lies within the
        measured work of each shape it is interpolated from (module doc)."""
        work, logs = axes[:, [self.principal]], np.log(axes[:, ~self.work])
        logw = np.log(work[:, 0])
        cache: dict = {}
        for i in range(len(axes)):
            weights = [(s, w) for s, w in self._shape_weights(logs[i]) if w != 0.0]
            if not all(self.spans[s][0] <= logw[i] <= self.spans[s][1] for s, _ in weights):
                continue
            total = np.zeros(2)
            for s, w in weights:
                if s not in cache:
                    cache[s] = np.log(self._shape_curve(s)(work))
                total += w * cache[s][i]
            out[i] = np.exp(total)

    # -- work -----------------------------------------------------------------------------------
    def _roof(self, axes: np.ndarray, q: int) -> np.ndarray:
        return (axes[:, self.work] / self.peak[q]).max(axis=1)

    def _build(self):
        from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
        from scipy.spatial import QhullError

        self.nearest = NearestNDInterpolator(self.grid, self.ratio)
        span = np.ptp(self.grid, axis=0) > 0
        self.live = span  # axes along which the points vary (a flat axis cannot be triangulated)
        try:
            if span.sum() >= 2 and len(self.grid) > span.sum():
                self.interp = LinearNDInterpolator(self.grid[:, span], self.ratio)
            elif span.sum() == 1:
                self.interp = _Line(self.grid[:, span][:, 0], self.ratio)
        except (QhullError, ValueError):  # degenerate points: nearest only
            self.interp = None

    def __call__(self, axes: np.ndarray) -> np.ndarray:
        """Costs ``(n, 2)`` of calls at ``axes`` ``(n, ndim)``."""
        n = len(axes)
        if self.ndim == 0:
            return np.tile(np.median(self.costs, axis=0), (n, 1))
        logs = np.log(axes)
        if self.ndim == 1:
            x = logs[:, 0]
            out = np.empty((n, 2))
            for q in range(2):
                y = np.interp(x, self.x, self.y[:, q])
                above = x > self.x[-1]
                y[above] = self.y[-1, q] + (x[above] - self.x[-1])
                out[:, q] = np.exp(y)
            return out
        ratio = np.full((n, 2), np.nan)
        if self.interp is not None:
            ratio = np.asarray(self.interp(logs[:, self.live]), dtype=float).reshape(n, 2)
        missing = ~np.isfinite(ratio).all(axis=1)
        if missing.any():
            ratio[missing] = self.nearest(logs[missing])
        out = np.stack([self._roof(axes, q) * np.exp(ratio[:, q]) for q in range(2)], axis=1)
        shape = ~self.work
        for i in range(n):  # bounded by measured calls of this shape doing no more / no less work
            same = (self.axes[:, shape] == axes[i, shape]).all(axis=1)
            below = same & (self.axes[:, self.work] <= axes[i, self.work]).all(axis=1)
            above = same & (self.axes[:, self.work] >= axes[i, self.work]).all(axis=1)
            lo = self.costs[below].max(axis=0) if below.any() else self.low
            hi = self.costs[above].min(axis=0) if above.any() else np.full(2, np.inf)
            out[i] = np.where(lo <= hi, np.clip(out[i], lo, hi), out[i])
        if self.shapes is not None:
            self._by_shape(axes, out)
        return np.maximum(out, self.low)


class _Line:
    """Piecewise-linear interpolation along one axis (NaN outside), the 1-D case of
    ``LinearNDInterpolator``."""

    def __init__(self, x: np.ndarray, values: np.ndarray):
        order = np.argsort(x)
        self.x, self.values = x[order], values[order]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float).reshape(-1)
        out = np.stack([np.interp(x, self.x, self.values[:, q]) for q in range(self.values.shape[1])], axis=1)
        out[(x < self.x[0]) | (x > self.x[-1])] = np.nan
        return out
