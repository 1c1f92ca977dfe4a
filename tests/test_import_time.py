"""``import torch_tos`` stays cheap: at most 0.5 s beyond ``import torch``, and none of the heavy
optional modules (dynamo, transformers, lightning, matplotlib, pandas, scikit-learn) is imported
until a feature that needs it is used."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Modules ``import torch_tos`` must not pull in (each costs from 0.2 s to several seconds, or
#: brings one of those): they are imported where a feature needs them.
HEAVY = ("torch._dynamo", "torch._inductor", "sympy", "transformers", "accelerate", "lightning",
         "pytorch_lightning", "matplotlib", "pandas", "sklearn", "scipy", "torch_tos.energy",
         "torch_tos.integrations.transformers", "torch_tos.integrations.lightning", "torch_tos.cli")

#: The budget of the issue, in CPU seconds beyond ``import torch``.
BUDGET_S = 0.5

_TIMING = """
import time
t0 = time.process_time()
import torch
t1 = time.process_time()
import torch_tos
t2 = time.process_time()
print(t1 - t0, t2 - t1)
"""


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=True)


def test_import_pulls_in_no_heavy_module():
    """``python -X importtime -c "import torch; import torch_tos"``: the modules listed after
    ``torch``'s own top-level line are the ones ``import torch_tos`` added."""
    err = _python("-X", "importtime", "-c", "import torch; import torch_tos").stderr
    names = [line.rsplit("|", 1)[1] for line in err.splitlines() if line.startswith("import time:")]
    after_torch = names[[n.rstrip() for n in names].index(" torch") + 1:]
    added = {n.strip() for n in after_torch}
    assert "torch_tos" in added and "torch_tos.training.hooks" in added
    heavy = sorted(m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert not heavy, f"import torch_tos imports {heavy}; import them where they are used"


def test_import_costs_at_most_half_a_second_beyond_torch():
    """CPU seconds of ``import torch_tos`` after ``import torch`` in the same process (CPU time,
    best of three, so a loaded machine does not make it fail), and the same as a share of
    ``import torch``'s own cost."""
    runs = []
    for _ in range(3):
        torch_s, tos_s = map(float, _python("-c", _TIMING).stdout.split())
        runs.append((tos_s, torch_s))
        if tos_s <= BUDGET_S:
            break
    tos_s, torch_s = min(runs)
    assert tos_s <= BUDGET_S, (f"import torch_tos took {tos_s:.2f} s CPU beyond import torch "
                               f"({torch_s:.2f} s, ratio {tos_s / torch_s:.2f}); budget {BUDGET_S} s")
