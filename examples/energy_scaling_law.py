"""Energy from Python: the paper's scaling law E = f(TOs) on a sweep, and this machine's cost model.

    python examples/energy_scaling_law.py [folder]

1. Measures a small feed-forward sweep on the bundled Banknote data at two run lengths (resumable:
   rerun to continue), fits the paper's TOs law (a scikit-learn estimator: cross-validated over
   whole configurations), prints Table V on held-out configurations with the mean-only baseline and
   the noise floor, and saves the figure.
2. Calibrates this machine's cost model (microbenchmarks + the step-level suite, resumable; a few
   minutes) and predicts the joules and seconds of training and of running a torchvision model
   that was never measured, with intervals and joules per layer.

The meter is the best this machine has (RAPL, NVML, else a CPU-time estimate, which tracks time,
not energy).
"""

import logging
import sys
from pathlib import Path

import torch
import torchvision
from sklearn.model_selection import GroupKFold, cross_val_score

from torch_tos.energy import (EnergyModel, auto_meter, calibrate, cv_by_config, evaluate, format_evaluation,
                              plot_fits, read_runs, sweep)
from torch_tos.energy.runs import config_keys
from torch_tos.units import duration, energy

logging.basicConfig(level=logging.INFO, format="%(message)s")
folder = Path(sys.argv[1] if len(sys.argv) > 1 else "energy-example")
folder.mkdir(exist_ok=True)
meter = auto_meter()  # logs which meter and why

# 1. the paper's law on a sweep
out = folder / "ffn_runs.csv"
for epochs in (1, 3):  # two run lengths in one file: epochs and steps are part of each configuration
    sweep("ffn", out, widths=[16, 64, 128, 256, 384, 512], epochs=epochs, repeats=4, meter=meter)
runs = read_runs(out)
print(cv_by_config(runs).round(1).to_string(index=False))  # run-to-run CV per configuration
paper = EnergyModel(feature="tos", degree=1).fit(runs)  # E = a + b × TOs of the whole run
print(paper)
groups = config_keys(runs).astype(str)
scores = cross_val_score(EnergyModel(feature="tos"), runs, runs["joules"], groups=groups, cv=GroupKFold(4))
print(f"R² on held-out configurations, 4 folds: {scores.round(3)}")
print(format_evaluation(evaluate(runs, splits=("loco",))))
plot_fits(runs, path=out.with_suffix(".png"))

# 2. this machine's cost model, and a model never measured
cal = calibrate(folder / "law.json", meter=meter)
law = cal.law
print(law)
model = torchvision.models.mnasnet0_5(num_classes=10)
x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
train = law.predict(model, x, mode="training", steps=1000, target=y, loss_fn=torch.nn.CrossEntropyLoss(),
                    optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
serve = law.predict(model.eval(), x, mode="inference", steps=10000)
print(train)
print(f"10,000 inference batches: {energy(serve.joules)} ({energy(serve.joules_low)} – {energy(serve.joules_high)}), "
      f"{duration(serve.seconds)}")
