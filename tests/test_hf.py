"""Hugging Face transformers on meta: counts equal a real small-config run; the adaptation's scope."""

import json
import threading

import pytest
import torch

import torch_tos

pytest.importorskip("transformers")

from torch_tos.integrations import hf_meta  # noqa: E402
from torch_tos.integrations.transformers import build_from_config, hf_loss, load_config  # noqa: E402

GQA = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=100, use_cache=False)
CONFIGS = {
    "gpt2": dict(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=64, pad_token_id=0),
    "llama": GQA,
    "mistral": GQA,
    "qwen2": GQA,
    "bert": dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                 vocab_size=100),
    "t5": dict(num_layers=2, d_model=32, d_ff=64, num_heads=2, d_kv=16, vocab_size=100),
    "vit": dict(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                image_size=32, patch_size=8),
    "whisper": dict(encoder_layers=1, decoder_layers=1, d_model=32, encoder_ffn_dim=64,
                    decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
                    max_source_positions=16, max_target_positions=32, num_mel_bins=8),
}


def _costed(report):
    """Rows that cost something (BOs or FLOPs). Zero-cost bookkeeping rows may differ between meta
    and CPU in PyTorch itself (``t[..., 0] = 0`` is lift_fresh + fill_ on CPU, scalar_tensor +
    expand + copy_ on meta)."""
    return {k: row for k, row in report.counts.rows.items() if any(row[:5]) or row[6]}


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_training_on_meta_equals_a_real_run(model_type):
    reports = {}
    for device in ("meta", "cpu"):
        model, make_inputs = build_from_config(model_type, CONFIGS[model_type], device)
        reports[device] = torch_tos.profile(model, make_inputs(batch_size=2, seq_len=8),
                                            mode="training", loss_fn=hf_loss)
    meta, cpu = reports["meta"], reports["cpu"]
    assert meta.tos > 0 and not meta.unsupported
    assert _costed(meta) == _costed(cpu)  # op by op: BOs, calls, FLOPs, bytes of every costed op
    assert meta.tos_exact == cpu.tos_exact and meta.flops == cpu.flops
    assert next(model.parameters()).device.type == "cpu"


def test_llama_without_cache_fails_on_meta_without_the_adaptation_and_counts_the_check():
    model, make_inputs = build_from_config("llama", GQA, "meta")
    with pytest.raises(RuntimeError, match="meta tensors"):
        model(**make_inputs(batch_size=1, seq_len=4))  # plain PyTorch: transformers' own failure
    report = torch_tos.profile(model, make_inputs(batch_size=1, seq_len=4), mode="training", loss_fn=hf_loss)
    # the packed-sequence check reads one value, as on CPU: one _local_scalar_dense under "model"
    assert report.counts.rows[("model", "forward", torch.bool, "aten._local_scalar_dense")][5] == 1


def test_adaptation_only_inside_an_engine_and_only_in_its_thread():
    from transformers import masking_utils

    ids = torch.arange(4, device="meta").unsqueeze(0)
    assert not hf_meta.installed()
    with pytest.raises(RuntimeError, match="meta tensors"):
        masking_utils.find_packed_sequence_indices(ids)
    seen = {}

    def other():
        try:
            masking_utils.find_packed_sequence_indices(ids)
            seen["other"] = "no error"
        except RuntimeError as e:
            seen["other"] = str(e)

    with torch_tos.Engine():
        assert hf_meta.installed()
        assert masking_utils.find_packed_sequence_indices(ids) is None  # no packed sequences
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert "meta tensors" in seen["other"]  # another thread sees transformers unchanged
    assert not hf_meta.installed() and "__bool__" not in torch.Tensor.__dict__


def test_a_data_dependent_check_elsewhere_names_its_line():
    model, make_inputs = build_from_config(
        "wav2vec2", dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                         conv_dim=(8, 8), conv_stride=(5, 2), conv_kernel=(10, 3),
                         num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, vocab_size=20), "meta")
    with pytest.raises(hf_meta.MetaValueError, match=r"modeling_wav2vec2\.py:\d+ needs the value"):
        torch_tos.profile(model, make_inputs(batch_size=1, seq_len=400), mode="training", loss_fn=hf_loss)


def test_load_config_from_a_file_with_overrides(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                                "num_hidden_layers": 8}))
    config = load_config(path, ["num_hidden_layers=2", "use_cache=false"])
    assert (config.hidden_size, config.num_hidden_layers, config.use_cache) == (64, 2, False)
    assert load_config(tmp_path, {"num_hidden_layers": 3}).num_hidden_layers == 3
    with pytest.raises(ValueError, match="neither a config.json"):
        load_config("not-a-model-type")
    with pytest.raises(ValueError, match="not key=value"):
        load_config("llama", ["num_hidden_layers"])


def test_make_inputs_do_not_use_the_global_rng():
    _, make_inputs = build_from_config("bert", CONFIGS["bert"], "cpu")
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    a = make_inputs(batch_size=2, seq_len=5)
    assert torch.equal(torch.rand(2), expected)
    assert a["input_ids"].shape == (2, 5) and torch.equal(a["labels"], a["input_ids"])
