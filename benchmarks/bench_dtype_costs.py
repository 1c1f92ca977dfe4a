"""Measured joules per transistor operation of each dtype, read off a calibrated cost model, beside
the transistor table's TOs per operation — how far the table's dtype ratios are from the hardware's.

    python benchmarks/bench_dtype_costs.py --law law.json

For each calibrated dtype: the largest matrix multiply measured in every dtype (``aten.mm``, the
same shape; its TOs are its multiplications and additions priced with the transistor table) and
the largest elementwise addition of at most 2²⁰ elements measured in every dtype (``aten.add``,
the same elements: larger outputs cross allocator thresholds at different sizes per dtype),
joules per call over TOs per call, and per element of work the ratio to float32.
"""

from __future__ import annotations

import argparse

from torch_tos.energy import load_law
from torch_tos.tables import DEFAULT_TABLE, parse_dtype


def _common(points, op, dtypes, key, at_most=float("inf")):
    """For each dtype, the point of ``op`` at the largest ``key`` (elements of work, at most
    ``at_most``) every dtype has."""
    by = {dt: {key(p): p for p in points if p["op"] == op and p["dtype"] == dt} for dt in dtypes}
    shared = {k for k in set.intersection(*(set(v) for v in by.values())) if k <= at_most} if by else set()
    if not shared:
        return {dt: None for dt in dtypes}
    k = max(shared)
    return {dt: by[dt][k] for dt in dtypes}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--law", required=True)
    args = ap.parse_args(argv)
    law = load_law(args.law)
    prof = law.profile
    rows = []
    size = {dt: parse_dtype("float32" if dt == "tf32" else dt).itemsize for dt in prof.dtypes}
    mms = _common(prof.points, "aten.mm", prof.dtypes, lambda p: p["flops"])
    adds = _common([p for p in prof.points if p["dtype"] in size], "aten.add", prof.dtypes,
                   lambda p: p["bytes_out"] / size[p["dtype"]], at_most=2 ** 20)
    for dt in prof.dtypes:
        table_dt = parse_dtype("float32" if dt == "tf32" else dt)
        add, _sub, mul, _div, _root = (float(c) for c in DEFAULT_TABLE.costs(table_dt))
        mm, ew = mms[dt], adds[dt]
        mm_j = mm["joules"] / (mm["flops"] / 2 * (mul + add)) if mm else float("nan")
        ew_j = ew["joules"] / (ew["bytes_out"] / size[dt] * add) if ew else float("nan")
        rows.append((dt, mul, add, mm_j, ew_j, mm, ew))
    base = next((r for r in rows if r[0] == "float32"), rows[0])
    print(f"cost model of {prof.device.get('name')} ({law.meta.get('meter')}, {law.meta.get('threads')} thread(s))")
    print(f"{'dtype':9} {'TOs/mul':>10} {'TOs/add':>8} {'mul/f32':>8} {'J/TO mm':>10} {'mm/f32':>7} "
          f"{'J/TO add':>10} {'add/f32':>8}")
    for dt, mul, add, mm_j, ew_j, mm, ew in rows:
        print(f"{dt:9} {mul:10.1f} {add:8.0f} {mul / base[1]:8.2f} {mm_j:10.3g} {mm_j / base[3] * mul / base[1]:7.2f} "
              f"{ew_j:10.3g} {ew_j / base[4] * add / base[2]:8.2f}")
    print("mm/f32 and add/f32: measured joules per call of the same op over float32's, per element of work "
          "(what the table's mul/f32 would have to be)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
