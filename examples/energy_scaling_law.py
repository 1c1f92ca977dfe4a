"""Energy scaling law E = f(TOs) from Python: sweep, fit, Table V, figure.

    python examples/energy_scaling_law.py [runs.csv]

Measures a small feed-forward sweep on the bundled Banknote data (resumable: rerun to continue),
fits TOs- and FLOPs-based laws of degree 1-3, prints the paper's Table V for the random 60/40
split and for held-out configurations, and saves the figure next to the CSV. The meter is the
best this machine has (RAPL, NVML, else a CPU-time estimate, which tracks time, not energy).
"""

import logging
import sys
from pathlib import Path

from sklearn.model_selection import GroupKFold, cross_val_score

from torch_tos.energy import EnergyModel, auto_meter, compare, format_table_v, plot_fits, sweep

logging.basicConfig(level=logging.INFO, format="%(message)s")
out = Path(sys.argv[1] if len(sys.argv) > 1 else "energy_runs.csv")

meter = auto_meter()  # logs which meter and why
runs = sweep("ffn", out, widths=[16, 64, 128, 256, 384, 512], epochs=2, repeats=4, meter=meter)

law = EnergyModel(feature="tos", degree=1).fit(runs)  # y defaults to the 'joules' column
print(law)  # E = a + b × TOs

# a scikit-learn estimator: cross-validate over whole configurations
groups = runs["activation"] + "/" + runs["width"].astype(int).astype(str)
scores = cross_val_score(EnergyModel("tos", 1), runs, runs["joules"], groups=groups, cv=GroupKFold(4))
print(f"R² on held-out configurations, 4 folds: {scores.round(3)}")

for split in ("random", "config"):
    print(f"\nTable V, split={split}:")
    print(format_table_v(compare(runs, degrees=(1, 2, 3), split=split)))

plot_fits(runs, path=out.with_suffix(".png"))
print(f"\nfigure: {out.with_suffix('.png')}")
