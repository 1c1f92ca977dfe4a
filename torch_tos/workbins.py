"""Work histograms of counts rows: ``{(flops, bytes_in, bytes_out, attrs): calls}``, bounded.

A counts row (:class:`torch_tos.counts.Counts`) keeps the distinct per-call work of its calls (a
row that sums calls of several shapes — the two matmuls of a linear layer's backward — keeps each
shape's work); past :data:`WORK_BINS` distinct bins the two nearest of equal attributes merge into their
call-weighted mean (:func:`cap_bins`), an exact :class:`~fractions.Fraction`, so a histogram's
totals — calls, Σ calls·flops, Σ calls·bytes — never change.
"""

from __future__ import annotations

import math
from fractions import Fraction

#: Most distinct per-call work bins a row keeps (past it, the nearest bins merge; totals stay exact).
WORK_BINS = 32
#: The fields of a work bin's key, in order.
WORK_FIELDS: tuple[str, ...] = ("flops", "bytes_in", "bytes_out", "attrs")


def _per_call(total, calls: int):
    """``total / calls`` exactly (``total`` an int or a Fraction): an int when it divides, else a
    Fraction."""
    q = Fraction(total) / calls
    return q.numerator if q.denominator == 1 else q


def _merge_hist(work: dict, key, hist: dict, n: int) -> None:
    """Add ``n`` × the histogram ``hist`` into ``work[key]`` (a new copy when absent), capped."""
    if not hist:
        return
    dst = work.get(key)
    if dst is None:
        work[key] = dst = {}
    for b, c in hist.items():
        dst[b] = dst.get(b, 0) + c * n
    if len(dst) > WORK_BINS:
        cap_bins(dst)


def _bin_logs(b) -> tuple[float, float, float]:
    return (math.log1p(b[0]), math.log1p(b[1]), math.log1p(b[2]))


def cap_bins(hist: dict, cap: int = WORK_BINS) -> dict:
    """Merge bins of ``hist`` (in place) until at most ``cap`` remain: each time the two bins
    nearest in log work (L1 over log(1 + flops), log(1 + bytes in), log(1 + bytes out)) among those
    of equal ``attrs`` (any two when all differ), into their call-weighted mean — exact, so the
    histogram's totals do not change. Returns ``hist``."""
    while len(hist) > cap:
        items = list(hist.items())
        logs = [_bin_logs(b) for b, _ in items]
        best = None
        for same_attrs in (True, False):
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    if same_attrs and items[i][0][3] != items[j][0][3]:
                        continue
                    d = sum(abs(x - y) for x, y in zip(logs[i], logs[j]))
                    if best is None or d < best[0]:
                        best = (d, i, j)
            if best is not None:
                break
        _, i, j = best
        (bi, ci), (bj, cj) = items[i], items[j]
        calls = ci + cj
        merged = tuple(_per_call(bi[k] * ci + bj[k] * cj, calls) for k in range(3))
        attrs = bi[3] if ci >= cj else bj[3]
        del hist[bi], hist[bj]
        key = (*merged, attrs)
        hist[key] = hist.get(key, 0) + calls
    return hist


__all__ = ["WORK_BINS", "WORK_FIELDS", "cap_bins"]
