"""Reading a report vs counting it — same run.

Counting: ``torch_tos.profile(model, x, mode="training", device="meta")`` of a 32-layer,
4096-wide ``nn.TransformerEncoder`` (32 heads, batch 1) at sequence 2048. Reading: on a *fresh*
report (nothing cached yet), ``str(report)`` + ``report.to_dataframe()`` + ``report.to_json()`` +
``report.tos``, after pandas has been imported. The figure that matters is the ratio
reading / counting (goal ≤ 0.20), measured alternately in one process, median of ``--repeats``.

    python benchmarks/bench_report.py            # the 32×4096 encoder, seq 2048
    python benchmarks/bench_report.py --quick    # 2×256, seq 64, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import pandas  # noqa: F401 - imported before timing: the import is not the report's cost
import torch
import torch.nn as nn

import torch_tos


def build(quick: bool):
    width, heads, depth, seq = (256, 4, 2, 64) if quick else (4096, 32, 32, 2048)
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(width, heads, batch_first=True)
        model = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        x = torch.empty(1, seq, width)
    return f"TransformerEncoder {depth}×{width} seq {seq}", model, x


def count(model, x):
    t0 = time.perf_counter()
    report = torch_tos.profile(model, x, mode="training", device="meta")
    return time.perf_counter() - t0, report


def read(report) -> tuple[float, dict]:
    parts = {}
    t0 = time.perf_counter()
    for name, fn in (("str", str), ("to_dataframe", lambda r: r.to_dataframe()),
                     ("to_json", lambda r: r.to_json()), ("tos", lambda r: r.tos)):
        t = time.perf_counter()
        fn(report)
        parts[name] = time.perf_counter() - t
    return time.perf_counter() - t0, parts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    name, model, x = build(args.quick)
    read(count(model, x)[1])  # warm up both paths once
    counts, reads, parts = [], [], []
    for _ in range(args.repeats):
        dt, report = count(model, x)
        counts.append(dt)
        dt, p = read(report)
        reads.append(dt)
        parts.append(p)
    c, r = statistics.median(counts), statistics.median(reads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {name}, training, meta; "
          f"{len(report.counts)} count rows")
    print(f"{'counting s':>11s} {'reading s':>10s} {'ratio':>6s}   " +
          "  ".join(f"{k} s" for k in parts[0]))
    print(f"{c:11.3f} {r:10.3f} {r / c:6.2f}   " +
          "  ".join(f"{statistics.median(p[k] for p in parts):.3f}" for k in parts[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
