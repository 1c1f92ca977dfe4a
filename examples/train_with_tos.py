"""Train the paper's FFN on the bundled Banknote data and log its TOs, FLOPs and energy as it trains.

The training loop is an ordinary PyTorch loop; the only addition is the ``with TOsCounter(...)``
line around it. Per epoch it prints the mean training loss, the validation loss, and the TOs,
FLOPs and energy of that epoch's steps (training and validation); at the end, the totals and the
energy per TO.

    python examples/train_with_tos.py                      # 8 epochs, width 18, sigmoid, Adam
    python examples/train_with_tos.py --epochs 20 --activation gelu --csv runs/tos_steps.csv
    python examples/train_with_tos.py --no-meter           # counts only

Energy comes from ``torch_tos.energy.auto_meter()`` (RAPL, then NVML, then a CPU-time estimate,
which is labelled as an estimate). Each step is measured on its own; the first step of each
signature is counted op by op and so runs slower (and costs more energy) than the rest — the
energy per TO is therefore also given over the steady-state (cached) steps only.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

import torch_tos
from torch_tos.data import load_banknote

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}


def paper_ffn(width: int = 18, activation: str = "sigmoid") -> nn.Sequential:
    """Table IV of the paper: 4 inputs → three hidden layers of ``width`` → 1 output."""
    act = ACTIVATIONS[activation]
    return nn.Sequential(nn.Linear(4, width), act(), nn.Linear(width, width), act(),
                         nn.Linear(width, width), act(), nn.Linear(width, 1))


def main(argv=None) -> torch_tos.TOsCounter:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=18)
    ap.add_argument("--activation", choices=sorted(ACTIVATIONS), default="sigmoid")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                    help="adam (default: converges in a few epochs) or plain sgd (the paper's sweeps)")
    ap.add_argument("--lr", type=float, default=None, help="default: 0.01 for adam, 0.1 for sgd")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the paper's runs: 1)")
    ap.add_argument("--csv", default=None, help="also append one row per step to this CSV file")
    ap.add_argument("--no-meter", action="store_true", help="count only, measure no energy")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    X, y = (torch.from_numpy(a) for a in load_banknote())
    X = (X - X.mean(0)) / X.std(0)                      # standardised features
    perm = torch.randperm(len(X))
    n_val = len(X) // 5
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[train_idx], y[train_idx]),
                                        batch_size=args.batch_size, shuffle=True, drop_last=True)
    Xv, yv = X[val_idx], y[val_idx]

    model = paper_ffn(args.width, args.activation)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr or 0.01)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr or 0.1)
    loss_fn = nn.MSELoss()
    meter = None
    if not args.no_meter:
        from torch_tos.energy import auto_meter

        meter = auto_meter()
        print(f"energy meter: {meter.describe()}")

    print(f"{'epoch':>5} {'train loss':>11} {'val loss':>9} {'TOs':>12} {'FLOPs':>12} {'energy (J)':>11}")
    with torch_tos.TOsCounter(model, opt, meter=meter) as counter:
        if args.csv:
            counter.log_to(args.csv)
        for epoch in range(1, args.epochs + 1):
            first = len(counter.steps)
            losses = []
            model.train()
            for xb, yb in train:                         # the training loop, unchanged
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            model.eval()
            with torch.no_grad():                        # validation: recorded as its own step
                val_loss = loss_fn(model(Xv), yv).item()
            counter.step()                               # close the validation step now
            steps = counter.steps[first:]
            tos = sum(r.tos for r in steps)
            flops = sum(r.flops for r in steps)
            joules = sum(r.joules for r in steps) if meter is not None else None
            energy = f"{joules:11.4g}" if joules is not None else f"{'-':>11}"
            print(f"{epoch:>5} {sum(losses) / len(losses):>11.4f} {val_loss:>9.4f} {tos:>12.4g} "
                  f"{flops:>12.4g} {energy}")

    total = counter.total
    train_steps = [r for r in counter.steps if r.kind == "training"]
    print(f"\n{len(train_steps)} training steps, {total.steps - len(train_steps)} validation steps; "
          f"{sum(r.cache == 'miss' for r in counter.steps)} counted op by op, the rest from the cache")
    print(f"total: {total.tos:.6g} TOs, {total.flops:.6g} FLOPs, "
          f"BOs {tuple(total.bos)} (add, sub, mul, div, root)")
    for phase, t in total.phases.items():
        print(f"  {phase:<10} {t.tos:12.4g} TOs  {t.flops:12.4g} FLOPs")
    if meter is not None and total.joules is not None:
        est = " (estimated)" if any(r.estimated for r in counter.steps) else ""
        print(f"energy: {total.joules:.4g} J{est} in {total.seconds:.3g} s of measured steps")
        print(f"energy per TO: {total.joules_per_tos:.4g} J/TO")
        steady = [r for r in counter.steps if r.cache == "hit" and r.joules is not None]
        if steady:
            j, t = sum(r.joules for r in steady), sum(r.tos for r in steady)
            print(f"energy per TO over the {len(steady)} steady-state steps: {j / t:.4g} J/TO")
    return counter


if __name__ == "__main__":
    main()
