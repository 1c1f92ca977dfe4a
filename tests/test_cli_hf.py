"""`torch-tos profile --hf-config/--hf-model-type`: Hugging Face models built from a config (no
network, weights on meta by default), inputs from --batch-size/--seq-len, the model's own loss."""

import json

import pytest

pytest.importorskip("transformers")

import torch_tos  # noqa: E402
from torch_tos.cli import main  # noqa: E402

try:  # what the CLI builds with: the integration, or its own causal-LM builder without it
    from torch_tos.integrations.transformers import build_from_config, hf_loss
except ImportError:
    from torch_tos.cli.hf import _causal_lm as build_from_config, _output_loss as hf_loss

LLAMA = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}


def _json(argv, capsys):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_config_file_training_equals_the_python_api(tmp_path, capsys):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(LLAMA))
    data = _json(["profile", "--hf-config", str(cfg), "--batch-size", "2", "--seq-len", "8", "--mode",
                  "training", "--format", "json"], capsys)
    model, make_inputs = build_from_config(str(cfg), [], "meta")
    report = torch_tos.profile(model, make_inputs(batch_size=2, seq_len=8, labels=True), mode="training",
                               loss_fn=hf_loss)
    assert data["total"]["bos"] == report.bos.to_dict() and data["total"]["flops"] == report.flops
    assert data["metadata"]["device"] == "meta" and data["metadata"]["model"] == "LlamaForCausalLM"
    # the folder holding config.json works the same
    assert _json(["profile", "--hf-config", str(tmp_path), "--batch-size", "2", "--seq-len", "8", "--mode",
                  "training", "--format", "json"], capsys)["total"] == data["total"]


def test_model_type_with_overrides(capsys):
    overrides = "n_layer=1,n_embd=32,n_head=2,vocab_size=50"
    small = _json(["profile", "--hf-model-type", "gpt2", "--hf-override", overrides, "--seq-len", "4",
                   "--format", "json"], capsys)
    longer = _json(["profile", "--hf-model-type", "gpt2", "--hf-override", overrides, "--seq-len", "8",
                    "--format", "json"], capsys)
    # twice the tokens: at least twice the work (attention grows faster than linearly)
    assert longer["total"]["bos"]["mul"] >= 2 * small["total"]["bos"]["mul"] > 0
    two = _json(["profile", "--hf-model-type", "gpt2", "--hf-override", "n_layer=2", "--hf-override",
                 "n_embd=32,n_head=2,vocab_size=50", "--seq-len", "4", "--format", "json"], capsys)
    assert two["total"]["bos"]["mul"] > small["total"]["bos"]["mul"]


@pytest.mark.parametrize("argv,message", [
    (["--hf-model-type", "nosuchmodel"], "is neither a config.json (file or folder) nor a transformers model type"),
    (["--hf-config", "no/such/config.json"], "--hf-config 'no/such/config.json': no such file or folder"),
    (["--hf-model-type", "gpt2", "--hf-override", "n_layer"], "--hf-override 'n_layer' is not key=value"),
    (["--hf-model-type", "gpt2", "--hf-config", "x.json"], "give --hf-config or --hf-model-type, not both"),
    (["torch.nn:Linear", "--hf-model-type", "gpt2"], "give a model path ('torch.nn:Linear') or a Hugging Face"),
    (["--hf-model-type", "gpt2", "--input-shape", "1,3"], "--input-shape is for MODULE:CALLABLE models"),
    (["--hf-model-type", "gpt2", "--seq-len", "0"], "--batch-size and --seq-len must be positive"),
    (["--hf-model-type", "gpt2", "--hf-override", "n_embd=31,n_head=2"], "divisible"),
    ([], "no model given"),
    (["torch.nn:Linear"], "--input-shape is required with a MODULE:CALLABLE model"),
    (["torch.nn:Linear", "--input-shape", "1,4", "--hf-override", "a=1"], "--hf-override applies to"),
])
def test_hf_errors_one_line(argv, message, capsys):
    assert main(["profile", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_weights_that_cannot_fit_are_refused_before_building(capsys, monkeypatch):
    import torch_tos.cli.inputs as inputs

    monkeypatch.setattr(inputs, "available_bytes", lambda device: 10 ** 6)  # 1 MB free
    # gpt2 with n_embd=64 and 8192 positions: the position embeddings alone are 64 × 8192 float32
    # = 2.1 MB, more than the 1 MB free
    assert main(["profile", "--hf-model-type", "gpt2", "--hf-override", "n_layer=1,n_embd=64,n_head=2,"
                 "n_positions=8192", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "the weights of 'gpt2' need" in err and "only 1 MB is free on cpu" in err and "--device meta" in err


def test_predict_a_hugging_face_config_equals_the_python_api(tmp_path, capsys):
    """`torch-tos predict --hf-config` predicts the training step the Python API predicts: the
    model built on meta from the config, labels in the inputs, the model's own loss."""
    import pandas as pd

    from energy_fakes import synthetic_law

    law = synthetic_law()
    law.save(tmp_path / "law.json")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(LLAMA))
    argv = ["predict", "--hf-config", str(cfg), "--batch-size", "2", "--seq-len", "8", "--steps", "50",
            "--law", str(tmp_path / "law.json")]
    assert main(argv + ["--format", "csv"]) == 0
    cli = pd.read_csv(__import__("io").StringIO(capsys.readouterr().out))
    model, make_inputs = build_from_config(str(cfg), [], "meta")
    import torch

    pred = law.predict(model, make_inputs(batch_size=2, seq_len=8, labels=True), loss_fn=hf_loss,
                       optimizer=torch.optim.SGD(model.parameters(), lr=0.01), steps=50)
    assert cli.joules.sum() == pytest.approx(pred.joules, rel=1e-9) and pred.joules > 0
    assert "model.layers.0.self_attn" in set(cli.layer)
    assert main(argv) == 0 and "predicted cost of 50 training steps" in capsys.readouterr().out
    for extra, message in ((["--loss", "cross_entropy"], "--loss applies to MODULE:CALLABLE models"),
                           (["--input-shape", "2,8"], "--input-shape is for MODULE:CALLABLE models"),
                           (["torch.nn:Linear"], "or a Hugging Face config, not both")):
        assert main(argv + extra) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["predict", "--law", str(tmp_path / "law.json")]) == 2
    assert "no model given" in capsys.readouterr().err
