"""The engine knows nothing of integrations: no core module imports ``torch_tos.integrations``;
importing the package (and the engine) imports neither transformers nor an integration; meta
adaptations reach the engine only through ``torch_tos.kernels.register_meta_adaptation``, and the
Hugging Face one is imported on demand, once transformers is."""

from __future__ import annotations

import ast
import contextlib
import pathlib
import subprocess
import sys

import pytest
import torch

import torch_tos
from torch_tos import kernels

PACKAGE = pathlib.Path(torch_tos.__file__).parent


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the torch_tos modules ``path`` imports (relative imports resolved)."""
    parts = ["torch_tos", *path.relative_to(PACKAGE).with_suffix("").parts]
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("torch_tos")}


def test_no_core_module_imports_an_integration():
    """The engine and everything but the front ends (the CLI's ``hf`` command) and the
    integrations themselves."""
    core = [p for p in PACKAGE.rglob("*.py")
            if not {"integrations", "cli"} & set(p.relative_to(PACKAGE).parts)]
    assert len(core) > 30
    offenders = {str(p.relative_to(PACKAGE)): sorted(m for m in _imports(p) if ".integrations" in m)
                 for p in core}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_engine_imports_no_integration_until_transformers_is_imported():
    code = """
import sys, torch_tos, torch_tos.counter, torch_tos.kernels, torch_tos.training.verify

def loaded():
    return sorted(m for m in sys.modules
                  if m.startswith(("torch_tos.integrations", "transformers", "deepspeed")))

with torch_tos.Engine():
    pass
print(loaded())
# what the autoload keys on is the module's name in sys.modules (hf_meta imports nothing of
# transformers): a stand-in spares the subprocess transformers' import; the real library's path
# is what the Hugging Face tests on meta run
import types
sys.modules["transformers.masking_utils"] = types.ModuleType("transformers.masking_utils")
print("torch_tos.integrations.hf_meta" in sys.modules)
with torch_tos.Engine():
    from torch_tos.integrations import hf_meta
    print(hf_meta.installed())
print(hf_meta.installed())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.split("\n")[:4] == ["[]", "False", "True", "False"]


def test_a_registered_adaptation_is_entered_by_every_counting_context_in_its_thread():
    seen = []

    @contextlib.contextmanager
    def adaptation():
        seen.append("enter")
        yield
        seen.append("exit")

    kernels.register_meta_adaptation("test", adaptation)
    try:
        with torch_tos.Engine():
            assert seen == ["enter"]
        with torch_tos.Engine(), torch_tos.Engine():
            pass
        torch_tos.profile(torch.nn.Linear(2, 2), torch.randn(1, 2))
    finally:
        kernels.unregister_meta_adaptation("test")
    assert seen.count("enter") == seen.count("exit") >= 4
    n = len(seen)
    with torch_tos.Engine():
        pass
    assert len(seen) == n  # unregistered: no longer entered


def test_step_adapters_claim_only_their_engines():
    from torch_tos.training.adapters import register_step_adapter, step_adapter, unregister_step_adapter

    class Engine(torch.nn.Linear):
        pass

    class Adapter:
        def claims(self, model):
            return isinstance(model, Engine)

        check_optimizer = describe = step_state = attach = claims

    assert step_adapter(torch.nn.Linear(2, 2)) is None
    register_step_adapter("test", Adapter())
    try:
        assert step_adapter(torch.nn.Linear(2, 2)) is None
        assert isinstance(step_adapter(Engine(2, 2)), Adapter)
    finally:
        unregister_step_adapter("test")
    assert step_adapter(Engine(2, 2)) is None
    with pytest.raises(TypeError, match="lacks check_optimizer, describe, step_state, attach"):
        register_step_adapter("bad", type("Bad", (), {"claims": lambda self, m: True})())


def test_a_bad_adaptation_is_refused_with_one_line():
    with pytest.raises(TypeError, match="must be a callable returning a context manager"):
        kernels.register_meta_adaptation("bad", object())
