"""report.plot(), report.to_html() and the folded, model-ordered text table."""

import sys

import pytest
import torch
import torch.nn as nn
import torchvision

import torch_tos
from torch_tos.plotting import plot_data


def _small():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Flatten(), nn.Linear(8, 1))
    return torch_tos.profile(model, torch.randn(2, 4), mode="training")


def test_plot_data_by_kind_by_phase_and_folding():
    r = _small()
    # TOs per layer (float32: add = sub = 236, mul = 12,736.25, div = 15,548.75, root = 57,042):
    # "0" Linear(4, 8): forward 16 outputs × (4 mul, 4 add); backward dW 32 × (2 mul, 1 add),
    #     db 8 sums of 2 → mul 128, add 104 → 1,654,784
    # "1" Sigmoid: 16 × [1, 1, 0, 1, 1] forward, 16 × (1 sub, 2 mul) backward → 1,580,340
    # "3" Linear(8, 1): forward 2 × (8 mul, 8 add); dx 16 × 1 mul; dW 8 × (2 mul, 1 add); db 1 add
    #     → mul 48, add 25 → 617,240;  "(loss)": 1 add → 236;  "2" Flatten: 0 (left out)
    data = plot_data(r, top=2)
    assert data["layers"] == ["0", "1", "(2 other layers)"]
    tos = [a + b + c + d + e for a, b, c, d, e in zip(*data["kinds"].values())]
    assert tos == [1_654_784, 1_580_340, 617_240 + 236]
    assert data["kinds"]["div"] == [0, 16 * 15_548.75, 0]
    assert data["phases"]["backward"][1] == 16 * 236 + 32 * 12_736.25
    assert sum(sum(v) for v in data["phases"].values()) == r.tos
    with pytest.raises(ValueError, match="top must be a positive integer"):
        plot_data(r, top=0)


def test_plot_draws_and_saves(tmp_path):
    pytest.importorskip("matplotlib")
    r = _small()
    fig = r.plot(path=tmp_path / "cost.png", top=3)
    assert len(fig.axes) == 2 and (tmp_path / "cost.png").read_bytes()[:4] == b"\x89PNG"

    from test_report_law import FakeLaw

    assert len(r.with_law(FakeLaw()).plot().axes) == 3  # + joules by phase


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"report.plot\(\) needs matplotlib"):
        _small().plot()
    page = _small().to_html()
    assert "figure left out: matplotlib is not installed" in page


def test_html_is_self_contained():
    pytest.importorskip("matplotlib")
    page = _small().to_html()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    assert "<table" in page and "Sigmoid" in page and "src=" not in page.replace('src="data:image/png', "")
    assert "<script>" in page and "href=" not in page and "http" not in page


def test_full_table_folds_bookkeeping_rows_and_lists_model_order():
    r = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), mode="training",
                          device="meta")
    text = r.table(full=True)
    # batch norm's num_batches_tracked += 1 is an int64 row: folded by default, listed on request
    assert "int64" not in text and "zero-cost / integer rows folded" in text
    assert "int64" in r.table(full=True, all_rows=True)
    lines = text.splitlines()
    conv1 = [i for i, line in enumerate(lines) if line.startswith("conv1 ")]
    fc = [i for i, line in enumerate(lines) if line.startswith("fc ")]
    assert conv1 == [conv1[0], conv1[0] + 1] and conv1[0] < fc[0]  # forward, backward together
    assert len(r.table(depth=1).splitlines()) < 40
