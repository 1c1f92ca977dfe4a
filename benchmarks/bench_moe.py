"""A Mixtral-8×22B-shaped model (141 B parameters) counted on meta: seconds and peak memory, beside
FlopCounterMode on the same meta step — same run.

The model is built from a transformers config on the meta device (no weights: nothing to load)
with transformers' default experts path (``grouped_mm``). Each variant runs in a fresh child
process (``--variant``), so the peaks do not mix; the child reports its build time, the counting
time and its peak RSS (``VmHWM``, the whole process: Python, torch, transformers, the model's meta
objects):

- ``torch_tos``: ``torch_tos.profile(model, inputs, mode=...)`` — BOs, TOs, FLOPs per layer;
- ``flopcounter``: the same step under ``FlopCounterMode`` alone (PyTorch's formulas), run inside
  torch_tos's kernel choices — without them PyTorch's meta ``_grouped_mm`` refuses the model's
  dtype unless it is bf16 — so the anchor's FLOPs are beside ours (FlopCounterMode has no formula
  for ``_grouped_mm``: its figure leaves the experts out).

    python benchmarks/bench_moe.py                        # 56 layers, bf16, batch 1 x 4096 tokens
    python benchmarks/bench_moe.py --mode training --dtype float32
    python benchmarks/bench_moe.py --quick                # 2 layers: seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import torch

#: mistralai/Mixtral-8x22B-v0.1's config.json (the shape; nothing is downloaded)
MIXTRAL_8X22B = dict(hidden_size=6144, intermediate_size=16384, num_hidden_layers=56,
                     num_attention_heads=48, num_key_value_heads=8, num_local_experts=8,
                     num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=65536,
                     rope_theta=1e6, rms_norm_eps=1e-5)


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(variant: str, mode: str, layers: int, seq: int, dtype: str) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    import torch_tos
    from torch_tos.integrations.transformers import build_from_config, hf_loss
    from torch_tos.kernels import kernel_choices

    t0 = time.perf_counter()
    model, make_inputs = build_from_config("mixtral", {**MIXTRAL_8X22B, "num_hidden_layers": layers},
                                           "meta", dtype=getattr(torch, dtype))
    built = time.perf_counter() - t0
    training = mode == "training"
    inputs = make_inputs(batch_size=1, seq_len=seq, labels=training)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the approximate-on-meta note of _grouped_mm's offsets
        if variant == "torch_tos":
            report = torch_tos.profile(model, inputs, mode=mode, loss_fn=hf_loss if training else None)
            figures = {"tos": report.tos, "flops": report.flops, "unsupported": len(report.unsupported)}
        else:
            with kernel_choices(), FlopCounterMode(display=False) as fc:
                if training:
                    model(**inputs).loss.backward()
                else:
                    with torch.no_grad():
                        model(**inputs)
            figures = {"flops": fc.get_total_flops()}
    return {"variant": variant, "params": sum(p.numel() for p in model.parameters()),
            "experts": model.config._experts_implementation, "build_s": built,
            "count_s": time.perf_counter() - t0, "peak_mb": _peak_mb(), **figures}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("inference", "training"), default="inference")
    ap.add_argument("--layers", type=int, default=MIXTRAL_8X22B["num_hidden_layers"])
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--dtype", choices=("bfloat16", "float16", "float32"), default="bfloat16")
    ap.add_argument("--quick", action="store_true", help="2 layers")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    layers = 2 if args.quick else args.layers
    if args.variant:
        print(json.dumps(child(args.variant, args.mode, layers, args.seq_len, args.dtype)))
        return 0
    rows = {}
    for variant in ("torch_tos", "flopcounter"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--mode", args.mode,
                              "--layers", str(layers), "--seq-len", str(args.seq_len), "--dtype", args.dtype],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"bench_moe: the {variant} run failed:\n{out.stderr[-2000:]}")
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    ours = rows["torch_tos"]
    print(f"Mixtral-8x22B shape, {layers} layers: {ours['params'] / 1e9:.1f} B parameters on meta, "
          f"{args.dtype}, experts={ours['experts']}, {args.mode}, batch 1 x {args.seq_len} tokens, "
          f"torch {torch.__version__}")
    print(f"{'variant':12s} {'build s':>8s} {'count s':>8s} {'peak RSS MB':>12s} {'FLOPs':>11s} {'TOs':>11s}")
    for variant, r in rows.items():
        tos = f"{r['tos']:11.4g}" if "tos" in r else f"{'-':>11s}"
        print(f"{variant:12s} {r['build_s']:8.2f} {r['count_s']:8.2f} {r['peak_mb']:12,.0f} "
              f"{r['flops']:11.4g} {tos}")
    print(f"count time ratio torch_tos / FlopCounterMode: "
          f"{ours['count_s'] / rows['flopcounter']['count_s']:.2f}; unsupported ops: {ours['unsupported']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
