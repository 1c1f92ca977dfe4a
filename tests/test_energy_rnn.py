"""energy.efficiency: ``calls_rnn`` (calls of fused recurrent-layer ops such as
``aten.mkldnn_rnn_layer``), derived by hand on rows and on a 2-layer LSTM counted on the CPU, and the
default law that uses it ("+kernel efficiency, fused recurrent calls"), recovered when planted."""

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.counts import Counts
from torch_tos.energy.efficiency import EFFICIENCY_FEATURES, FUSED_RNN, rnn_calls
from torch_tos.energy.evaluate import (BIGROW_LAW, CANDIDATES, DEFAULT_FEATURES, DEFAULT_LAW, RNN_LAW,
                                       default_laws)
from torch_tos.energy.features import FEATURE_NAMES, check_features, op_class, row_features, step_features, unit

F32 = torch.float32


def test_rnn_calls_of_fused_ops_only():
    assert rnn_calls("aten.mkldnn_rnn_layer", 3) == 3 and rnn_calls("aten.mkldnn_rnn_layer_backward", 2) == 2
    assert rnn_calls("aten._cudnn_rnn", 1) == 1 and rnn_calls("aten.miopen_rnn_backward", 5) == 5
    # per-time-step cells, GEMMs and anything else are not fused layers
    for op in ("aten._thnn_fused_lstm_cell", "aten.mm", "aten.addmm", "aten.tanh"):
        assert rnn_calls(op, 7) == 0
    # every fused recurrent op is still a matmul-class op (its TOs stay in tos_matmul)
    assert all(op_class(op) == "matmul" for op in FUSED_RNN)


def test_rows_by_hand():
    c = Counts()
    c.add(("rnn", "forward", F32, "aten.mkldnn_rnn_layer"), (5, 0, 5, 0, 0), calls=2, flops=100, bytes=64)
    c.add(("rnn", "backward", F32, "aten.mkldnn_rnn_layer_backward"), (9, 0, 9, 0, 0), calls=2, flops=200,
          bytes=64)
    c.add(("fc", "forward", F32, "aten.addmm"), (3, 0, 3, 0, 0), calls=4, flops=10, bytes=8)
    f = step_features(c)
    # 2 forward + 2 backward fused calls; the addmm's 4 calls are not fused-layer calls
    assert f["calls_rnn"] == 2 + 2 == 4 and f["calls_matmul"] == 2 + 2 + 4 == 8
    total = {}
    for key, row in c.rows.items():
        for k, v in row_features(key, row).items():
            total[k] = total.get(k, 0.0) + v
    for name in EFFICIENCY_FEATURES:
        assert total.get(name, 0.0) == f[name], name


class _LastStep(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn, self.head = cell(4, 8, 2, batch_first=True), nn.Linear(8, 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])


def _features(cell, device):
    torch.manual_seed(0)
    m = _LastStep(cell)
    r = torch_tos.profile(m, torch.randn(2, 3, 4), mode="training", loss_fn=nn.MSELoss(), target=torch.randn(2, 1),
                          optimizer=torch.optim.SGD(m.parameters(), lr=0.1), device=device)
    return r, step_features(r, model=m)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="CPU LSTMs run fused oneDNN layers only with mkldnn")
def test_lstm_on_cpu_by_hand():
    # LSTM(4 inputs, hidden 8, 2 layers) on batch 2 × 3 time steps, one training step on the CPU: one
    # aten.mkldnn_rnn_layer per layer forward and one mkldnn_rnn_layer_backward per layer → 2 + 2 = 4.
    # Forward FLOPs (the row is counted): 2·B·T·4H·(I+H) per layer = 2·2·3·32·(4+8) = 4,608 and
    # 2·2·3·32·(8+8) = 6,144 → 10,752 in 2 calls
    r, f = _features(nn.LSTM, "cpu")
    fwd = r.counts.rows[("rnn", "forward", F32, "aten.mkldnn_rnn_layer")]
    assert fwd[5] == 2 and fwd[6] == 4_608 + 6_144 == 10_752
    assert f["calls_rnn"] == 2 + 2 == 4


def test_per_step_recurrences_are_not_fused_calls():
    # a GRU on the CPU and an LSTM on meta run per-time-step GEMMs and gates: no fused-layer call
    assert _features(nn.GRU, "cpu")[1]["calls_rnn"] == 0
    _, f = _features(nn.LSTM, "meta")
    assert f["calls_rnn"] == 0 and f["calls_matmul"] > 4


def test_whitelist_units_and_csv_columns():
    assert "calls_rnn" in EFFICIENCY_FEATURES and "calls_rnn" in FEATURE_NAMES
    assert check_features(("tos", "calls_rnn")) == ("tos", "calls_rnn")
    assert unit("calls_rnn") == ("call", "fused recurrent-layer calls")


def test_default_law_is_the_fused_recurrent_law():
    # pinned deliberately: changing the default law must change this test
    assert DEFAULT_LAW == "+kernel efficiency, fused recurrent calls" and CANDIDATES[DEFAULT_LAW] == RNN_LAW
    assert DEFAULT_FEATURES == RNN_LAW == BIGROW_LAW + ("calls_rnn", "bytes_matmul_lowai")
    assert len(DEFAULT_FEATURES) == 15 == len(set(DEFAULT_FEATURES))
    # the previous default is still shown next to it
    assert {"+kernel efficiency, big rows", DEFAULT_LAW} <= set(default_laws())


def test_predict_counts_recurrent_layers_where_they_run_fused():
    """law.predict counts a model with recurrent layers on its weights' device (fused kernels, as
    the suite's lstm/gru runs were counted), and warns when they can only be counted on meta."""
    import warnings

    from torch_tos.energy import EnergyModel
    from torch_tos.energy.predict import ExtrapolationWarning, counting_device

    import pandas as pd

    runs = pd.DataFrame({"family": list("abcabc"), "width": range(6), "steps": 10.0, "meter": "cputime",
                         "tos": [1e7, 2e8, 3e9, 4e7, 5e8, 6e9], "calls_rnn": [0, 2, 4, 0, 2, 4]})
    runs["joules"] = runs.steps * (1e-3 + 1e-12 * runs.tos + 3e-3 * runs.calls_rnn) + 0.05
    law = EnergyModel(features=("tos", "calls_rnn")).fit(runs)
    lstm = nn.LSTM(4, 8, num_layers=2, batch_first=True)
    x = torch.randn(2, 3, 4)
    assert counting_device(lstm) == torch.device("cpu") and counting_device(nn.Linear(2, 2)) == "meta"
    assert counting_device(lstm, inputs=(x.to("meta"),)) == "meta" and counting_device(lstm, "meta") == "meta"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fused = law.predict(lstm, x, steps=10)
    assert not any("recurrent" in str(w.message) for w in seen)  # no meta note on the CPU
    assert fused.features["calls_rnn"] == 4  # 2 layers: forward + backward each (test above)
    with pytest.warns(ExtrapolationWarning, match="recurrent layers were counted on meta"):
        meta = law.predict(lstm, x, steps=10, device="meta")
    assert meta.features["calls_rnn"] == 0 and any("recurrent" in w for w in meta.warnings)
