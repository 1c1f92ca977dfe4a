"""The rules registry fails closed: every registered name resolves to a real operator, a rule for an
op the installed torch lacks is an import-time error unless declared optional with its versions,
and torchvision's ops are registered whatever the import order."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from torch_tos.rules import registry
from torch_tos.rules.registry import MissingOpError


def _torchvision_loads() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken (a CUDA wheel on a CPU torch)
        return False
    return True


TORCHVISION = _torchvision_loads()


def _resolves(op) -> bool:
    """The op is reachable again from its qualified name (packet, or packet + overload)."""
    packet = getattr(op, "_overloadpacket", op)
    ns, name = packet._qualified_op_name.split("::")
    found = getattr(getattr(torch.ops, ns), name, None)
    if found is None:
        return False
    if packet is not op:
        return getattr(found, op._overloadname, None) is op
    return found is packet


def test_every_registered_name_resolves():
    registry.resolve_all()   # where torchvision loads: its rules too
    assert not registry.PENDING if TORCHVISION else set(registry.PENDING) == {"torchvision"}
    ops = list(registry.RULES) + list(registry.ZERO_OPS)
    assert len(ops) > 700
    unresolved = [str(op) for op in ops if not _resolves(op)]
    assert unresolved == []
    if TORCHVISION:
        assert torch.ops.torchvision._cuda_version in registry.ZERO_OPS


def test_a_rule_for_a_missing_op_is_an_error():
    with pytest.raises(MissingOpError, match=r"aten\.no_such_op.*no such operator.*OPTIONAL_OPS"):
        registry.register("no_such_op")(lambda out, *a, **k: None)
    assert "no_such_op" not in str(list(registry.RULES))


def test_optional_ops_are_skipped_outside_their_versions(monkeypatch):
    monkeypatch.setitem(registry.OPTIONAL_OPS, "no_such_op", ">=99.0")
    registry.register("no_such_op")(lambda out, *a, **k: None)          # skipped: not this torch
    monkeypatch.setitem(registry.OPTIONAL_OPS, "no_such_op", ">=2.0,<99")
    with pytest.raises(MissingOpError, match="declared optional for torch >=2.0,<99"):
        registry.register("no_such_op")(lambda out, *a, **k: None)


@pytest.mark.parametrize("spec,version,expected", [
    (">=2.13", "2.13.0", True), (">=2.14", "2.13.0", False), (">=2.13,<2.14", "2.13.1", True),
    ("<2.14", "2.14.1", False), ("==2.14.1", "2.14.1", True),
])
def test_version_specs(spec, version, expected):
    assert registry._in_versions(spec, version) is expected


@pytest.mark.skipif(not TORCHVISION, reason="torchvision does not load")
@pytest.mark.parametrize("order", ["import torch_tos, torchvision", "import torchvision, torch_tos"])
def test_torchvision_ops_registered_whatever_the_import_order(order):
    code = (f"{order}; import torch; from torch_tos.rules import lookup; "
            "assert lookup(torch.ops.torchvision._cuda_version.default) is not None; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
