"""profile(): modes, inputs, attribution, FLOPs baseline, meta vs real, and never touching the model."""

import copy

import pytest
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode

import torch_tos
from torch_tos import BOs
from conftest import ffn


def _train(model, x, y, opt=None, loss_fn=None, **kw):
    return torch_tos.profile(model, x, mode="training", loss_fn=loss_fn or nn.MSELoss(), target=y,
                             optimizer=opt, **kw)


# -- modes and inputs ---------------------------------------------------------------------------

def test_modes_and_phases():
    model, x, y = ffn(), torch.randn(8, 4), torch.randn(8, 1)
    assert list(torch_tos.profile(model, x).by_phase()) == ["forward"]
    v = torch_tos.profile(model, x, mode="validation", loss_fn=nn.MSELoss(), target=y)
    assert list(v.by_phase()) == ["forward", "loss"]
    t = _train(model, x, y)
    assert list(t.by_phase()) == ["forward", "loss", "backward"]
    t = _train(model, x, y, opt=torch.optim.SGD(model.parameters(), lr=0.1))
    assert list(t.by_phase()) == ["forward", "loss", "backward", "optimizer"]
    assert t.metadata["mode"] == "training" and t.metadata["loss"] == "MSELoss"


def test_input_forms():
    class Two(nn.Module):
        def forward(self, a, b=None):
            return a * b
    a, b = torch.randn(3), torch.randn(3)
    expected = BOs(mul=3)
    assert torch_tos.profile(Two(), (a, b)).bos == expected
    assert torch_tos.profile(Two(), {"a": a, "b": b}).bos == expected
    assert torch_tos.profile(nn.ReLU(), a).bos == BOs(sub=3)


def test_surrogate_loss_and_loss_without_target():
    model, x = nn.Linear(3, 2), torch.randn(4, 3)
    r = torch_tos.profile(model, x, mode="training")
    assert "surrogate" in r.metadata["loss"]
    assert r.by_phase()["loss"].bos == BOs(add=7)  # output.sum() over 8 elements
    r = torch_tos.profile(model, x, mode="validation", loss_fn=lambda out: out.pow(2).mean())
    assert r.by_phase()["loss"].bos == BOs(mul=8) + BOs(add=7, div=1)


def test_bad_arguments():
    m = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="unknown mode 'train'; accepted: inference, validation, training"):
        torch_tos.profile(m, torch.randn(1, 2), mode="train")
    with pytest.raises(ValueError, match="unknown dtype"):
        torch_tos.profile(m, torch.randn(1, 2), dtype="float8")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        torch_tos.profile(lambda x: x, torch.randn(1))
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        torch_tos.profile(m, torch.randn(1, 2), mode="training", optimizer="sgd")
    with pytest.raises(ValueError, match="scalar loss"):
        torch_tos.profile(m, torch.randn(1, 2), mode="training", loss_fn=nn.MSELoss(reduction="none"),
                          target=torch.randn(1, 2))


# -- exact backward / loss / optimizer counts --------------------------------------------------

def test_ffn_training_step_by_hand():
    w, B = 5, 4
    model = ffn(w)
    x, y = torch.randn(B, 4), torch.randn(B, 1)
    P = sum(p.numel() for p in model.parameters())
    r = _train(model, x, y, opt=torch.optim.SGD(model.parameters(), lr=0.1))
    rows = {(d["layer"], d["phase"]): BOs(*(d[k] for k in ("add", "sub", "mul", "div", "root")))
            for d in r.rows()}

    def linear_bw(I, O, first):
        # dW = dYᵀX: O·I outputs of B products; db = Σ_batch dY: O·(B-1) adds;
        # dX = dY·W: B·I outputs of O products (not needed for the first layer)
        b = BOs(add=O * I * (B - 1), mul=O * I * B) + BOs(add=O * (B - 1))
        if not first:
            b += BOs(add=B * I * (O - 1), mul=B * I * O)
        return b

    assert rows[("0", "backward")] == linear_bw(4, w, True)
    assert rows[("2", "backward")] == linear_bw(w, w, False)
    assert rows[("6", "backward")] == linear_bw(w, 1, False)
    # sigmoid_backward g·y·(1-y): 1 sub, 2 mul per element
    assert rows[("1", "backward")] == BOs(sub=1, mul=2) * (B * w)
    # MSE over n = B: forward [n-1, n, n, 1, 0]; backward 2(x-t)·g/n: [0, n, 2n, 1, 0]
    assert rows[("(loss)", "loss")] == BOs(B - 1, B, B, 1, 0)
    assert rows[("(loss)", "backward")] == BOs(0, B, 2 * B, 1, 0)
    # SGD without momentum: p.add_(g, alpha=-lr): 1 add + 1 mul per parameter element
    assert rows[("(optimizer)", "optimizer")] == BOs(add=P, mul=P)
    assert r.by_phase()["forward"].bos == sum((BOs((i + 1) * o, o, i * o, o, o) * B
                                               for i, o in ((4, w), (w, w), (w, w))), BOs()) \
        + BOs(add=w * 1, mul=w) * B


def test_adam_single_tensor_step_by_hand():
    model = nn.Linear(3, 2)
    P, T = 8, 2
    opt = torch.optim.Adam(model.parameters(), foreach=False)
    r = _train(model, torch.randn(4, 3), torch.randn(4, 2), opt=opt)
    # per element: lerp_ [1,1,1], mul_ [mul], addcmul_ (value≠1) [1 add, 2 mul], sqrt [root],
    # div [div], add_(eps) [add], addcdiv_ (value≠1) [add, div, mul]; per tensor: step += 1
    assert r.by_phase()["optimizer"].bos == BOs(4, 1, 5, 2, 1) * P + BOs(add=T)


def test_sgd_momentum_with_existing_state():
    model = nn.Linear(3, 2)
    P = 8
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3)).sum().backward()
    opt.step()  # creates the momentum buffers
    r = _train(model, torch.randn(4, 3), torch.randn(4, 2), opt=opt)
    # buf.mul_(μ) [mul], buf.add_(g) [add], p.add_(buf, alpha=-lr) [add, mul]
    assert r.by_phase()["optimizer"].bos == BOs(add=2 * P, mul=2 * P)


def test_backward_attributed_to_layers():
    model = torchvision.models.resnet18()
    r = torch_tos.profile(model, torch.randn(2, 3, 32, 32), mode="training", device="meta")
    df = r.to_dataframe()
    bw = df[df.phase == "backward"]
    layers = set(bw.layer)
    assert {"conv1", "bn1", "layer1.0.conv1", "layer4.1.bn2", "fc"} <= layers
    conv = bw[bw.layer == "layer1.0.conv2"].iloc[0]
    # grad_input and grad_weight of a 64→64 3×3 conv on 8×8 maps, batch 2: 2× the forward products
    products = 2 * 64 * 8 * 8 * 64 * 9
    assert conv["mul"] == 2 * products


# -- the FLOPs baseline --------------------------------------------------------------------------

@pytest.mark.parametrize("factory,shape", [(lambda: ffn(18), (64, 4)),
                                           (torchvision.models.resnet18, (2, 3, 64, 64))])
def test_flops_equal_flop_counter_mode(factory, shape):
    model = factory()
    x = torch.randn(shape)
    r = torch_tos.profile(model, x, mode="training", device="meta")
    meta_model = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as fc:
        meta_model(x.to("meta")).sum().backward()
    assert r.flops == fc.get_total_flops() > 0
    fwd = torch_tos.profile(model, x, device="meta")
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            meta_model(x.to("meta"))
    assert fwd.flops == fc.get_total_flops()


# -- meta vs real, repeatability ---------------------------------------------------------------

@pytest.mark.parametrize("factory,shape", [(lambda: ffn(6, nn.Tanh), (16, 4)),
                                           (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4),
                                                                  nn.GELU(), nn.MaxPool2d(2), nn.Flatten(),
                                                                  nn.Linear(64, 3)), (2, 3, 8, 8))])
def test_meta_equals_real(factory, shape):
    model = factory()
    x, y = torch.randn(shape), torch.randn(shape[0], model[-1].out_features)
    opt = torch.optim.Adam(model.parameters())
    real = _train(model, x, y, opt=opt)
    meta = _train(model, x, y, opt=opt, device="meta")
    assert real.bos == meta.bos and real.tos == meta.tos and real.flops == meta.flops
    assert real.to_dataframe().equals(meta.to_dataframe())


def test_repeated_calls_identical():
    model = torchvision.models.resnet18()
    x = torch.randn(2, 3, 32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    a = torch_tos.profile(model, x, mode="training", optimizer=opt, device="meta")
    b = torch_tos.profile(model, x, mode="training", optimizer=opt, device="meta")
    assert a == b and a.to_json() == b.to_json()


# -- dtypes ---------------------------------------------------------------------------------------

def test_dtype_override_prices_every_op():
    model, x = ffn(18), torch.randn(1, 4)
    r32 = torch_tos.profile(model, x)
    r16 = torch_tos.profile(model, x, dtype="float16")
    assert r16.bos == r32.bos
    assert r16.tos == torch_tos.tos(r16.bos, torch.float16)
    assert set(r16.to_dataframe().dtype) == {"float16"}
    assert r16.metadata["dtype_override"] == "float16"


def test_ops_priced_in_their_own_dtype():
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid()).double()
    r = torch_tos.profile(model, torch.randn(2, 4, dtype=torch.float64))
    assert set(r.to_dataframe().dtype) == {"float64"}
    assert r.tos == torch_tos.tos(r.bos, torch.float64)


def test_autocast_mixed_precision_priced_per_op():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = torch_tos.profile(model, torch.randn(2, 4), mode="validation", loss_fn=nn.MSELoss(),
                              target=torch.randn(2, 3))
    df = r.to_dataframe().set_index("layer")
    assert df.loc["0", "dtype"] == "bfloat16"       # linear runs in bf16 under autocast
    assert df.loc["1", "dtype"] == "bfloat16"       # so does the ReLU on its output
    assert df.loc["(loss)", "dtype"] == "float32"   # mse_loss is autocast to fp32 on CPU
    expected = sum(torch_tos.tos(BOs(*row[["add", "sub", "mul", "div", "root"]]), row["dtype"])
                   for _, row in df.iterrows())
    assert r.tos == pytest.approx(expected, rel=1e-15)


# -- never touch the user's model ----------------------------------------------------------------

def _snapshot(model, opt):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        [(dict(m._forward_hooks), dict(m._forward_pre_hooks), dict(m._backward_hooks),
          sorted(vars(m).keys()), m.training) for m in model.modules()],
        copy.deepcopy(opt.state_dict()),
    )


def _same(a, b):
    sa, ga, ha, oa = a
    sb, gb, hb, ob = b
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(ga, gb))
    assert ha == hb
    assert str(oa) == str(ob)


def test_model_untouched_after_training_profile():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    before = _snapshot(model, opt)
    torch_tos.profile(model, torch.randn(2, 3, 6, 6), mode="training", optimizer=opt)
    torch_tos.profile(model, torch.randn(2, 3, 6, 6), mode="training", optimizer=opt, device="meta")
    _same(before, _snapshot(model, opt))


def test_model_untouched_when_forward_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)
            self.bn = nn.BatchNorm1d(2)

        def forward(self, x):
            x = self.bn(self.lin(x))
            raise RuntimeError("boom")

    model = Boom()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = _snapshot(model, opt)
    with pytest.raises(RuntimeError, match="boom"):
        torch_tos.profile(model, torch.randn(3, 2), mode="training", optimizer=opt)
    _same(before, _snapshot(model, opt))
    # and the model still profiles cleanly afterwards (no stale hooks)
    assert torch_tos.profile(model.lin, torch.randn(3, 2)).bos == BOs(add=12, mul=12)


def test_unsupported_ops_are_reported_not_silently_zero():
    from torch_tos.rules import registry

    op = torch.ops.aten.sigmoid
    rule = registry.RULES.pop(op)
    try:
        with pytest.warns(UserWarning, match="aten.sigmoid"):
            r = torch_tos.profile(nn.Sigmoid(), torch.randn(3))
    finally:
        registry.RULES[op] = rule
    assert [(u.op, u.layer, u.phase, u.calls) for u in r.unsupported] == [("aten.sigmoid", "", "forward", 1)]
    assert "unsupported ops" in str(r)


def test_report_exports():
    r = _train(ffn(4), torch.randn(8, 4), torch.randn(8, 1))
    df = r.to_dataframe()
    assert list(df.columns) == ["layer", "type", "phase", "dtype", "add", "sub", "mul", "div", "root",
                                "tos", "flops"]
    assert df.tos.sum() == pytest.approx(r.tos, rel=1e-12)
    assert int(df.flops.sum()) == r.flops
    assert BOs(*(int(df[c].sum()) for c in ("add", "sub", "mul", "div", "root"))) == r.bos
    import json
    data = json.loads(r.to_json())
    assert data["total"]["tos"] == r.tos
    assert data["metadata"]["transistor_table"]["full_adder"] == 10
    text = str(r)
    assert "Linear" in text and "backward" in text and "Totals" in text
    assert r.bos["add"] == r.bos.add
    assert r.by_module()[""] == r.bos - r.by_module(phases=None).get("(loss)", BOs())


def test_depth_folds_submodules():
    r = torch_tos.profile(torchvision.models.resnet18(), torch.randn(2, 3, 32, 32), mode="training",
                          device="meta")
    shallow = r.to_dataframe(depth=1)
    assert set(shallow.layer) == {"", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3",
                                  "layer4", "avgpool", "fc", "(loss)"}
    assert shallow.tos.sum() == pytest.approx(r.tos, rel=1e-12)
    assert BOs(*(int(shallow[c].sum()) for c in ("add", "sub", "mul", "div", "root"))) == r.bos
    fwd = shallow[(shallow.layer == "layer1") & (shallow.phase == "forward")]
    assert int(fwd["mul"].sum()) == r.by_module(phases=("forward",))["layer1"].mul
    assert "layer1.0.conv1" not in r.table(depth=1) and "layer1.0.conv1" in r.table(depth=None)


def test_engine_as_a_plain_context_manager():
    w = torch.randn(4, 3, requires_grad=True)
    with torch_tos.Engine() as engine:
        y = torch.sigmoid(torch.randn(2, 4) @ w)
        y.sum().backward()
    r = engine.report()
    phases = r.by_phase()
    # forward: mm 2×3 outputs of 4 products, sigmoid on 6, sum of 6
    assert phases["forward"].bos == BOs(add=6 * 3, mul=6 * 4) + BOs(1, 1, 0, 1, 1) * 6 + BOs(add=5)
    assert set(r.to_dataframe().layer) == {""}
    assert engine.bos_by_op(phases=("forward",))["aten.mm"] == BOs(add=18, mul=24)
    # backward: sigmoid_backward on 6, dW = xᵀ·g: 4×3 outputs of 2 products
    assert phases["backward"].bos == BOs(sub=6, mul=12) + BOs(add=12, mul=24)
