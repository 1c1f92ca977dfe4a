"""Shared checks of the energy-feature tests."""

import pytest

from torch_tos.energy.efficiency import EFFICIENCY_FEATURES
from torch_tos.energy.features import row_features


def assert_rows_add_up(counts, features) -> None:
    """``row_features`` summed over the rows of ``counts`` gives the kernel-efficiency features of
    ``step_features`` (the law is linear, so per-row joules add up to the step's)."""
    total = {}
    for key, row in counts.rows.items():
        for k, v in row_features(key, row).items():
            total[k] = total.get(k, 0.0) + v
    for name in EFFICIENCY_FEATURES:
        assert total.get(name, 0.0) == pytest.approx(features[name], rel=1e-12), name
