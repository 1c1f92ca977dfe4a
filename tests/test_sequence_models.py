"""Sequence models (issue 5, item 1): transformers, attention, recurrent layers, embeddings and the
optimizers, profiled for one training step — zero unsupported ops on meta and on a real CPU run,
FLOPs equal to FlopCounterMode's on the same step, and meta counts equal to real-tensor counts.

On meta, SDPA takes the kernel the CPU would (see torch_tos.rules.attention); the LSTM's CPU kernel
(oneDNN) computes gradients autograd of the decomposed LSTM on meta skips, so for the LSTM only the
forward is compared. Shapes are tiny: the whole meta list must stay fast.
"""

from __future__ import annotations

import time
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_tos
from torch_tos.copying import working_copy
from torch_tos.flops import flop_counter

E, HEADS, FF, SEQ, BATCH, VOCAB, CLASSES = 16, 4, 32, 6, 2, 20, 5


class SDPA(nn.Module):
    """q, k, v projections + F.scaled_dot_product_attention (B, H, L, d)."""

    def __init__(self, mask=None, **kw):
        super().__init__()
        self.qkv = nn.Linear(E, 3 * E)
        self.mask, self.kw = mask, kw

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, HEADS, E // HEADS).permute(2, 0, 3, 1, 4)
        mask = None
        if self.mask == "bool":
            mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        elif self.mask == "float":
            mask = torch.zeros(n, n, device=x.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **self.kw).transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """need_weights=False (as in ViT) runs SDPA; need_weights=True the explicit softmax(QKᵀ)·V."""

    def __init__(self, need_weights=False, **kw):
        super().__init__()
        self.mha, self.need_weights = nn.MultiheadAttention(E, HEADS, **kw), need_weights

    def forward(self, x):
        return self.mha(x, x, x, need_weights=self.need_weights)[0]


class CrossAttention(nn.Module):
    """Encoder-decoder attention with kdim = vdim ≠ embed_dim and a key padding mask."""

    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(E, HEADS, kdim=8, vdim=8, batch_first=True)

    def forward(self, x, mem):
        pad = torch.zeros(mem.shape[0], mem.shape[1], dtype=torch.bool, device=mem.device)
        return self.mha(x, mem, mem, key_padding_mask=pad)[0]


class Decoder(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, HEADS, FF, **kw), 2)

    def forward(self, tgt, mem):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[0], device=tgt.device)
        # tgt_is_causal: PyTorch otherwise inspects the mask's values (impossible on meta)
        return self.dec(tgt, mem, tgt_mask=mask, tgt_is_causal=True)


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        with warnings.catch_warnings():  # nn.Transformer's encoder warns about nested tensors
            warnings.simplefilter("ignore")
            self.t = nn.Transformer(E, HEADS, 1, 1, FF)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[0], device=tgt.device)
        return self.t(src, tgt, tgt_mask=mask, tgt_is_causal=True)


class RNNClassifier(nn.Module):
    def __init__(self, rnn, out_features):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(out_features, CLASSES)

    def forward(self, x):
        y = self.rnn(x)[0]
        return self.head(y[:, -1] if self.rnn.batch_first else y[-1])


class TokenClassifier(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.emb, self.head = nn.Embedding(VOCAB, E, **kw), nn.Linear(E, CLASSES)

    def forward(self, idx):
        return self.head(self.emb(idx).mean(1))


class BagClassifier(nn.Module):
    def __init__(self, mode, psw=False):
        super().__init__()
        self.bag, self.head, self.psw = nn.EmbeddingBag(VOCAB, E, mode=mode), nn.Linear(E, CLASSES), psw

    def forward(self, idx):
        w = torch.ones(idx.shape, device=idx.device) if self.psw else None
        return self.head(self.bag(idx, per_sample_weights=w))


class TinyLM(nn.Module):
    """Embedding → causal TransformerEncoder (pre-norm, GELU) → vocabulary logits."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, E)
        layer = nn.TransformerEncoderLayer(E, HEADS, FF, batch_first=True, norm_first=True, activation="gelu")
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(E, VOCAB)

    def forward(self, idx):
        mask = nn.Transformer.generate_square_subsequent_mask(idx.shape[1], device=idx.device)
        return self.head(self.enc(self.emb(idx), mask=mask, is_causal=True)).flatten(0, 1)


def seq_first():
    return torch.randn(SEQ, BATCH, E)


def batch_first():
    return torch.randn(BATCH, SEQ, E)


def tokens():
    return torch.randint(0, VOCAB, (BATCH, SEQ))


def labels(n=BATCH):
    return torch.randint(0, CLASSES, (n,))


MSE, CE = nn.MSELoss(), nn.CrossEntropyLoss()

# name → (model factory, inputs factory, loss, target factory or None = zeros like the output)
CASES = {
    "transformer_encoder": (lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(E, HEADS, FF), 2,
                                                          enable_nested_tensor=False),
                            seq_first, MSE, None),
    "transformer_encoder_norm_first": (
        lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(E, HEADS, FF, norm_first=True,
                                                                 batch_first=True), 2,
                                      enable_nested_tensor=False), batch_first, MSE, None),
    "transformer_decoder": (lambda: Decoder(), lambda: (seq_first(), seq_first()), MSE, None),
    "transformer_decoder_norm_first": (lambda: Decoder(norm_first=True), lambda: (seq_first(), seq_first()),
                                       MSE, None),
    "transformer": (lambda: Seq2Seq(), lambda: (seq_first(), seq_first()), MSE, None),
    "multihead_attention": (lambda: SelfAttention(), seq_first, MSE, None),
    "multihead_attention_weights": (lambda: SelfAttention(need_weights=True), seq_first, MSE, None),
    "multihead_attention_batch_first_dropout": (lambda: SelfAttention(batch_first=True, dropout=0.1),
                                                batch_first, MSE, None),
    "multihead_attention_cross": (lambda: CrossAttention(),
                                  lambda: (batch_first(), torch.randn(BATCH, SEQ + 2, 8)), MSE, None),
    "sdpa": (lambda: SDPA(), batch_first, MSE, None),
    "sdpa_causal": (lambda: SDPA(is_causal=True), batch_first, MSE, None),
    "sdpa_bool_mask": (lambda: SDPA(mask="bool"), batch_first, MSE, None),
    "sdpa_float_mask": (lambda: SDPA(mask="float"), batch_first, MSE, None),
    "sdpa_dropout": (lambda: SDPA(dropout_p=0.2), batch_first, MSE, None),
    "lstm": (lambda: RNNClassifier(nn.LSTM(E, 8, num_layers=2, bidirectional=True, batch_first=True), 16),
             batch_first, CE, labels),
    "gru": (lambda: RNNClassifier(nn.GRU(E, 8, num_layers=2, bidirectional=True), 16), seq_first, CE, labels),
    "rnn_tanh": (lambda: RNNClassifier(nn.RNN(E, 8, num_layers=2, bidirectional=True, batch_first=True), 16),
                 batch_first, CE, labels),
    "rnn_relu": (lambda: RNNClassifier(nn.RNN(E, 8, nonlinearity="relu"), 8), seq_first, CE, labels),
    "embedding": (lambda: TokenClassifier(padding_idx=0), tokens, CE, labels),
    "embedding_max_norm": (lambda: TokenClassifier(max_norm=1.0), tokens, CE, labels),
    "embedding_bag_sum": (lambda: BagClassifier("sum"), tokens, CE, labels),
    "embedding_bag_mean": (lambda: BagClassifier("mean"), tokens, CE, labels),
    "embedding_bag_max": (lambda: BagClassifier("max"), tokens, CE, labels),
    "embedding_bag_weighted": (lambda: BagClassifier("sum", psw=True), tokens, CE, labels),
    "tiny_lm": (lambda: TinyLM(), tokens, CE, lambda: torch.randint(0, VOCAB, (BATCH * SEQ,))),
}
#: models whose real CPU kernel computes more in backward than meta's decomposition (see module doc)
FORWARD_ONLY_EQUAL = {"lstm"}


def build(name, seed=0):
    torch.manual_seed(seed)
    make, inputs, loss, target = CASES[name]
    model, x = make(), inputs()
    if target is None:
        with torch.no_grad():
            y = torch.zeros_like(model(*(x if isinstance(x, tuple) else (x,))))
    else:
        y = target()
    return model, x, loss, y


def profile(name, device, optimizer=lambda p: torch.optim.Adam(p), mode="training"):
    model, x, loss, y = build(name)
    return torch_tos.profile(model, x, mode=mode, loss_fn=loss if mode != "inference" else None,
                             target=y if mode != "inference" else None,
                             optimizer=optimizer(model.parameters()) if mode == "training" else None,
                             device=device)


def flop_counter_step(name) -> int:
    """The same training step on meta under FlopCounterMode (torch_tos's mapping and kernels)."""
    model, x, loss, y = build(name)
    model, x, y = working_copy((model, x, y), "meta")
    x = x if isinstance(x, tuple) else (x,)
    opt = torch.optim.Adam(model.parameters())
    with flop_counter() as fc:
        loss(model(*x), y).backward()
        opt.step()
    return fc.get_total_flops()


@pytest.mark.parametrize("name", list(CASES))
def test_training_step_on_meta(name):
    report = profile(name, "meta")
    assert not report.unsupported, sorted({(u.op, u.phase) for u in report.unsupported})
    assert set(report.phases) == {"forward", "loss", "backward", "optimizer"}
    assert report.bos.total > 0
    assert report.flops == flop_counter_step(name)


@pytest.mark.parametrize("name", list(CASES))
def test_real_cpu_step_has_no_unsupported_ops_and_equals_meta(name):
    real, fake = profile(name, "cpu"), profile(name, "meta")
    assert not real.unsupported, sorted({(u.op, u.phase) for u in real.unsupported})
    if name in FORWARD_ONLY_EQUAL:
        real_f, fake_f = real.by_phase()["forward"], fake.by_phase()["forward"]
        assert real_f.bos == fake_f.bos and real_f.flops == fake_f.flops
    else:
        assert real.bos == fake.bos and real.flops == fake.flops


@pytest.mark.parametrize("name", list(CASES))
def test_eval_no_grad_on_cpu_has_no_unsupported_ops(name):
    """Eval + no_grad takes PyTorch's fused fast paths on CPU (_transformer_encoder_layer_fwd,
    _native_multi_head_attention): they have rules too."""
    model, x, _loss, _y = build(name)
    model.eval()
    with torch.no_grad():
        report = torch_tos.profile(model, x, mode="inference")
    assert not report.unsupported, sorted({u.op for u in report.unsupported})


OPTIMIZERS = {
    "adam": lambda p, fe: torch.optim.Adam(p, foreach=fe, amsgrad=True, weight_decay=0.1),
    "adamw": lambda p, fe: torch.optim.AdamW(p, foreach=fe),
    "rmsprop": lambda p, fe: torch.optim.RMSprop(p, foreach=fe, momentum=0.9, centered=True, weight_decay=0.1),
    "adagrad": lambda p, fe: torch.optim.Adagrad(p, foreach=fe, lr_decay=0.01, weight_decay=0.1),
    "sgd": lambda p, fe: torch.optim.SGD(p, lr=0.1, foreach=fe, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_optimizer_steps(opt, foreach):
    reports = [profile("tiny_lm", device, optimizer=lambda p: OPTIMIZERS[opt](p, foreach))
               for device in ("meta", "cpu")]
    for report in reports:
        assert not report.unsupported, report.unsupported
        assert report.by_phase()["optimizer"].bos.total > 0
    assert reports[0].bos == reports[1].bos


@pytest.mark.parametrize("opt", ["adam", "adamw", "sgd", "adagrad"])
def test_fused_optimizer_steps_on_cpu(opt):
    make = {"adam": lambda p: torch.optim.Adam(p, fused=True),
            "adamw": lambda p: torch.optim.AdamW(p, fused=True),
            "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, fused=True),
            "adagrad": lambda p: torch.optim.Adagrad(p, fused=True)}[opt]
    report = profile("tiny_lm", "cpu", optimizer=make)
    assert not report.unsupported and report.by_phase()["optimizer"].bos.total > 0


def test_meta_list_stays_fast():
    """The whole list on meta, one training step each: a few seconds on 2 cores."""
    start = time.perf_counter()
    for name in CASES:
        assert not profile(name, "meta").unsupported
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"{len(CASES)} sequence models took {elapsed:.1f} s on meta"


# -- the FLOPs gap: CPU flash attention (issue 5 item 3) -----------------------------------------

def _agree(model, x, loss, y):
    real = torch_tos.profile(model, x, mode="training", loss_fn=loss, target=y,
                             optimizer=torch.optim.Adam(model.parameters()), device="cpu")
    fake = torch_tos.profile(model, x, mode="training", loss_fn=loss, target=y,
                             optimizer=torch.optim.Adam(model.parameters()), device="meta")
    assert not real.unsupported and not fake.unsupported
    ops = set(real.by_op()["op"])
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten._scaled_dot_product_flash_attention_for_cpu_backward" in ops
    assert real.flops == fake.flops and real.bos == fake.bos
    return real


def test_multihead_attention_real_and_meta_agree():
    model, x, loss, y = build("multihead_attention")
    real = _agree(model, x, loss, y)
    # the attention's FLOPs are there: FlopCounterMode's SDPA formulas on (B·H = 2·4, L = S = 6, d = 4):
    # forward 2 bmm = 2·(2·8·6·6·4), backward 5 bmm (scores recomputed)
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    shape = (BATCH, HEADS, SEQ, E // HEADS)
    flash = real.by_op().set_index("op")["flops"]
    assert flash["aten._scaled_dot_product_flash_attention_for_cpu"] == sdpa_flop_count(shape, shape, shape)
    assert flash["aten._scaled_dot_product_flash_attention_for_cpu_backward"] == \
        sdpa_backward_flop_count(shape, shape, shape, shape)


def test_small_vit_real_and_meta_agree():
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32,
                            mlp_dim=64, num_classes=CLASSES)
    _agree(vit, torch.randn(1, 3, 32, 32), CE, labels(1))


@pytest.mark.slow
def test_vit_b_16_real_and_meta_agree():
    """vit_b_16, batch 1 at 224×224 (its fixed size): ~25 s for the real CPU step on 2 cores."""
    from torchvision.models import vit_b_16

    torch.manual_seed(0)
    _agree(vit_b_16(), torch.randn(1, 3, 224, 224), CE, labels(1).clamp(max=0))
