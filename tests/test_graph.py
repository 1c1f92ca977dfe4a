"""The fx graph view: one entry per node, same rules as profile()."""

import pytest
import torch
import torch.nn as nn

import torch_tos
from torch_tos import BOs
from conftest import ffn


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 18)
        self.w = nn.Parameter(torch.randn(18, 3))

    def forward(self, x):
        h = torch.sigmoid(self.lin(x))       # call_module + call_function
        return (h @ self.w).relu()           # matmul function + relu method


def test_nodes_and_counts():
    g = torch_tos.graph(FunctionalNet(), torch.randn(2, 4))
    by_name = {n.name: n for n in g.nodes}
    assert by_name["lin"].op == "call_module"
    assert by_name["lin"].bos == BOs(add=4 * 18, mul=4 * 18) * 2
    assert by_name["sigmoid"].op == "call_function" and by_name["sigmoid"].target == "torch.sigmoid"
    assert by_name["sigmoid"].bos == BOs(1, 1, 0, 1, 1) * 36
    assert by_name["matmul"].bos == BOs(add=17 * 6, mul=18 * 6)
    assert by_name["relu"].op == "call_method" and by_name["relu"].bos == BOs(sub=6)
    assert by_name["x"].bos == BOs() and by_name["output"].bos == BOs()


def test_graph_equals_profile_forward():
    model, x = ffn(18), torch.randn(64, 4)
    g = torch_tos.graph(model, x, device="meta")
    r = torch_tos.profile(model, x)
    assert g.bos == r.bos and g.tos == pytest.approx(r.tos, rel=1e-15) and g.flops == r.flops
    df = g.to_dataframe()
    assert list(df.columns)[:4] == ["name", "op", "target", "dtype"] and len(df) == len(g.nodes)
    assert "call_module" in str(g)


def test_graph_dtype_override():
    g = torch_tos.graph(nn.Sequential(nn.Linear(4, 18), nn.Sigmoid()), torch.randn(1, 4), dtype="float32")
    assert g.tos == 2_249_131.5


def test_untraceable_model_error():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(torch_tos.GraphTraceError,
                       match=r"torch.fx cannot trace Branchy: .*control flow.*torch_tos.profile"):
        torch_tos.graph(Branchy(), torch.randn(3))
    # profile() handles it
    assert torch_tos.profile(Branchy(), torch.ones(3)).bos == BOs(add=2, sub=1)  # sum, compare
