"""Issue 18 item 7: the FLOPs baseline equals ``FlopCounterMode``'s in every grad mode (plain,
``no_grad``, ``inference_mode``), and a non-leaf input stays a non-leaf. Cases from PyTorch's own
``test/test_flop_counter.py`` (``test_inference_mode``, ``test_pytrees``) and a zoo of layers."""

from __future__ import annotations

import contextlib
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import torch_tos
from torch_tos.flops import COMPOSITE_MAPPING, CUSTOM_MAPPING, flop_formulas
from torch_tos.rules import RULES

GRAD_MODES = {"grad": contextlib.nullcontext, "no_grad": torch.no_grad, "inference_mode": torch.inference_mode}


def fcm_flops(model, inputs, grad_mode) -> int:
    with GRAD_MODES[grad_mode](), FlopCounterMode(display=False, custom_mapping=CUSTOM_MAPPING) as mode:
        model(*inputs)
    return mode.get_total_flops()


def our_flops(model, inputs, grad_mode, **kwargs) -> int:
    with GRAD_MODES[grad_mode](), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch_tos.profile(model, tuple(inputs), **kwargs).flops


@pytest.mark.parametrize("grad_mode", GRAD_MODES)
def test_resnet18_equals_flop_counter_mode(grad_mode):
    # PyTorch's test_inference_mode: resnet18 at 224×224 counts the same with and without
    # inference_mode; 3,628,146,688 is FlopCounterMode's own total (convolutions + the 512→1000 fc)
    import torchvision

    model = torchvision.models.resnet18().to("meta").eval()
    x = torch.empty(1, 3, 224, 224, device="meta")
    assert fcm_flops(model, (x,), grad_mode) == 3_628_146_688
    assert our_flops(model, (x,), grad_mode) == 3_628_146_688


@pytest.mark.parametrize("grad_mode", GRAD_MODES)
def test_an_mlp_counts_its_matmuls_in_every_grad_mode(grad_mode):
    # 16 samples through Linear(32→64), ReLU, Linear(64→16): 2·16·32·64 + 2·16·64·16 = 98,304
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    x = torch.randn(16, 32)
    assert our_flops(model, (x,), grad_mode) == fcm_flops(model, (x,), grad_mode) == 98_304


class Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *args):
        return self.f(*args)


def _zoo():
    r = torch.randn
    linear = nn.Linear(5, 3)
    return {
        "linear 1-D input": (linear, (r(5),)),
        "linear 3-D input": (linear, (r(2, 4, 5),)),
        "linear non-contiguous input": (Fn(lambda x: linear(x.transpose(0, 1))), (r(4, 2, 5),)),
        "linear no bias 4-D": (nn.Linear(5, 3, bias=False), (r(2, 2, 4, 5),)),
        "linear 1-D weight": (Fn(lambda x, w=r(5): F.linear(x, w)), (r(4, 5),)),
        "bilinear": (nn.Bilinear(3, 4, 2), (r(5, 3), r(5, 4))),
        "conv2d": (nn.Conv2d(3, 4, 3), (r(2, 3, 8, 8),)),
        "conv_transpose2d": (nn.ConvTranspose2d(3, 4, 3, stride=2), (r(2, 3, 5, 5),)),
        "thnn_conv2d": (Fn(lambda x, w=r(4, 3, 3, 3): torch.ops.aten.thnn_conv2d(x, w, [3, 3])), (r(1, 3, 6, 6),)),
        "multihead attention (eval)": (nn.MultiheadAttention(8, 2, batch_first=True).eval(), (r(2, 5, 8),) * 3),
        "transformer encoder layer (eval)": (nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
                                             .eval(), (r(2, 5, 8),)),
        "lstm": (nn.LSTM(4, 6, batch_first=True), (r(2, 5, 4),)),
        "gru": (nn.GRU(4, 6), (r(5, 2, 4),)),
        "rnn": (nn.RNN(4, 6), (r(5, 2, 4),)),
        "lstm cell": (nn.LSTMCell(4, 6), (r(3, 4),)),
        "sdpa": (Fn(F.scaled_dot_product_attention), (r(2, 2, 5, 4),) * 3),
        "einsum": (Fn(lambda a, b: torch.einsum("bij,jk->bik", a, b)), (r(3, 4, 5), r(5, 6))),
    }


@pytest.mark.parametrize("grad_mode", GRAD_MODES)
@pytest.mark.parametrize("name", list(_zoo()))
def test_layers_equal_flop_counter_mode(name, grad_mode):
    model, inputs = _zoo()[name]
    assert our_flops(model, inputs, grad_mode) == fcm_flops(model, inputs, grad_mode)


def test_linear_formula_by_hand():
    # aten.linear whole (what inference_mode dispatches): 2 · rows · in · out, rows = all leading dims
    with torch.inference_mode():
        report = torch_tos.profile(nn.Linear(5, 3), torch.randn(2, 4, 5))
    assert report.flops == 2 * (2 * 4) * 5 * 3
    assert [k[3] for k in report.counts.rows] == ["aten.linear"]


#: CompositeImplicitAutograd ops with a torch_tos rule whose FlopCounterMode decomposition holds
#: no op with a FLOPs formula (elementwise, reductions, pooling, losses, embeddings, upsampling;
#: slow_conv3d decomposes into slow_conv3d_forward, which FlopCounterMode does not count): 0 FLOPs
#: whole as decomposed. An op that reaches a FLOP-counted op (mm, addmm, bmm, convolution, SDPA)
#: needs a formula in COMPOSITE_MAPPING instead.
NO_FLOPS_WHEN_DECOMPOSED = frozenset("""
aten._choose_qparams_per_tensor aten._embedding_bag_sparse_backward aten._thnn_fused_lstm_cell_backward
aten._upsample_bicubic2d_aa aten._upsample_bilinear2d_aa aten._upsample_nearest_exact1d
aten._upsample_nearest_exact2d aten._upsample_nearest_exact3d aten.adaptive_avg_pool1d aten.adaptive_avg_pool2d
aten.adaptive_avg_pool3d aten.adaptive_max_pool1d aten.argwhere aten.avg_pool1d aten.clip aten.clip_ aten.cross
aten.embedding_backward aten.embedding_bag aten.embedding_sparse_backward aten.fake_quantize_per_channel_affine
aten.fake_quantize_per_tensor_affine aten.float_power aten.ger aten.isfinite aten.l1_loss aten.log_softmax aten.max
aten.max_pool1d aten.max_pool1d_with_indices aten.max_pool2d aten.max_pool3d aten.min aten.mish_backward
aten.nanmean aten.negative aten.nll_loss aten.nll_loss2d aten.nll_loss_nd aten.outer aten.prelu aten.relu6
aten.relu6_ aten.rrelu aten.rrelu_ aten.selu aten.selu_ aten.silu_backward aten.slow_conv3d aten.softmax
aten.square aten.std aten.std_mean aten.subtract aten.true_divide aten.upsample_bicubic2d aten.upsample_bilinear2d
aten.upsample_linear1d aten.upsample_nearest1d aten.upsample_nearest2d aten.upsample_nearest3d
aten.upsample_trilinear3d aten.var aten.var_mean aten.where
""".split())


def _composite_ops_with_rules() -> set[str]:
    out = set()
    for op in RULES:
        packet = getattr(op, "overloadpacket", op)
        for overload in packet.overloads():
            schema = getattr(packet, overload)._schema
            name = schema.name + (f".{overload}" if overload != "default" else "")
            try:
                if torch._C._dispatch_has_kernel_for_dispatch_key(name, "CompositeImplicitAutograd"):
                    out.add(str(packet))
            except RuntimeError:  # a Python-only overload (aten.tanh.int): no dispatcher entry
                pass
    return out


def test_every_rule_on_a_composite_op_has_its_decompositions_flops():
    formulas = {str(k) for k in flop_formulas()}
    unreviewed = _composite_ops_with_rules() - formulas - NO_FLOPS_WHEN_DECOMPOSED
    assert not unreviewed, ("ops that reach the engine whole only under inference_mode: give each the FLOPs of "
                            "FlopCounterMode's decomposition (COMPOSITE_MAPPING) or review it: "
                            f"{sorted(unreviewed)}")
    assert {str(k) for k in COMPOSITE_MAPPING} <= _composite_ops_with_rules()


class _Foo(nn.Module):
    def forward(self, x):
        x = x["a"].relu_()
        return {"a": torch.mm(x, x)}


class _Mod(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _Foo()
        self.b = _Foo()

    def forward(self, x):
        return self.b(self.a(x))


@pytest.mark.parametrize("device", [None, "meta"])
def test_a_non_leaf_input_stays_a_non_leaf(device):
    # PyTorch's test_pytrees: relu_ on a non-leaf input; mm FLOPs of the module 12,000
    # (2 forward mms of 2·10³ and 4 backward mms)
    mod = _Mod()
    with FlopCounterMode(display=False) as mode:
        mod({"a": torch.randn(10, 10, requires_grad=True).clone()})["a"].sum().backward()
    assert mode.flop_counts["_Mod"][torch.ops.aten.mm] == 12_000
    x = torch.randn(10, 10, requires_grad=True).clone()
    before = x.detach().clone()
    report = torch_tos.profile(mod, ({"a": x},), mode="training", loss_fn=lambda out: out["a"].sum(),
                               device=device)
    assert report.flops == 12_000
    assert torch.equal(x.detach(), before) and x.grad_fn is not None  # the user's tensor and graph untouched
    assert report.by_phase()["backward"].flops == 8_000


def test_a_non_leaf_input_counts_as_a_leaf_does():
    # without in-place ops, a non-leaf input adds no work (its clone's backward runs no op); the one
    # zero-cost op of the input gradient's accumulation (aten.detach) is booked outside the model,
    # where the user's graph continues, instead of under the first layer
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    leaf = torch.randn(2, 4, requires_grad=True)
    a = torch_tos.profile(model, leaf, mode="training")
    b = torch_tos.profile(model, leaf * 1, mode="training")
    costly = lambda r: {k: v for k, v in r.counts.rows.items() if any(v[:5])}  # noqa: E731
    assert costly(a) == costly(b) and a.flops == b.flops and a.calls == b.calls and leaf.grad is None
