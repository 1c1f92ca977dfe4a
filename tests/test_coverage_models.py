"""Coverage: real models whose ops used to run without a rule (counted as zero) now count with no
unsupported op — torchvision detection (training with targets, inference), a Hugging Face MoE
decoder on its default grouped-GEMM path, wav2vec2-style weight norm + CTC, a quantized torchvision
model, an FFT model. Built from configs, no weights; tiny real tensors where the ops need values
(detection, MoE routing), meta where the model allows."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

import torch_tos


def engine_run(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch_tos.Engine() as engine:
            fn()
    assert not engine.unsupported, sorted({k[0] for k in engine.unsupported})
    return engine, engine.bos_by_op()


@pytest.mark.parametrize("training", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_torchvision_detection(training):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = tv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64)
    images = [torch.rand(3, 64, 64)]
    targets = [{"boxes": torch.tensor([[8.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])}]
    if training:
        model.train()
        engine, ops = engine_run(lambda: sum(model(images, targets).values()).backward())
        assert ops["torchvision._roi_align_backward"].mul > 0
    else:
        model.eval()
        with torch.no_grad():
            engine, ops = engine_run(lambda: model(images))
    assert ops["torchvision.nms"].sub > 0 and ops["torchvision.roi_align"].mul > 0
    assert engine.report().tos > 0


def test_hugging_face_moe_decoder_grouped_mm():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.MixtralConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     num_key_value_heads=1, num_local_experts=4,
                                     num_experts_per_tok=2, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(cfg)
    ids = torch.randint(0, 64, (1, 8))
    _, ops = engine_run(lambda: model(ids).logits.sum().backward())
    # 8 tokens × top-2 = 16 routed rows; the gate-up projection [16, 16] × [4, 16, 64] alone is
    # 16·64 dots of 16 (mul 16,384): the expert matmuls are counted, not zero
    assert ops["aten._grouped_mm"].mul >= 16 * 64 * 16


def test_wav2vec2_weight_norm_and_ctc():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Wav2Vec2Config(
        vocab_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2),
        num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, do_stable_layer_norm=False,
        mask_time_prob=0.0, ctc_loss_reduction="mean")
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(cfg).train()
    audio, labels = torch.randn(1, 400), torch.tensor([[1, 2, 2, 3]])
    _, ops = engine_run(lambda: model(audio, labels=labels).loss.backward())
    for op in ("aten._weight_norm_interface", "aten._weight_norm_interface_backward",
               "aten._ctc_loss", "aten._ctc_loss_backward"):
        assert ops[op].add > 0, op


@pytest.mark.slow
def test_quantized_torchvision_model():
    tv = pytest.importorskip("torchvision")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = tv.models.quantization.mobilenet_v3_large(weights=None, quantize=True).eval()
        with torch.no_grad():
            report = torch_tos.profile(model, (torch.randn(1, 3, 32, 32),), mode="inference")
    assert not report.unsupported
    text = str(report)                                     # rendering must not raise
    assert report.tos > 0 and report.by_phase()["forward"].tos == report.tos and text
    priced = {(op, str(dtype)) for (_l, _p, dtype, op), row in report.counts.rows.items() if any(row[:5])}
    assert ("quantized.conv2d", "torch.quint8") in priced and ("aten.quantize_per_tensor", "torch.float32") in priced


class SpectralConv(nn.Module):
    """A Fourier layer (FNO-style): rfft, a learned complex mode mix, irfft."""

    def __init__(self, channels=4, modes=5):
        super().__init__()
        self.modes = modes
        self.weight = nn.Parameter(torch.randn(channels, channels, modes, dtype=torch.cfloat) * 0.1)

    def forward(self, x):
        xf = torch.fft.rfft(x)
        out = torch.einsum("bim,iom->bom", xf[..., :self.modes], self.weight)
        return torch.fft.irfft(out, n=x.shape[-1]) + x


def test_fft_model_meta_equals_cpu():
    torch.manual_seed(0)
    model = nn.Sequential(SpectralConv(), nn.GELU(), SpectralConv())
    x = torch.randn(2, 4, 16)
    reports = {d: torch_tos.profile(model, (x,), mode="training", device=d,
                                    loss_fn=lambda y: y.pow(2).mean()) for d in ("cpu", "meta")}
    assert not reports["cpu"].unsupported
    assert reports["meta"].bos == reports["cpu"].bos and reports["meta"].tos == reports["cpu"].tos
    ops = {op for (_l, _p, _d, op) in reports["cpu"].counts.rows}
    assert {"aten._fft_r2c", "aten._fft_c2r"} <= ops
