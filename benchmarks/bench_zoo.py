"""The torchvision classification zoo: counting time and counts, torch_tos vs FlopCounterMode, and —
where installed — fvcore, thop and ptflops on the same models and inputs, in one run.

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (default
constructor, batch 2 at its default weights' crop size, as tests/test_zoo.py):

* **training step on meta** — ``torch_tos.profile(mode="training", CrossEntropyLoss, Adam,
  device="meta")`` vs ``FlopCounterMode`` alone over the same forward + loss + backward + Adam step
  on the same meta model (with the kernel choices and ``custom_mapping`` torch_tos uses, so the
  FLOPs must agree); the two are timed alternately, ``--repeat`` times, median kept.
* **forward only** (what the other counters measure): torch_tos ``mode="inference"`` on meta,
  thop and ptflops (both backends) on the meta model, fvcore on a real CPU model (it traces with
  torch.jit, which cannot run meta tensors) — counts and time.

Units: torch_tos ``flops`` and FlopCounterMode count FLOPs (a multiply-add = 2 FLOPs); thop,
ptflops and fvcore count MACs (fvcore calls them "flops"; one multiply-add = 1). The tables show
the others ×2 next to ours.

    python benchmarks/bench_zoo.py                      # whole zoo (~45 min on a busy 2-core VM, fvcore included)
    python benchmarks/bench_zoo.py --no-fvcore          # meta only (fvcore took 815 s of that)
    python benchmarks/bench_zoo.py --models resnet18 vit_b_16 --repeat 3
    python benchmarks/bench_zoo.py --out benchmarks/zoo_results.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import get_model, get_model_weights

import torch_tos
from torch_tos.copying import working_copy
from torch_tos.flops import CUSTOM_MAPPING
from torch_tos.kernels import kernel_choices

BATCH = 2


def input_size(name: str) -> int:
    if name.startswith("vit_"):
        return 224  # the ViTs' default constructors fix image_size=224
    try:
        return int(get_model_weights(name).DEFAULT.transforms().crop_size[0])
    except Exception:
        return 224


def build(name: str, device: str = "meta") -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if device == "meta":
            try:
                with torch.device("meta"):
                    return get_model(name)
            except (NotImplementedError, RuntimeError):  # regnet computes widths with real tensors
                return working_copy(get_model(name), "meta")
        return get_model(name)


class LogitsCE(nn.Module):
    """CrossEntropyLoss on the logits (googlenet/inception_v3 return namedtuples in training)."""

    def __init__(self):
        super().__init__()
        self.ce = nn.CrossEntropyLoss()

    def forward(self, output, target):
        return self.ce(getattr(output, "logits", output), target)


def logits(output):
    return getattr(output, "logits", output)


# -- the timed sides ------------------------------------------------------------------------------

def ours_training(model, x, y):
    t0 = time.perf_counter()
    r = torch_tos.profile(model, x, mode="training", loss_fn=LogitsCE(), target=y,
                          optimizer=torch.optim.Adam(model.parameters()), device="meta")
    return time.perf_counter() - t0, r


def flop_counter_training(model, x, y):
    opt = torch.optim.Adam(model.parameters())
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.enter_context(kernel_choices())
        with FlopCounterMode(display=False, custom_mapping=CUSTOM_MAPPING) as fc:
            LogitsCE()(model(x), y).backward()
            opt.step()
    dt = time.perf_counter() - t0
    for p in model.parameters():
        p.grad = None
    opt.state.clear()
    return dt, fc.get_total_flops()


def ours_forward(model, x):
    t0 = time.perf_counter()
    r = torch_tos.profile(model.eval(), x, mode="inference", device="meta")
    model.train()
    return time.perf_counter() - t0, r


def thop_forward(model, x):
    import thop

    m = build_like(model)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = thop.profile(m, inputs=(x,), verbose=False)
    return time.perf_counter() - t0, int(macs)


def ptflops_forward(model, x, backend):
    from ptflops import get_model_complexity_info

    m = build_like(model)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        macs, _ = get_model_complexity_info(m, tuple(x.shape[1:]), input_constructor=lambda _: {"x": x},
                                            as_strings=False, print_per_layer_stat=False,
                                            verbose=False, backend=backend)
    return time.perf_counter() - t0, int(macs)


def fvcore_forward(name, size):
    from fvcore.nn import FlopCountAnalysis

    torch.manual_seed(0)
    m = build(name, "cpu").eval()
    x = torch.randn(BATCH, 3, size, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        fa = FlopCountAnalysis(m, x)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        total = int(fa.total())
    return time.perf_counter() - t0, total



def build_like(model):
    """A fresh eval-mode copy (the hook-based counters leave attributes on modules)."""
    return working_copy(model, "meta").eval()


def available(mod: str) -> bool:
    try:
        __import__(mod)
        return True
    except Exception:
        return False


# -- driver ---------------------------------------------------------------------------------------

def run(names, repeat: int, use_fvcore: bool):
    tools = [t for t in ("thop", "ptflops") if available(t)]
    if use_fvcore and available("fvcore"):
        tools.append("fvcore")
    rows = []
    for name in names:
        size = input_size(name)
        model = build(name).train()
        x = torch.empty(BATCH, 3, size, size, device="meta")
        y = torch.zeros(BATCH, dtype=torch.long, device="meta")
        ours_t, fc_t = [], []
        for _ in range(repeat):  # alternate, keep medians
            dt, report = ours_training(model, x, y)
            ours_t.append(dt)
            dt, fc_flops = flop_counter_training(model, x, y)
            fc_t.append(dt)
        fwd_t, fwd = ours_forward(model, x)
        row = {"model": name, "size": size, "ours_s": statistics.median(ours_t),
               "fcm_s": statistics.median(fc_t), "flops": report.flops, "fcm_flops": fc_flops,
               "unsupported": len(report.unsupported), "bos": report.bos.total, "tos": report.tos,
               "fwd_s": fwd_t, "fwd_flops": fwd.flops}
        errors = []
        for tool in tools:
            try:
                if tool == "thop":
                    row["thop_s"], row["thop_macs"] = thop_forward(model, x)
                elif tool == "ptflops":
                    row["ptflops_s"], row["ptflops_macs"] = ptflops_forward(model, x, "pytorch")
                    row["ptflops_aten_s"], row["ptflops_aten_macs"] = ptflops_forward(model, x, "aten")
                elif tool == "fvcore":
                    row["fvcore_s"], row["fvcore_macs"] = fvcore_forward(name, size)
            except Exception as exc:  # a counter failing on a model is a result too
                errors.append(f"{tool}: {type(exc).__name__}")
        row["errors"] = "; ".join(errors)
        rows.append(row)
        print(_line(row), flush=True)
        del model
    return rows, tools


def _g(v):
    return f"{v / 1e9:,.2f}" if isinstance(v, (int, float)) else "—"


def _rel(v, ref):
    return f"{2 * v / ref:.3f}" if isinstance(v, (int, float)) and ref else "—"


def _line(r):
    tools = " ".join(f"{k[:-5]}={_rel(r[k], r['fwd_flops'])}" for k in r if k.endswith("_macs"))
    return (f"{r['model']:20s} {r['size']:4d}  train: ours {r['ours_s']:6.2f}s  FCM {r['fcm_s']:6.2f}s  "
            f"ratio {r['ours_s'] / r['fcm_s']:.2f}  flops_equal {r['flops'] == r['fcm_flops']}  "
            f"unsupported {r['unsupported']}  | fwd GFLOPs {_g(r['fwd_flops'])}  2·MACs/ours: {tools} "
            f"{r['errors']}")


def markdown(rows, tools) -> str:
    cols = ["thop", "ptflops", "ptflops_aten", "fvcore"]
    cols = [c for c in cols if any(f"{c}_macs" in r for r in rows)]
    head = ("| model | input | train: torch_tos s | FlopCounterMode s | ratio | FLOPs equal | unsupported "
            "| fwd GFLOPs (torch_tos) | " + " | ".join(f"{c} 2·GMACs" for c in cols) + " | fwd s: torch_tos | "
            + " | ".join(f"{c} s" for c in cols) + " |")
    out = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        out.append(f"| {r['model']} | {r['size']} | {r['ours_s']:.2f} | {r['fcm_s']:.2f} | "
                   f"{r['ours_s'] / r['fcm_s']:.2f} | {'yes' if r['flops'] == r['fcm_flops'] else 'NO'} | "
                   f"{r['unsupported']} | {_g(r['fwd_flops'])} | "
                   + " | ".join(_g(2 * r[f'{c}_macs']) if f"{c}_macs" in r else "—" for c in cols)
                   + f" | {r['fwd_s']:.2f} | "
                   + " | ".join(f"{r[f'{c}_s']:.2f}" if f"{c}_s" in r else "—" for c in cols) + " |")
    return "\n".join(out)


def summary(rows, tools) -> str:
    ours = sum(r["ours_s"] for r in rows)
    fcm = sum(r["fcm_s"] for r in rows)
    ratios = [r["ours_s"] / r["fcm_s"] for r in rows]
    lines = [f"models: {len(rows)}; unsupported ops in total: {sum(r['unsupported'] for r in rows)}; "
             f"FLOPs equal to FlopCounterMode: {sum(r['flops'] == r['fcm_flops'] for r in rows)}/{len(rows)}",
             f"training step on meta, whole zoo: torch_tos {ours:.1f} s, FlopCounterMode {fcm:.1f} s, "
             f"ratio {ours / fcm:.2f} (per model: median {statistics.median(ratios):.2f}, "
             f"max {max(ratios):.2f} [{rows[ratios.index(max(ratios))]['model']}])",
             f"forward only: torch_tos {sum(r['fwd_s'] for r in rows):.1f} s"]
    for c in ("thop", "ptflops", "ptflops_aten", "fvcore"):
        have = [r for r in rows if f"{c}_macs" in r]
        if not have:
            continue
        rel = [2 * r[f"{c}_macs"] / r["fwd_flops"] for r in have]
        off = [f"{r['model']} {v:.2f}" for r, v in zip(have, rel) if abs(v - 1) > 0.02]
        lines.append(f"{c}: {sum(r[f'{c}_s'] for r in have):.1f} s on {len(have)} models; 2·MACs / "
                     f"torch_tos forward FLOPs: median {statistics.median(rel):.3f}, min {min(rel):.3f}, "
                     f"max {max(rel):.3f}; off by > 2 %: {', '.join(off) if off else 'none'}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", help="zoo model names (default: the whole zoo)")
    ap.add_argument("--repeat", type=int, default=1, help="alternate timed runs per model (median)")
    ap.add_argument("--no-fvcore", action="store_true", help="skip fvcore (it runs real CPU forwards)")
    ap.add_argument("--out", help="write the markdown table and summary here")
    args = ap.parse_args(argv)
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads "
          f"{torch.get_num_threads()}, {len(names)} models, batch {BATCH}")
    rows, tools = run(names, args.repeat, not args.no_fvcore)
    text = summary(rows, tools) + "\n\n" + markdown(rows, tools) + "\n"
    print()
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
