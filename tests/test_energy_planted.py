"""Every law of the kernel-efficiency rounds — the default and the candidates it was chosen from —
recovers a planted law: noiseless runs E = steps·(e_step + Σ b_k f_k) + e_run of 4 families give
back every coefficient within 1 %, and the law prints each feature with its unit."""

import numpy as np
import pandas as pd
import pytest

from torch_tos.energy import EnergyModel
from torch_tos.energy.evaluate import (BIGROW_LAW, CANDIDATES, DEFAULT_FEATURES, DEFAULT_LAW, DEPTHWISE_LAW,
                                       EFFICIENCY_LAW, RNN_LAW)

#: typical per-step magnitude of each feature, and a planted J per unit (the fitted order of magnitude)
SCALE = {"tos": 1e12, "bytes": 1e8, "bytes_elementwise": 1e7, "calls_conv": 50, "calls_matmul": 50,
         "bytes_conv_lowai": 1e7, "tos_conv_small": 1e9, "tos_matmul_small": 1e9, "calls_norm": 30,
         "bytes_matmul_lowai": 1e7, "bytes_large": 1e8, "tos_dwconv_slow": 1e11, "tos_matmul": 1e12,
         "bytes_conv_big": 1e8, "tos_matmul_lowai_big": 1e12, "calls_rnn": 4}
COEF = {"tos": 8e-15, "bytes": 4e-10, "bytes_elementwise": 1e-9, "calls_conv": 2e-3, "calls_matmul": 1e-4,
        "bytes_conv_lowai": 3e-9, "tos_conv_small": 3e-12, "tos_matmul_small": 6e-14, "calls_norm": 1.5e-3,
        "bytes_matmul_lowai": 2e-9, "bytes_large": 5e-9, "tos_dwconv_slow": 3e-13, "tos_matmul": 3e-15,
        "bytes_conv_big": 1e-9, "tos_matmul_lowai_big": 1.4e-14, "calls_rnn": 2.8e-3}
UNITS = {"bytes_conv_lowai": "J/B · low-intensity conv bytes", "tos_conv_small": "J/TO · small-kernel conv TOs",
         "tos_dwconv_slow": "J/TO · slow-path depthwise backward TOs", "bytes_conv_big": "J/B · big-row conv bytes",
         "tos_matmul_lowai_big": "J/TO · weight-streaming matmul TOs",
         "calls_rnn": "J/call · fused recurrent-layer calls"}


def planted_runs(feats, seed: int) -> pd.DataFrame:
    """Noiseless runs of the planted law over ``feats``: 8 runs per coefficient, 3 run lengths."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(8 * (len(feats) + 2)):
        x = {f: rng.uniform(0.05, 1.0) * SCALE[f] for f in feats}
        steps = int(rng.choice([10, 40, 160]))
        e = steps * (1e-3 + sum(COEF[f] * x[f] for f in feats)) + 0.05
        rows.append({"family": "abcd"[i % 4], "width": i, "steps": steps, "joules": e, **x})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name,feats", [("efficiency", EFFICIENCY_LAW), ("depthwise", DEPTHWISE_LAW),
                                        ("big rows", BIGROW_LAW), ("fused recurrent calls", RNN_LAW)])
def test_recovers_planted_law_within_one_percent(name, feats):
    assert set(feats) <= set(SCALE)
    law = EnergyModel(features=feats).fit(planted_runs(feats, seed=len(feats)))
    np.testing.assert_allclose(law.coef_, [COEF[f] for f in feats], rtol=0.01)
    assert law.e_step_ == pytest.approx(1e-3, rel=0.01) and law.e_run_ == pytest.approx(0.05, rel=0.01)
    text = str(law)
    assert all(UNITS[f] in text for f in feats if f in UNITS)


def test_the_default_is_one_of_the_planted_laws():
    assert DEFAULT_FEATURES == CANDIDATES[DEFAULT_LAW] == RNN_LAW
