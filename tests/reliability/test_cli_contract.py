"""The CLI contract of ``torch-tos profile`` and the top-level command: every error a user can
cause is ONE line on stderr that names the problem and the accepted values or the fix, exit code 2,
never a traceback (issue 12, item 5)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest
import torch

from torch_tos.cli import main

MODEL_FILE = """
import torch


class RaisesKeyError(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x) * {}["missing"]  # line 11


class Inner(torch.nn.Module):
    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


def out_of_memory():
    return torch.nn.Sequential(torch.nn.Linear(4, 4), Inner())


def fails_to_build():
    raise RuntimeError("no weights here")


def embedding():
    return torch.nn.Sequential(torch.nn.Embedding(10, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2))


def returns_int_only():
    return torch.nn.Sequential(torch.nn.Flatten(0))


def not_a_module():
    return 42
"""


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    """A folder holding a model file, as the current directory, with ``sys.path`` restored after
    (the file's module name is unique so that no cached import is reused)."""
    name = f"tos_user_model_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODEL_FILE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def one_error_line(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("torch-tos: error: "), err
    assert "Traceback" not in err + captured.out
    return err


LINEAR = ["torch.nn:Linear", "--model-kwargs", '{"in_features": 4, "out_features": 4}']


def test_impossible_input_size_is_refused_before_allocating(capsys):
    err = one_error_line(["profile", *LINEAR, "--input-shape", "100000000000,4"], capsys)
    # 1e11 × 4 float32 = 1.6e12 bytes
    assert "--input-shape 100000000000,4 needs 1.6 TB" in err and "--device meta" in err


def test_input_size_beyond_int64_is_refused(capsys):
    err = one_error_line(["profile", *LINEAR, "--input-shape", "99999999999999999999,99999999999"], capsys)
    assert "more than a tensor can hold" in err


def test_impossible_size_on_meta_is_counted(capsys):
    # on meta nothing is allocated: 1e11 rows × (16 mul + 12 add + 4 bias add) BOs
    assert main(["profile", *LINEAR, "--input-shape", "100000000000,4", "--device", "meta",
                 "--format", "json"]) == 0
    import json
    bos = json.loads(capsys.readouterr().out)["total"]["bos"]
    assert bos["mul"] == 16 * 10 ** 11 and bos["add"] == 16 * 10 ** 11


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu(capsys):
    err = one_error_line(["profile", *LINEAR, "--input-shape", "1,4", "--device", "cuda"], capsys)
    assert "--device cuda: no CUDA GPU is available" in err and "--device meta" in err


def test_unknown_device(capsys):
    err = one_error_line(["profile", *LINEAR, "--input-shape", "1,4", "--device", "gpu0"], capsys)
    assert "unknown --device 'gpu0'; accepted: cpu, cuda, cuda:N, mps, meta" in err


def test_forward_raising_key_error_names_exception_layer_and_line(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:RaisesKeyError", "--input-shape", "2,4"], capsys)
    assert "the model failed on inputs of shape (2, 4): KeyError: 'missing'" in err
    assert f"in RaisesKeyError.forward, at {model_dir}.py:11" in err


def test_out_of_memory_in_a_layer_suggests_meta(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:out_of_memory", "--input-shape", "2,4"], capsys)
    assert "OutOfMemoryError: CUDA out of memory" in err and "in layer '1' (Inner)" in err
    assert "--device meta to count without computing" in err


def test_factory_raising(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:fails_to_build", "--input-shape", "2,4"], capsys)
    assert f"building '{model_dir}:fails_to_build' failed: RuntimeError: no weights here" in err


def test_factory_returning_no_module(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:not_a_module", "--input-shape", "2,4"], capsys)
    assert "returned int, not an nn.Module" in err


def test_model_file_with_a_syntax_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_tos_model.py").write_text("def build(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    err = one_error_line(["profile", "broken_tos_model:build", "--input-shape", "2,4"], capsys)
    assert "cannot import module 'broken_tos_model'" in err and "SyntaxError" in err


def test_embedding_needs_integer_inputs(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:embedding", "--input-shape", "2,4"], capsys)
    assert "in layer '0' (Embedding)" in err and "add --input-dtype int64" in err


def test_embedding_index_out_of_range(model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:embedding", "--input-shape", "2,4", "--input-dtype",
                          "int64", "--input-low", "10", "--input-high", "11"], capsys)
    assert "IndexError" in err and "lower --input-high" in err


@pytest.mark.parametrize("extra,message", [
    (["--input-dtype", "int3"], "unknown --input-dtype 'int3'; accepted: float32, float16, bfloat16, "
                                "float64, int64, int32, int16, int8, uint8, bool"),
    (["--input-dtype", "int64", "--input-dtype", "int64"], "2 --input-dtype values for 1 --input-shape"),
    (["--input-dtype", "int64", "--input-low", "5", "--input-high", "5"],
     "--input-high (5) must be greater than --input-low (5)"),
    (["--input-dtype", "int8", "--input-high", "1000"], "do not fit torch.int8; accepted: -128 to 128"),
    (["--model-kwargs", "[1]"], "--model-kwargs must be a JSON object"),
    (["--optimizer", "lbfgs"], "unknown --optimizer 'lbfgs'; accepted: sgd, sgd_momentum, adam, adamw"),
])
def test_bad_input_options(extra, message, model_dir, capsys):
    err = one_error_line(["profile", f"{model_dir}:embedding", "--input-shape", "2,4", *extra], capsys)
    assert message in err


def test_batch_norm_at_batch_one_in_inference_suggests_eval(capsys):
    # a new torchvision model is in train mode: at 32×32, layer4's batch norm sees 1 value per channel
    err = one_error_line(["profile", "torchvision.models:resnet18", "--input-shape", "1,3,32,32",
                          "--device", "meta"], capsys)
    assert "in layer 'layer4.0.bn1' (BatchNorm2d)" in err
    assert "batch norm in training mode needs a batch of at least 2" in err and "--eval" in err


def test_eval_flag_profiles_batch_one(capsys):
    assert main(["profile", "torchvision.models:resnet18", "--input-shape", "1,3,32,32", "--device",
                 "meta", "--eval", "--depth", "0"]) == 0
    assert "layer4.0.bn1" in capsys.readouterr().out


def test_torch_tos_own_check_keeps_its_message(model_dir, capsys):
    # training on a model returning only integers: torch_tos's surrogate-loss check speaks
    err = one_error_line(["profile", f"{model_dir}:returns_int_only", "--input-shape", "2,4", "--input-dtype",
                          "int64", "--mode", "training"], capsys)
    assert "cannot build the surrogate loss output.sum(): the model returned no floating-point tensor" in err


def test_no_command_and_unknown_command(capsys):
    err = one_error_line([], capsys)
    assert "no command given; accepted: profile, sweep, calibrate, demo, fit, predict" in err
    err = one_error_line(["profiel"], capsys)
    assert "invalid choice: 'profiel'" in err


def test_version_and_help_exit_zero(capsys):
    from torch_tos import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"torch-tos {__version__}"
    assert main(["profile", "--help"]) == 0
    assert "--input-dtype" in capsys.readouterr().out


def test_help_shows_every_default():
    proc = subprocess.run([sys.executable, "-m", "torch_tos", "profile", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for shown in ("(default: 0)", "(default: inference)", "(default: table)", "(default: sum)",
                  "(default: each op in its own dtype)", "(default float32)", "(default: none)",
                  "(default: cpu for a MODULE:CALLABLE model, meta for a Hugging Face config)",
                  "(default: 1)", "(default: 128)", "(default: 15)",
                  "(default: a depth that keeps the table, html and figure short; csv: every layer)",
                  "(default: standard output)",
                  "(default: the smallest num_embeddings"):
        assert shown in text, shown
    assert "(default: None)" not in text


def test_subprocess_console_entry_loads_model_file_from_cwd(tmp_path):
    # A script outside the model's folder stands for the `torch-tos` console script: its sys.path[0]
    # is its own folder, not the current directory (unlike `python -m` and `python -c`).
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mymodel.py").write_text(textwrap.dedent(MODEL_FILE))
    (tmp_path / "bin").mkdir()
    entry = tmp_path / "bin" / "torch-tos"
    entry.write_text("import sys\nfrom torch_tos.cli import main\nsys.exit(main())\n")
    ok = subprocess.run([sys.executable, str(entry), "profile", "mymodel:embedding", "--input-shape", "2,4",
                         "--input-dtype", "int64", "--format", "csv"], cwd=tmp_path / "work",
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].startswith("layer,type,phase,dtype")
    bad = subprocess.run([sys.executable, str(entry), "profile", "mymodel:RaisesKeyError", "--input-shape",
                          "2,4"], cwd=tmp_path / "work", capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr == ("torch-tos: error: the model failed on inputs of shape (2, 4): KeyError: 'missing' "
                          "in RaisesKeyError.forward, at mymodel.py:11\n")


def test_python_dash_m_torch_tos():
    proc = subprocess.run([sys.executable, "-m", "torch_tos", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("torch-tos ")
    proc = subprocess.run([sys.executable, "-m", "torch_tos", "profile", "torch.nn:Linear", "--input-shape",
                           "1,4", "--device", "cuda:banana"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
