"""The working set of profile(): weights shared, never copied; the user's objects untouched."""

import pytest
import torch
from torch import nn

import torch_tos
from torch_tos.bos import BOs
from torch_tos.copying import working_copy
from torch_tos.workspace import Workspace


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))


def test_inference_shares_the_user_parameters_and_eval_buffers():
    model = _cnn().eval()
    ws = Workspace(model, None, torch.randn(1, 3, 6, 6), None, None, mode="inference")
    assert ws.model is not model and ws.model[0] is not model[0]
    for (n, p), (_, q) in zip(model.named_parameters(), ws.model.named_parameters()):
        assert q is p, n  # the user's own parameter objects: nothing is copied
    for b, c in zip(model.buffers(), ws.model.buffers()):
        assert c is b  # eval-mode buffers are never written: shared
    ws.close()


def test_training_aliases_share_storage_and_optimizer_is_meta():
    model = _cnn().train()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    opt.step()
    ws = Workspace(model, opt, torch.randn(2, 3, 6, 6), None, None, mode="training")
    for p, q in zip(model.parameters(), ws.model.parameters()):
        assert q is not p and q.data_ptr() == p.data_ptr()  # same storage, new autograd leaf
        assert q.grad is None
    for b, c in zip(model.buffers(), ws.model.buffers()):
        assert c.data_ptr() != b.data_ptr()  # train-mode batch norm updates its statistics: copied
    state = [v for s in ws.optimizer.state.values() for v in s.values() if v.dim() > 0]
    assert state and all(v.is_meta for v in state)  # Adam's moments are not copied either
    assert all(p.is_meta for g in ws.optimizer.param_groups for p in g["params"])
    ws.close()


def test_gradients_are_dropped_as_soon_as_accumulated():
    model = nn.Linear(3, 2)
    ws = Workspace(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.randn(4, 3), None, None,
                   mode="training")
    ws.model(ws.inputs).sum().backward()
    assert all(p.grad is None for p in ws.model.parameters())
    assert model.weight.grad is None and model.bias.grad is None
    ws.before_optimizer()
    grads = [p.grad for g in ws.optimizer.param_groups for p in g["params"]]
    assert [tuple(g.shape) for g in grads] == [(2, 3), (2,)] and all(g.is_meta for g in grads)
    ws.close()


def test_non_leaf_input_requiring_grad_keeps_its_input_gradient_work():
    lin = nn.Linear(10, 20, bias=False)
    leaf = torch.randn(4, 10, requires_grad=True)
    x = leaf.clone()  # requires grad, not a leaf
    r = torch_tos.profile(lin, x, mode="training")
    # forward mm 4x10 @ 10x20: 800 products. backward: grad_weight = g^T x (20x4 @ 4x10: 800
    # products) and grad_input = g W (4x20 @ 20x10: 800 products) -> 1,600, not 800
    assert r.by_phase()["backward"].bos.mul == 1600
    assert x.grad_fn is not None and leaf.grad is None  # the user's tensor and its graph untouched


def test_leaf_input_requiring_grad_gets_no_gradient():
    x = torch.randn(4, 10, requires_grad=True)
    torch_tos.profile(nn.Linear(10, 2), x, mode="training")
    assert x.grad is None


def test_jagged_nested_tensor_input():
    class Scale(nn.Module):
        def forward(self, x):
            return x * 2.0

    nt = torch.nested.nested_tensor([torch.randn(2, 4), torch.randn(3, 4)], layout=torch.jagged)
    copy = working_copy(nt, "meta")
    assert copy.is_nested and copy.is_meta
    r = torch_tos.profile(Scale(), nt)
    assert r.bos.mul == 20  # 2x4 + 3x4 values, one product each


def test_lr_scheduler_wrapped_optimizer_is_not_stepped():
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.optim.lr_scheduler.StepLR(opt, step_size=1)  # wraps opt.step (it calls the original)
    model(torch.randn(2, 3)).sum().backward()  # the user's gradients are waiting
    before = [p.detach().clone() for p in model.parameters()]
    r = torch_tos.profile(model, torch.randn(2, 3), mode="training", optimizer=opt)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    # p.add_(grad, alpha=-lr) on 8 elements: one mul and one add each
    assert r.by_phase()["optimizer"].bos == BOs(add=8, mul=8)


def test_embedding_max_norm_renormalises_a_copy():
    emb = nn.Embedding(5, 3, max_norm=0.1)
    with torch.no_grad():
        emb.weight.mul_(10)
    before = emb.weight.detach().clone()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        torch_tos.profile(emb, torch.tensor([0, 1, 2]))
    assert torch.equal(emb.weight, before)


def test_tied_weights_and_shared_modules_stay_tied():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(6, 4)
            self.head = nn.Linear(4, 6, bias=False)
            self.head.weight = self.emb.weight
            self.block = nn.Linear(4, 4)
            self.again = self.block

        def forward(self, x):
            return self.head(self.again(self.block(self.emb(x))))

    model = Tied()
    for mode in ("inference", "training"):
        ws = Workspace(model, None, torch.tensor([1, 2]), None, None, mode=mode)
        assert ws.model.head.weight is ws.model.emb.weight
        assert ws.model.again is ws.model.block
        ws.close()
    assert torch_tos.profile(model, torch.tensor([1, 2]), mode="training").bos == \
        torch_tos.profile(model, torch.tensor([1, 2]), mode="training", device="meta").bos


def test_lstm_flat_weights_point_at_the_aliases():
    lstm = nn.LSTM(3, 4)
    ws = Workspace(lstm, None, torch.randn(2, 1, 3), None, None, mode="training")
    assert all(any(w is p for p in ws.model.parameters()) for w in ws.model._flat_weights)
    ws.close()
    torch_tos.profile(lstm, torch.randn(2, 1, 3), mode="training")
    assert all(p.grad is None for p in lstm.parameters())


def test_shadow_hooks_and_flags_are_the_shadows_own():
    model = _cnn()
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    n_hooks = len(model._forward_hooks)
    ws = Workspace(model, None, torch.randn(1, 3, 6, 6), None, None, mode="inference")
    ws.model.eval()
    ws.model.register_forward_hook(lambda *a: None)
    ws.model(ws.inputs)
    assert calls == [1]  # the user's hook still runs, as on the model itself
    assert model.training and len(model._forward_hooks) == n_hooks
    ws.close()
