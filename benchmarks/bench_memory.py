"""Peak memory of profile() on a real model in memory vs a plain step and FlopCounterMode — same run.

A Llama model built from a transformers config on the CPU (default: TinyLlama's shape, 1.1 B
parameters, 4.4 GB of fp32 weights), weights written (resident). Each variant runs in a fresh
child process (``--variant``) so peaks do not mix: the child builds the model, resets the kernel's
peak-RSS mark (``/proc/self/clear_refs``), runs the step once, and reports ``VmHWM − RSS before``:

- ``plain``: the step itself (inference: ``no_grad`` forward; training: forward with labels and
  backward) — its increase is the step's activations (training: plus the gradients);
- ``flopcounter``: the same inside ``FlopCounterMode``;
- ``torch_tos``: ``torch_tos.profile(model, inputs, mode=...)``.

The goal (issue 11): torch_tos's increase ≤ plain's + 5 % of the weights' bytes.

    python benchmarks/bench_memory.py                       # 1.1 B, inference, batch 1 x 128 tokens
    python benchmarks/bench_memory.py --mode training --layers 4
    python benchmarks/bench_memory.py --quick               # 2 layers: seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

TINYLLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000, use_cache=False)


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(variant: str, mode: str, layers: int, seq: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    import torch_tos
    from torch_tos.integrations.transformers import build_from_config, hf_loss

    torch.manual_seed(0)
    model, make_inputs = build_from_config("llama", {**TINYLLAMA, "num_hidden_layers": layers}, "meta")
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)  # written: resident, like a loaded checkpoint
        for b in model.buffers():
            b.fill_(1.0)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    inputs = make_inputs(batch_size=1, seq_len=seq, labels=mode == "training", device="cpu")
    assert all(t.device.type == "cpu" for t in (*inputs.values(), *model.parameters(), *model.buffers()))

    def plain():
        if mode == "inference":
            with torch.no_grad():
                model(**inputs)
        else:
            model(**inputs).loss.backward()

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    before = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    if variant == "plain":
        plain()
    elif variant == "flopcounter":
        with FlopCounterMode(display=False):
            plain()
    else:
        torch_tos.profile(model, inputs, mode=mode, loss_fn=hf_loss if mode == "training" else None)
    seconds = time.perf_counter() - t0
    peak = _rss_kb("VmHWM")
    return {"variant": variant, "weights_mb": weights / 2**20, "params": sum(p.numel() for p in model.parameters()),
            "increase_mb": (peak - before) / 1024, "seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("inference", "training"), default="inference")
    ap.add_argument("--layers", type=int, default=TINYLLAMA["num_hidden_layers"])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="2 layers")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    layers = 2 if args.quick else args.layers
    if args.variant:
        print(json.dumps(child(args.variant, args.mode, layers, args.seq_len)))
        return 0
    rows = {}
    for variant in ("plain", "flopcounter", "torch_tos"):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--mode", args.mode,
                              "--layers", str(layers), "--seq-len", str(args.seq_len)],
                             capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"bench_memory: the {variant} run failed:\n{out.stderr[-2000:]}")
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    w = rows["plain"]["weights_mb"]
    print(f"Llama {rows['plain']['params'] / 1e9:.2f} B parameters ({w:,.0f} MB fp32), {args.mode}, "
          f"batch 1 x {args.seq_len} tokens, torch {torch.__version__}")
    print(f"{'variant':12s} {'peak increase MB':>17s} {'% of weights':>13s} {'seconds':>8s}")
    for variant, r in rows.items():
        print(f"{variant:12s} {r['increase_mb']:17,.0f} {100 * r['increase_mb'] / w:12.2f}% {r['seconds']:8.2f}")
    budget = rows["plain"]["increase_mb"] + 0.05 * w
    verdict = "within" if rows["torch_tos"]["increase_mb"] <= budget else "OVER"
    print(f"torch_tos {verdict} the budget: plain + 5 % of weights = {budget:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
