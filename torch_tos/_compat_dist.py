"""The private PyTorch APIs that tell the state of devices and process groups: whether a fake
tensor mode is active, which process group a functional collective names, whether a CUDA context
exists. Part of :mod:`torch_tos._compat` (its table names each API and its fallback), re-exported
from there."""

from __future__ import annotations

import torch

__all__ = ["fake_mode_active", "process_group_size_and_rank", "cuda_has_primary_context"]

_FAKE_KEY = getattr(getattr(torch._C, "_TorchDispatchModeKey", None), "FAKE", None)
_get_dispatch_mode = getattr(torch._C, "_get_dispatch_mode", None)


def fake_mode_active() -> bool:
    """Whether a ``FakeTensorMode`` is active (``torch._C._get_dispatch_mode(FAKE)``): ops run now
    compute shapes only. False where that cannot be told."""
    if _FAKE_KEY is None or _get_dispatch_mode is None:  # pragma: no cover - depends on torch
        return False
    return _get_dispatch_mode(_FAKE_KEY) is not None


def process_group_size_and_rank(group_name) -> tuple[int, int] | None:
    """(size, this process's rank) of the process group a functional collective names
    (``distributed_c10d._resolve_process_group``); None where it cannot be resolved."""
    try:
        from torch.distributed.distributed_c10d import _resolve_process_group

        pg = _resolve_process_group(group_name)
        return int(pg.size()), int(pg.rank())
    except Exception:  # noqa: BLE001 - unknown name, no distributed build, a moved helper
        return None


def cuda_has_primary_context(index: int) -> bool:
    """Whether this process has a CUDA context on ordinal ``index`` (``True`` when torch cannot
    tell), without creating one."""
    check = getattr(torch._C, "_cuda_hasPrimaryContext", None)
    return True if check is None else bool(check(index))
