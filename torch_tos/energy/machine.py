"""The machine profile: what one call of each op class costs on this device, read off measured curves.

A :class:`MachineProfile` holds the calls the microbenchmarks timed (:mod:`.microbench`): for each
dtype and op class, points ``(op, attrs, flops, bytes read, bytes written) → (seconds, joules)``
per call, the dispatch floor (the cost of a call that does nothing) and the allocation curve (what
a fresh output buffer of n bytes costs beyond writing it: allocating, faulting its pages in,
freeing — small buffers are recycled, large ones may be fresh pages every call).
:meth:`~MachineProfile.price` gives the seconds and joules one call of a counted work bin adds to
an empty call, as its **kernel** cost plus the **allocation** of its output (for an op that is not
in place — its name does not end in ``_``); a measured call's kernel cost is its cost less the
floor and its output's allocation, so the two parts are read off separately:

1. **which points**: those of the call's class and dtype (integer and bool calls — bookkeeping such
   as batch norm's step counter — use their own dtype's points where measured, else those of the
   profile's first dtype; a floating dtype the profile has not measured is a
   :class:`DtypeNotMeasured` error naming the ``--dtypes`` to add); of the call's own op when that
   op (or its in-place twin: ``add_`` runs ``add``'s kernel) has at least :data:`MIN_POINTS`
   points; for convolutions, of the nearest measured kernel (same kind and backend where measured,
   then nearest taps and stride, :mod:`torch_tos.opattrs`); for recurrent layers and
   normalisations, of the same training or inference kind (:data:`FLAG_AT`);
2. **where on the curve** (:class:`~.curves.Curve`): the class's axes
   (:func:`~.opclasses.axes_of`) in log space — work axes interpolated along the measured calls
   (roofline-bounded over FLOPs and bytes, as NeuSight does), shape axes (positions, statistics)
   by a curve per measured shape, interpolated between neighbouring shapes.

Nothing in this module is a constant of one machine: rates, ridge points, cache cliffs and
launch overheads are whatever the points say.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .curves import Curve
from .opclasses import AXES, CLASSES, PRICED_AS, SHAPE_AXES, axes_of, op_class

#: Fewest points an op (or a convolution kind) needs for its own curve.
MIN_POINTS = 3
#: A call's cost after the dispatch floor is subtracted is at least this share of its raw cost.
MIN_SHARE = 0.02
#: Classes whose attributes name kernels (kind, taps, stride) rather than work.
KERNEL_ATTRS = frozenset({"conv", "conv_backward", "dwconv", "dwconv_backward"})
#: The GEMM-like classes whose float32 calls run in TF32 when a profile has measured ``tf32`` and
#: the caller asks for it.
TF32_CLASSES = frozenset({"matmul", "bmm", "attention", "conv", "conv_backward", "dwconv", "dwconv_backward"})
#: Classes whose attributes say whether a call trains (recurrent layers keep a workspace, batch
#: norm computes the batch's statistics): the position of that flag in their attributes.
FLAG_AT = {"rnn": 1, "norm": 2}
#: Classes whose calls cost a dispatch and nothing more (no kernel): priced 0 beyond the floor.
DISPATCH_ONLY = frozenset({"views"})
POINT_FIELDS = ("class", "op", "dtype", "attrs", "flops", "bytes_in", "bytes_out", "seconds", "joules")
QUANTITIES = ("seconds", "joules")


class DtypeNotMeasured(ValueError):
    """A step computes in a dtype the machine profile has not measured."""


class MachineProfile:
    """Measured per-call costs of one device (module doc).

    ``points``: a list of dicts with :data:`POINT_FIELDS`; ``floor``: ``{"seconds": s, "joules": J}``
    of an empty call; ``device``: ``{"type", "name", "index", "threads", "meter"}``;
    ``fingerprint``: the machine that measured it (:func:`~.fingerprint.fingerprint`; a cost model
    keeps it in its ``fingerprints``, not in the profile's data)."""

    def __init__(self, points, floor: dict, alloc=(), device: dict | None = None, dtypes=None,
                 fingerprint: dict | None = None):
        self.fingerprint = dict(fingerprint) if fingerprint else None
        self.points = [dict(p) for p in points]
        self.floor = {q: float(floor[q]) for q in QUANTITIES}
        self.alloc = sorted([float(b), float(s), float(j)] for b, s, j in alloc)
        self._alloc = np.array(self.alloc, dtype=float).reshape(len(self.alloc), 3)
        self.device = dict(device or {})
        self._index: dict = defaultdict(list)
        for i, p in enumerate(self.points):
            self._index[(p["dtype"], p["class"])].append(i)
        measured = tuple(dict.fromkeys(p["dtype"] for p in self.points if not p["dtype"].startswith(("int", "uint",
                                                                                                     "bool"))))
        #: the calibrated dtypes (a cast inside a float32 workload measures a few float16 calls: not calibrated)
        self.dtypes = tuple(dtypes) if dtypes is not None else measured
        self._curves: dict = {}
        self._subsets: dict = {}

    # -- which points ---------------------------------------------------------------------------
    def _dtype(self, dtype: str, cls: str, tf32: bool) -> str:
        """The dtype whose points price a ``cls`` call computing in ``dtype`` (module doc, step 1)."""
        if tf32 and dtype == "float32" and cls in TF32_CLASSES and "tf32" in self.dtypes:
            return "tf32"
        integer = dtype.startswith(("int", "uint", "bool"))
        if not integer and dtype not in self.dtypes:
            raise DtypeNotMeasured(
                f"the step computes in {dtype}, which this law has not measured (it has "
                f"{', '.join(self.dtypes) or 'no dtypes'}); calibrate with --dtypes {','.join((*self.dtypes, dtype))}")
        if (dtype, cls) in self._index:
            return dtype
        fallback = self.dtypes[0] if self.dtypes else dtype
        if (fallback, cls) in self._index:  # integer bookkeeping; a class one dtype cannot run (FFTs in bfloat16)
            return fallback
        raise ValueError(f"the machine profile has no measured {cls!r} calls in {dtype} or {fallback}; calibrate "
                         "again")

    def _subset(self, dtype: str, cls: str, op: str, attrs, flag=None) -> tuple:
        key = (dtype, cls, op, attrs, flag)
        hit = self._subsets.get(key)
        if hit is None:
            hit = self._subsets[key] = self._select(dtype, cls, op, attrs, flag)
        return hit

    def _select(self, dtype: str, cls: str, op: str, attrs, flag) -> tuple:
        idx = self._index[(dtype, cls)]
        twins = {op, op[:-1] if op.endswith("_") else op + "_"}  # add_ runs add's kernel in place
        own = [i for i in idx if self.points[i]["op"] == op] or [i for i in idx if self.points[i]["op"] in twins]
        if len({self._axes_key(i, cls) for i in own}) >= MIN_POINTS:
            idx = own
        if cls in KERNEL_ATTRS and attrs:
            idx = _nearest_kernel(idx, self.points, attrs)
        elif cls in FLAG_AT and flag is not None:  # training or inference kernels
            at = FLAG_AT[cls]
            same = [i for i in idx if (self.points[i].get("attrs") or [None] * (at + 1))[at:at + 1] == [flag]]
            if len(same) >= MIN_POINTS:
                idx = same
        return tuple(idx)

    def _axes_key(self, i, cls):
        p = self.points[i]
        return axes_of(cls, _bin(p))

    def allocation(self, nbytes) -> np.ndarray:
        """Seconds and joules (``(n, 2)``) of fresh output buffers of ``nbytes`` (an array): the
        allocation curve interpolated in log bytes and log cost, 0 below its smallest size, growing
        linearly with the bytes above its largest."""
        b = np.asarray(nbytes, dtype=float).reshape(-1)
        out = np.zeros((len(b), 2))
        if not len(self._alloc):
            return out
        sizes = np.log(self._alloc[:, 0])
        lb = np.log(np.maximum(b, 1.0))
        inside = b >= self._alloc[0, 0]
        above = b > self._alloc[-1, 0]
        for q in range(2):
            logs = np.log(np.maximum(self._alloc[:, q + 1], 1e-15))
            out[inside, q] = np.exp(np.interp(lb[inside], sizes, logs))
            out[above, q] = self._alloc[-1, q + 1] * b[above] / self._alloc[-1, 0]
        return out

    def _curve(self, subset: tuple, cls: str) -> Curve:
        hit = self._curves.get((subset, cls))
        if hit is None:
            axes = np.array([axes_of(cls, _bin(self.points[i])) for i in subset], dtype=float).reshape(
                len(subset), len(AXES.get(PRICED_AS.get(cls, cls), ("bytes",))))
            raw = np.array([[self.points[i][q] for q in QUANTITIES] for i in subset], dtype=float)
            floor = np.array([self.floor[q] for q in QUANTITIES])
            fresh = np.array([0.0 if in_place(self.points[i]["op"]) else self.points[i]["bytes_out"] for i in subset])
            costs = np.maximum(raw - floor - self.allocation(fresh), MIN_SHARE * raw)
            names = AXES.get(PRICED_AS.get(cls, cls), ("bytes",))
            hit = self._curves[(subset, cls)] = Curve(axes, np.maximum(costs, 1e-15),
                                                       tuple(n not in SHAPE_AXES for n in names))
        return hit

    # -- pricing --------------------------------------------------------------------------------
    def price(self, op: str, dtype: str, bins: dict, *, tf32: bool = False) -> tuple[float, float, list]:
        """``(seconds, joules, notes)`` that the calls of one counts row add to empty calls: ``bins``
        is the row's work histogram ``{(flops, bytes_in, bytes_out, attrs): calls}``; ``notes`` name
        bins beyond the measured work (priced by extrapolation)."""
        secs = joules = 0.0
        notes = []
        groups: dict = defaultdict(list)
        for b, calls in bins.items():
            cls = op_class(op, b[3])
            at = FLAG_AT.get(cls)
            kernel = tuple(b[3][:4]) if cls in KERNEL_ATTRS and b[3] else None              # kind, taps, stride, backend
            flag = b[3][at] if at is not None and b[3] and len(b[3]) > at else None       # training or inference
            groups[(cls, kernel, flag)].append((b, calls))
        for (cls, attrs, flag), items in groups.items():
            if cls in DISPATCH_ONLY:  # views and metadata: an empty call, the floor itself
                continue
            measured = PRICED_AS.get(cls, cls)
            dt = self._dtype(dtype, measured, tf32)
            subset = self._subset(dt, measured, op.split(" (", 1)[0], attrs, flag)
            curve = self._curve(subset, cls if measured == cls else measured)
            axes = np.array([axes_of(cls, b) for b, _ in items], dtype=float).reshape(len(items), curve.ndim)
            costs = curve(axes)
            if allocates(op, cls):
                costs = costs + self.allocation([float(b[2]) for b, _ in items])
            calls = np.array([c for _, c in items], dtype=float)
            secs += float(calls @ costs[:, 0])
            joules += float(calls @ costs[:, 1])
            if curve.ndim and (axes[:, curve.work] > curve.axes[:, curve.work].max(axis=0) * 2).any():
                notes.append(f"{op} ({cls}, {dt}): calls with more work than the largest measured one; priced "
                             "by extrapolation at the largest measured rate")
        return secs, joules, notes

    # -- summaries ------------------------------------------------------------------------------
    def classes(self, dtype: str) -> list[str]:
        return [c for c in CLASSES if (dtype, c) in self._index]

    def rates(self, dtype: str) -> dict[str, dict[str, float]]:
        """Per class of ``dtype``: the peak measured FLOP/s (GEMM-like classes) or B/s and the
        fastest call's seconds — a summary read off the points, for printing."""
        out = {}
        for cls in self.classes(dtype):
            pts = [self.points[i] for i in self._index[(dtype, cls)]]
            secs = [max(p["seconds"] - self.floor["seconds"], MIN_SHARE * p["seconds"]) for p in pts]
            key = "flops" if AXES.get(cls, ("bytes",))[:1] == ("flops",) else None
            work = [p["flops"] if key else p["bytes_in"] + p["bytes_out"] for p in pts]
            out[cls] = {"peak": max(w / s for w, s in zip(work, secs)), "unit": "FLOP/s" if key else "B/s",
                        "fastest": min(p["seconds"] for p in pts), "points": len(pts)}
        return out

    def to_dict(self) -> dict:
        return {"device": self.device, "dtypes": list(self.dtypes), "floor": dict(self.floor),
                "alloc": [list(r) for r in self.alloc], "fields": list(POINT_FIELDS),
                "points": [[p[f] for f in POINT_FIELDS] for p in self.points]}

    @classmethod
    def from_dict(cls, data: dict) -> "MachineProfile":
        fields = data["fields"]
        return cls([dict(zip(fields, row)) for row in data["points"]], data["floor"], data.get("alloc", ()),
                   data.get("device"), data.get("dtypes"))


def allocates(op: str, cls: str) -> bool:
    """Whether a call of ``op`` in cost class ``cls`` writes a new output buffer: not a view or
    metadata call (:data:`DISPATCH_ONLY`) and not in place (:func:`in_place`). The allocation curve
    prices that buffer in :meth:`MachineProfile.price`; the step-level law's fresh bytes
    (:func:`.pricing.fresh_bytes`) count it."""
    return cls not in DISPATCH_ONLY and not in_place(op)


def in_place(op: str) -> bool:
    """Whether ``op`` (``"aten.add_"``) writes into an argument (aten's trailing ``_``): its output
    is no fresh buffer."""
    return op.split(" (", 1)[0].endswith("_")


def _bin(p: dict) -> tuple:
    attrs = p.get("attrs")
    return (p["flops"], p["bytes_in"], p["bytes_out"], tuple(attrs) if attrs is not None else None)


def _nearest_kernel(idx: list, points: list, attrs) -> list:
    """The points of the measured convolution kernel nearest to ``attrs`` = (kind, taps, stride,
    backend): the same kind and backend when measured, then the nearest taps and stride in log2
    (module doc)."""
    kind, taps, stride = attrs[0], float(attrs[1]), float(attrs[2])
    backend = attrs[3] if len(attrs) > 3 else None
    groups: dict = defaultdict(list)
    for i in idx:
        a = points[i].get("attrs")
        if a:
            groups[tuple(a[:4])].append(i)
    if not groups:
        return idx
    same = {k: v for k, v in groups.items() if k[0] == kind} or groups
    if backend is not None:
        same = {k: v for k, v in same.items() if len(k) > 3 and k[3] == backend} or same
    ranked = sorted(same, key=lambda k: (abs(math.log2(max(k[1], 1)) - math.log2(max(taps, 1)))
                                         + abs(math.log2(max(k[2], 1)) - math.log2(max(stride, 1))), -len(same[k])))
    best = same[ranked[0]]
    if len(best) >= MIN_POINTS:
        return best
    return [i for k in same for i in same[k]]


__all__ = ["MachineProfile", "DtypeNotMeasured", "MIN_POINTS", "POINT_FIELDS", "KERNEL_ATTRS"]
