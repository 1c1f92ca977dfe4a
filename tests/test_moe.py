"""Mixture-of-experts on meta: ``aten._grouped_mm`` on meta is the CPU kernel (output sizes,
strides, dtype, input checks) while counting, in every dtype that kernel runs; its BOs rule by
hand; transformers' Mixtral and Qwen2-MoE counted on meta equal a real CPU run (the default
``grouped_mm`` experts and ``batched_mm``, inference and training, float32 and bfloat16); the
``eager`` expert loop refused on meta with the line that routes."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

import torch_tos
from test_rules_seq_helpers import B
from torch_tos.cpu_shapes import GROUPED_MM_DTYPES
from torch_tos.kernels import MetaValueError, kernel_choices
from torch_tos.rules.registry import ApproximateCountWarning

I32 = torch.int32


def _layouts(dtype):
    """(a, b, offs) on CPU for every layout the kernel takes; the transposed b gives an output
    whose rows are padded to 16 bytes."""
    r = lambda *s: torch.randn(*s).to(dtype)  # noqa: E731
    return {
        "2d x 3d": (r(10, 8), r(3, 8, 16), torch.tensor([3, 3, 10], dtype=I32)),
        "2d x 3d, b transposed, padded out": (r(10, 8), r(3, 10, 8).transpose(-2, -1),
                                              torch.tensor([3, 3, 10], dtype=I32)),
        "3d x 2d": (r(2, 3, 8), r(8, 16), torch.tensor([4, 16], dtype=I32)),
        "2d x 2d": (r(8, 16), r(16, 8), torch.tensor([4, 4, 16], dtype=I32)),
        "3d x 3d": (r(3, 4, 8), r(3, 8, 8), None),
    }


def _meta(t):
    return None if t is None else torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


@pytest.mark.parametrize("dtype", GROUPED_MM_DTYPES)
def test_meta_grouped_mm_is_the_cpu_kernel_in_every_dtype_it_runs(dtype):
    for name, (a, b, offs) in _layouts(dtype).items():
        cpu = torch._grouped_mm(a, b, offs)
        with kernel_choices():
            meta = torch._grouped_mm(_meta(a), _meta(b), _meta(offs))
        assert (meta.device.type, meta.shape, meta.stride(), meta.dtype) == \
            ("meta", cpu.shape, cpu.stride(), cpu.dtype), name
    padded = torch._grouped_mm(*_layouts(dtype)["2d x 3d, b transposed, padded out"])
    assert padded.stride(0) == (12 if dtype == torch.float32 else 16)  # 10 columns, 16-byte rows


def test_meta_grouped_mm_refuses_what_the_cpu_refuses_with_its_message():
    a, b, offs = torch.randn(10, 8), torch.randn(3, 8, 12), torch.tensor([3, 3, 10], dtype=I32)
    bad = {"float64": (a.double(), b.double(), offs), "int64 offsets": (a, b, offs.long()),
           "unaligned rows": (a, torch.randn(3, 8, 10), offs), "bias": (a, b, offs, torch.randn(12)),
           "3d x 3d with offsets": (torch.randn(3, 4, 8), torch.randn(3, 8, 8), offs),
           "2d without offsets": (a, b)}
    for name, args in bad.items():
        with pytest.raises(RuntimeError) as cpu:
            torch._grouped_mm(*args)
        with kernel_choices(), pytest.raises(RuntimeError) as meta:
            torch._grouped_mm(*[_meta(t) for t in args])
        assert str(meta.value) == str(cpu.value), name


def test_outside_counting_and_in_other_threads_meta_keeps_pytorchs_kernel():
    a, b = torch.empty(10, 8, device="meta"), torch.empty(3, 8, 16, device="meta")
    offs = torch.empty(3, dtype=I32, device="meta")
    with pytest.raises(RuntimeError, match="(?i)bf(loat)?16") as refused:  # PyTorch's meta kernel
        torch._grouped_mm(a, b, offs)
    stock = str(refused.value)
    seen = {}

    def other():
        try:
            torch._grouped_mm(a, b, offs)
        except RuntimeError as e:
            seen["other"] = str(e)

    with kernel_choices():
        assert torch._grouped_mm(a, b, offs).shape == (10, 16)
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["other"] == stock
    with pytest.raises(RuntimeError) as again:  # the fragment is gone with the last context
        torch._grouped_mm(a, b, offs)
    assert str(again.value) == stock


def _bos(fn, *args):
    with torch_tos.Engine() as engine:
        fn(*args)
    return {op: B(*b) for op, b in engine.bos_by_op().items()}["aten._grouped_mm"]


def test_weight_gradient_layout_by_hand_empty_groups_cost_nothing():
    # a [2, 12] × b [12, 4], offsets (4, 4, 12) along K: groups of 4, 0, 8 terms; out [3, 2, 4].
    # Each group's 2·4 = 8 outputs: K_g mul, K_g − 1 add; the empty group is zero-filled:
    # mul 8·(4 + 8) = 96, add 8·(3 + 7) = 80
    a, b = torch.randn(2, 12), torch.randn(12, 4)
    assert _bos(torch._grouped_mm, a, b, torch.tensor([4, 4, 12], dtype=I32)) == B(add=80, mul=96)
    # on meta the offsets are unknown: every group non-empty, the depth covered: add 8·(12 − 3)
    with pytest.warns(ApproximateCountWarning, match="every group is non-empty"):
        got = _bos(torch._grouped_mm, _meta(a), _meta(b), torch.empty(3, dtype=I32, device="meta"))
    assert got == B(add=72, mul=96)
    # more groups than terms: at most 4 non-empty groups of a depth of 4 → no adds at all
    with pytest.warns(ApproximateCountWarning):
        got = _bos(torch._grouped_mm, torch.empty(3, 4, device="meta"),
                   torch.empty(4, 4, device="meta"), torch.empty(5, dtype=I32, device="meta"))
    assert got == B(add=0, mul=12 * 4)


def test_column_groups_layout_by_hand():
    # a [2, 3, 8] × b [8, 16], offsets (4, 6) along N: the first 6 columns, 3·6 = 18 dots of 8
    got = _bos(torch._grouped_mm, torch.randn(2, 3, 8), torch.randn(8, 16), torch.tensor([4, 6], dtype=I32))
    assert got == B(add=18 * 7, mul=18 * 8)


# -- transformers' MoE decoders ------------------------------------------------------------------

MOE = {
    "mixtral": dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=100, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                      shared_expert_intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                      vocab_size=100, num_experts=4, num_experts_per_tok=2),
}


def _costed(report, meta=False):
    """Rows that cost something (see tests/test_hf.py: zero-cost bookkeeping may differ). On meta,
    transformers' grouped experts take their accelerator branch for the tokens-per-expert
    histogram (``histc`` of the int expert ids, as on CUDA; the CPU branch casts them to float):
    the ``cumsum`` of the counts then runs in int32 where the CPU runs it in float32 — the same
    BOs, priced in the other dtype (docs/deepspeed-moe.md). ``meta=True`` books that row as the
    CPU does."""
    rows = {}
    for (layer, phase, dtype, op), row in report.counts.rows.items():
        if any(row[:5]) or row[6]:
            if meta and op == "aten.cumsum" and layer.endswith(".experts") and dtype == torch.int32:
                dtype = torch.float32
            rows[layer, phase, dtype, op] = row
    return rows


def _count(model_type, device, mode, experts=None, dtype=None):
    from torch_tos.integrations.transformers import build_from_config, hf_loss

    torch.manual_seed(0)  # the same router weights on both devices: every expert receives tokens
    model, make_inputs = build_from_config(model_type, MOE[model_type], device, dtype=dtype)
    if experts is not None:
        model.set_experts_implementation(experts)
    training = mode == "training"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ApproximateCountWarning)
        return model, torch_tos.profile(model, make_inputs(batch_size=2, seq_len=16, labels=training),
                                        mode=mode, loss_fn=hf_loss if training else None)


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("model_type", sorted(MOE))
def test_moe_decoder_on_meta_equals_a_real_run(model_type, mode):
    pytest.importorskip("transformers")
    model, meta = _count(model_type, "meta", mode)
    assert model.config._experts_implementation == "grouped_mm"  # transformers' default
    _, cpu = _count(model_type, "cpu", mode)
    assert meta.tos > 0 and not meta.unsupported
    assert meta.by_op().set_index("op").loc["aten._grouped_mm", "mul"] > 0
    assert _costed(meta, meta=True) == _costed(cpu)  # op by op: BOs, calls, FLOPs, bytes
    assert meta.bos == cpu.bos and meta.flops == cpu.flops
    assert abs(meta.tos - cpu.tos) < 1e-7 * cpu.tos  # the int32 cumsum's few adds


@pytest.mark.parametrize("model_type,experts,dtype", [("mixtral", "batched_mm", None),
                                                      ("qwen2_moe", None, torch.bfloat16)])
def test_moe_other_experts_path_and_bfloat16_on_meta_equal_a_real_run(model_type, experts, dtype):
    pytest.importorskip("transformers")
    _, meta = _count(model_type, "meta", "training", experts, dtype)
    _, cpu = _count(model_type, "cpu", "training", experts, dtype)
    assert not meta.unsupported and _costed(meta, meta=True) == _costed(cpu)
    assert meta.bos == cpu.bos and meta.flops == cpu.flops
    assert {k[2] for k in _costed(meta)} >= ({dtype} if dtype else {torch.float32})


def test_eager_expert_loop_on_meta_names_the_routing_line():
    pytest.importorskip("transformers")
    with pytest.raises(MetaValueError, match=r"modeling_mixtral\.py:\d+ takes the non-zero positions"):
        _count("mixtral", "meta", "inference", "eager")
