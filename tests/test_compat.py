"""torch_tos/_compat.py (with _compat_nn.py, modules and optimizers, and _compat_dist.py, devices and
process groups) is the one place that uses private PyTorch APIs (issue 8 item 7)."""

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
COMPAT_MODULES = ("_compat.py", "_compat_nn.py", "_compat_dist.py")


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


# -- private attributes read on objects that are not ours ------------------------------------------
#: Our own private names read on an object other than ``self``/``cls`` (a helper reading the state
#: of another torch_tos object): each is defined by a torch_tos class and named by no torch object.
OWN_PRIVATE_NAMES = frozenset({
    "_begin", "_cache", "_calls", "_end", "_group", "_handle", "_joules", "_layer_sort", "_obj", "_post",
    "_pre", "_priced", "_read_energy", "_saved", "_start_counting", "_state", "_text", "_thread", "_where"})
#: Private names of modules other than PyTorch's, documented by their owner.
NON_TORCH_MODULE_ATTRIBUTES = frozenset({"sys._getframe", "os._exit"})


class _PrivateReads(ast.NodeVisitor):
    def __init__(self, op_namespaces):
        self.op_namespaces, self.selves, self.found = op_namespaces, [None], set()

    def visit_FunctionDef(self, node):
        """A method's ``self``/``cls``; a closure inside a method sees the method's."""
        args = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
        outer = self.selves[-1]
        own = args[0] if args and args[0] in ("self", "cls") and not isinstance(node, ast.Lambda) else None
        self.selves.append(own or (outer if outer not in args else None))
        self.generic_visit(node)
        self.selves.pop()

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef

    def visit_Attribute(self, node):
        name = node.attr
        if isinstance(node.ctx, ast.Load) and name.startswith("_") and not name.startswith("__"):
            base, parts = node.value, _chain(node)
            ours = (isinstance(base, ast.Name) and base.id == self.selves[-1]) or name in OWN_PRIVATE_NAMES
            torch_path = parts is not None and parts[0] == "torch"  # private_uses' job (ops are names)
            operator = parts is not None and len(parts) == 2 and parts[0] in self.op_namespaces
            elsewhere = parts is not None and ".".join(parts) in NON_TORCH_MODULE_ATTRIBUTES
            if not (ours or torch_path or operator or elsewhere):
                self.found.add((node.lineno, ast.unparse(node)))
        self.generic_visit(node)


def private_attribute_reads(source: str) -> list[tuple[int, str]]:
    """(line, expression) of every read of a private attribute (``x._parameters``,
    ``t._version``, ``f()._C``) on an object that is not the method's own ``self``/``cls``, other
    than :data:`OWN_PRIVATE_NAMES`, operator names (``aten._softmax`` with ``aten =
    torch.ops.aten``) and :data:`NON_TORCH_MODULE_ATTRIBUTES`."""
    tree = ast.parse(source)
    namespaces = {t.id for node in tree.body if isinstance(node, ast.Assign)
                  for t in node.targets if isinstance(t, ast.Name)
                  if (_chain(node.value) or [])[:2] == ["torch", "ops"]}
    visitor = _PrivateReads(namespaces)
    visitor.visit(tree)
    return sorted(visitor.found)


def test_the_attribute_scan_finds_reads_on_objects_that_are_not_ours():
    source = '''
import sys, torch
aten = torch.ops.aten
class Mine:
    def f(self, m, t, other):
        self._cache = m._parameters          # flagged: a module's private dict
        n = t._version + other._cache        # _version flagged; _cache is one of ours
        g = get_torch()._C                   # flagged: torch reached through a call
        return aten._softmax, sys._getframe(1), self._private, torch._C
    @classmethod
    def make(cls, mod):
        return cls._registry, mod._modules   # cls is ours; _modules is flagged
    def g(self):
        return lambda: self._state, (lambda self: self._hooks)   # a closure's self is the method's;
def helper(self_like):                                           # a lambda's own argument is not
    return self_like._forward_hooks          # a plain function's first argument is not self
'''
    assert private_attribute_reads(source) == [
        (6, "m._parameters"), (7, "t._version"), (8, "get_torch()._C"), (12, "mod._modules"),
        (14, "self._hooks"), (16, "self_like._forward_hooks")]


def test_no_module_outside_compat_reads_a_private_attribute_of_an_object_not_ours():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if not p.name.startswith("_compat"))
    assert len(modules) > 30
    reads = {str(p.relative_to(PACKAGE)): hits for p in modules if (hits := private_attribute_reads(p.read_text()))}
    assert reads == {}


def test_our_private_names_are_ours_and_no_torch_objects():
    defined = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add(node.name)
            elif isinstance(node, ast.ClassDef):
                defined |= {t.id for b in node.body if isinstance(b, (ast.Assign, ast.AnnAssign))
                            for t in (b.targets if isinstance(b, ast.Assign) else [b.target])
                            if isinstance(t, ast.Name)}
                defined |= {e.value for b in node.body if isinstance(b, ast.Assign)
                            and any(getattr(t, "id", None) == "__slots__" for t in b.targets)
                            for e in getattr(b.value, "elts", ()) if isinstance(e, ast.Constant)}
    assert OWN_PRIVATE_NAMES <= defined, OWN_PRIVATE_NAMES - defined
    lin = torch.nn.Linear(2, 2)
    torch_objects = (lin, torch.ones(2), torch.optim.SGD(lin.parameters(), lr=0.1), torch.nn.Module,
                     lin.weight.sum().grad_fn, lin.register_forward_hook(lambda *a: None))
    clashes = {n for n in OWN_PRIVATE_NAMES for o in torch_objects if hasattr(o, n)}
    assert clashes == set()


def test_the_module_attributes_read_through_compat_exist_on_this_torch():
    lin = torch.nn.Linear(2, 2)
    assert all(isinstance(getattr(lin, n), dict) for n in _compat.PRIVATE_MODULE_ATTRIBUTES)
    assert _compat.own_parameters(lin) == [lin.weight, lin.bias]
    seq = torch.nn.Sequential(lin, torch.nn.BatchNorm1d(2))
    assert _compat.child_modules(seq) == [lin, seq[1]]
    assert _compat.own_buffers(seq[1]) == list(seq[1].buffers())
    assert not _compat.has_module_hooks(lin)
    handle = lin.register_forward_pre_hook(lambda m, a: None)
    assert _compat.has_module_hooks(lin) and not _compat.has_module_hooks(lin, pre=False)
    handle.remove()
    t = torch.zeros(2)
    v = _compat.tensor_version(t)
    t.add_(1)
    assert _compat.tensor_version(t) == v + 1
