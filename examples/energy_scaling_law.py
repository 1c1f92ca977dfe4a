"""Energy scaling law E = f(TOs) from Python: sweep, fit, held-out Table V, figure.

    python examples/energy_scaling_law.py [runs.csv]

Measures a small feed-forward sweep on the bundled Banknote data at two run lengths (resumable:
rerun to continue; each run drift-corrected by a reference workload), fits the paper's TOs law
and the overhead-aware per-step law, prints Table V on held-out configurations with the
mean-only baseline and the noise floor, and saves the figure next to the CSV. The meter is the
best this machine has (RAPL, NVML, else a CPU-time estimate, which tracks time, not energy).
"""

import logging
import sys
from pathlib import Path

from sklearn.model_selection import GroupKFold, cross_val_score

from torch_tos.energy import (EnergyModel, auto_meter, cv_by_config, evaluate, format_evaluation, plot_fits,
                              read_runs, sweep)
from torch_tos.energy.runs import config_keys

logging.basicConfig(level=logging.INFO, format="%(message)s")
out = Path(sys.argv[1] if len(sys.argv) > 1 else "energy_runs.csv")

meter = auto_meter()  # logs which meter and why
for epochs in (1, 3):  # two run lengths in one file: epochs and steps are part of each configuration
    sweep("ffn", out, widths=[16, 64, 128, 256, 384, 512], epochs=epochs, repeats=4, meter=meter, reference=True)
runs = read_runs(out)
print(cv_by_config(runs).round(1).to_string(index=False))  # run-to-run CV, raw and corrected

paper = EnergyModel(feature="tos", degree=1).fit(runs)  # E = a + b × TOs of the whole run
law = EnergyModel(features=("tos", "calls", "bytes")).fit(runs)  # E = steps × (…) + e_run, non-negative
print(paper, law, sep="\n")

# a scikit-learn estimator: cross-validate over whole configurations
groups = config_keys(runs).astype(str)
scores = cross_val_score(EnergyModel(features=("tos", "calls", "bytes")), runs, runs["joules"], groups=groups,
                         cv=GroupKFold(4))
print(f"R² on held-out configurations, 4 folds: {scores.round(3)}")

print(format_evaluation(evaluate(runs, splits=("loco",))))
plot_fits(runs, path=out.with_suffix(".png"))
print(f"\nfigure: {out.with_suffix('.png')}")
