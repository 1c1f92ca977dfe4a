"""torch_tos/_compat.py (and _compat_nn.py, the part of it about modules and optimizers) is the one
place that uses private PyTorch APIs (issue 8 item 7)."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import pathlib
import re

import pytest
import torch

import torch_tos
from torch_tos import _compat

PACKAGE = pathlib.Path(torch_tos.__file__).parent
#: the modules allowed to name private PyTorch APIs
COMPAT_MODULES = ("_compat.py", "_compat_nn.py")


def _chain(node) -> list[str] | None:
    """``torch.a.b`` as ``["torch", "a", "b"]``; None for an expression not rooted at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _private(parts: list[str]) -> bool:
    """A path into torch with a private component. ``torch.ops.<ns>.<op>`` are operator names
    (``aten._softmax`` is an operator of the schema, not a Python API); dunders are public."""
    if parts[0] != "torch" or parts[1:2] == ["ops"]:
        return False
    return any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every private torch API the code names: ``torch._C.x``,
    ``torch.a._b``, ``from torch.utils._pytree import x``, ``from torch.a import _b``,
    ``import torch._x``, ``getattr(torch.a, "_b")``. Parsed, so docstrings and comments never
    count."""
    tree = ast.parse(source)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:  # outermost of a chain
            parts = _chain(node)
            if parts and _private(parts):
                found.add((node.lineno, ".".join(parts)))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            found |= {(node.lineno, f"{node.module}.{a.name}") for a in node.names
                      if _private([*node.module.split("."), a.name])}
        elif isinstance(node, ast.Import):
            found |= {(node.lineno, a.name) for a in node.names if _private(a.name.split("."))}
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            parts = _chain(node.args[0])
            if parts and _private([*parts, node.args[1].value]):
                found.add((node.lineno, ".".join([*parts, node.args[1].value])))
    return sorted(found)


def test_the_scan_finds_each_form_and_skips_docstrings_comments_and_operators():
    source = '''
"""torch._C._foo in a docstring"""
import torch
import torch._dynamo
from torch.utils._pytree import tree_leaves
from torch.utils._python_dispatch import _disable_current_modes
from torch.overrides import TorchFunctionMode
x = torch._C._bar  # torch._C._baz in a comment
y = getattr(torch._C, "_qux", None)
z = hasattr(torch.nn.modules.conv, "_ConvNd")
k = torch.nn.modules.conv._ConvNd
op = torch.ops.aten._softmax.default
v = torch.__version__
w = getattr(torch.nn, "Linear")
'''
    assert private_uses(source) == [
        (4, "torch._dynamo"), (5, "torch.utils._pytree.tree_leaves"),
        (6, "torch.utils._python_dispatch._disable_current_modes"), (8, "torch._C._bar"),
        (9, "torch._C"), (9, "torch._C._qux"), (10, "torch.nn.modules.conv._ConvNd"),
        (11, "torch.nn.modules.conv._ConvNd")]


def test_no_module_outside_compat_names_a_private_torch_api():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in COMPAT_MODULES or p.parent != PACKAGE)
    assert len(modules) > 30  # the scan really walked the package
    uses = {str(p.relative_to(PACKAGE)): hits for p in modules if (hits := private_uses(p.read_text()))}
    assert uses == {}


@pytest.mark.parametrize("name", COMPAT_MODULES)
def test_compat_itself_is_seen_by_the_scan(name):
    assert private_uses((PACKAGE / name).read_text())  # the scan would see a moved API


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("api", _compat.PRIVATE_APIS)
def test_every_private_api_resolves_on_the_installed_torch(api):
    newer = _compat.NEWER_PRIVATE_APIS.get(api)
    if newer is not None and torch.torch_version.TorchVersion(torch.__version__.split("+")[0]) < newer:
        pytest.skip(f"{api} is new in torch {newer}; its documented fallback applies here")
    assert _resolve(api) is not None


def test_every_private_api_is_in_the_docstring_table():
    doc = _compat.__doc__
    globs = [t.rsplit(".", 1)[-1] for t in re.findall(r"``([^`]+)``", doc) if "*" in t]
    for api in _compat.PRIVATE_APIS:
        tail = api.rsplit(".", 1)[-1]
        assert tail in doc or any(fnmatch.fnmatch(tail, g) for g in globs), \
            f"{api} is not named in torch_tos/_compat.py's table"


def test_the_fallbacks_answer_on_this_torch():
    assert _compat.next_sequence_nr() >= 0
    assert _compat.global_module_hooks_set() is False
    assert _compat.is_any_autocast_enabled() is False
    assert _compat.resnapshot_python_keys(True) is False  # not inside a compiled call
    assert _compat.torch_function_mode_at_top() is None
    assert _compat.qualified_name(torch.add) == "torch.add"
