"""Golden tests for torch_tos/rules/embedding.py: Embedding and EmbeddingBag, forward and backward.

Table 10 × 3 (D = 3); N = 8 indices; bags at offsets [0, 4] (nb = 2 bags of 4).
``B(add, sub, mul, div, root)``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from test_rules_seq_helpers import B, aten, meta, op_bos, rule_bos

IDX = torch.tensor([1, 2, 4, 5, 4, 3, 2, 9])
OFF = torch.tensor([0, 4])


def weight():
    return torch.randn(10, 3, requires_grad=True)


def test_embedding_forward_is_a_gather_backward_adds_rows():
    def step(w, idx):
        F.embedding(idx, w).sum().backward()

    counted = op_bos(step, weight(), IDX)
    # forward: a row gather, no arithmetic (absent from the non-zero ops)
    assert "embedding" not in counted
    # backward: grad_weight[idx] += grad[i] for 8 indices × 3 → 24 add
    assert counted["embedding_dense_backward"] == B(24)


def test_embedding_scale_grad_by_freq_and_max_norm():
    def step(w, idx):
        F.embedding(idx, w, scale_grad_by_freq=True).sum().backward()

    # 1/count per index (8 div) and the scaled add (24 mul, 24 add)
    assert op_bos(step, weight(), IDX)["embedding_dense_backward"] == B(24, 0, 24, 8)

    def renorm(w, idx):
        with torch.no_grad():
            F.embedding(idx, w, max_norm=1.0)

    # per index: 2-norm of 3 (3 mul, 2 add, 1 root), compare with max_norm (1 sub),
    # max_norm/(norm + 1e-7) (1 add, 1 div), row rescale (3 mul) → [3, 1, 6, 1, 1] × 8
    assert op_bos(renorm, weight(), IDX)["embedding_renorm_"] == B(24, 8, 48, 8, 8)


@pytest.mark.parametrize("mode,fwd,bwd", [
    # sum: each bag folds 4 rows → 3 adds × 3 dims × 2 bags = 18; backward: one axpy per index
    # (3 mul, 3 add) → [24, 0, 24]
    ("sum", B(18), B(24, 0, 24)),
    # mean: + division by the bag size, 2 bags × 3 dims = 6 div; backward: scale = 1/bag_size per
    # index (8 div)
    ("mean", B(18, 0, 0, 6), B(24, 0, 24, 8)),
    # max: 3 compares × 3 dims × 2 bags = 18 sub; backward: the bag gradient added at the arg-max
    # rows: 2 bags × 3 dims = 6 add
    ("max", B(0, 18), B(6)),
])
def test_embedding_bag_modes(mode, fwd, bwd):
    def step(w, idx, off):
        F.embedding_bag(idx, w, off, mode=mode).sum().backward()

    counted = op_bos(step, weight(), IDX, OFF)
    assert counted["_embedding_bag"] == fwd
    assert counted["_embedding_bag_backward"] == bwd


def test_embedding_bag_per_sample_weights():
    def step(w, idx, off, psw):
        F.embedding_bag(idx, w, off, mode="sum", per_sample_weights=psw).sum().backward()

    counted = op_bos(step, weight(), IDX, OFF, torch.rand(8, requires_grad=True))
    # forward: each row scaled first (8 × 3 mul), then the bag sums (18 add)
    assert counted["_embedding_bag"] == B(18, 0, 24)
    # weight gradient: one axpy per index with the sample weight as its scale
    assert counted["_embedding_bag_backward"] == B(24, 0, 24)
    # per-sample-weight gradient: one dot product of 3 per index (3 mul, 2 add)
    assert counted["_embedding_bag_per_sample_weights_backward"] == B(16, 0, 24)


def test_embedding_bag_2d_input_and_module():
    # EmbeddingBag on (2, 4) indices: 2 bags of 4, as above
    bag = nn.EmbeddingBag(10, 3, mode="mean")
    counted = op_bos(lambda m, x: m(x).sum().backward(), bag, IDX.view(2, 4))
    assert counted["_embedding_bag"] == B(18, 0, 0, 6)


def test_bag_rules_for_other_entry_points():
    w, idx, off, g = meta(10, 3), torch.empty(8, dtype=torch.long, device="meta"), \
        torch.empty(2, dtype=torch.long, device="meta"), meta(2, 3)
    # forward-only variant (weight without grad) is the same kernel
    assert rule_bos(aten._embedding_bag_forward_only, w, idx, off, False, 1) == B(18, 0, 0, 6)
    # include_last_offset: offsets [0, 4, 8] describe 2 bags
    off3 = torch.empty(3, dtype=torch.long, device="meta")
    assert rule_bos(aten._embedding_bag, w, idx, off3, False, 0, False, None, True) == B(18)
    # dense backward entry point; sparse backward: mean divides every gathered row (24 div)
    assert rule_bos(aten._embedding_bag_dense_backward, g, idx, idx, off, off, 10, False, 0, None) == \
        B(24, 0, 24)
    assert rule_bos(aten._embedding_bag_sparse_backward, g, idx, off, idx, off, 10, False, 1, None) == \
        B(0, 0, 0, 24)
    assert rule_bos(aten.embedding_sparse_backward, meta(8, 3), idx, 10, -1, False) == B()
