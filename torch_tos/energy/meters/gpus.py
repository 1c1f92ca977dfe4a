"""Which GPUs a process meters, how CUDA's ordinals map to NVML's devices, and how to wait for them
without starting CUDA.

**The process's devices** (:func:`default_devices`, used by ``NvmlMeter()`` and ``ZeusMeter()``):

1. under a launcher that sets ``LOCAL_RANK`` (torchrun, ``torch.distributed.launch``, Lightning,
   Accelerate, DeepSpeed): the GPU of that local rank — CUDA ordinal ``LOCAL_RANK`` when this process
   sees more than ``LOCAL_RANK`` GPUs, else the only GPU it sees (a launcher that hands each rank its
   own GPU through ``CUDA_VISIBLE_DEVICES``, as SLURM's ``--gpus-per-task=1`` does);
2. else, once CUDA is initialised, ``torch.cuda.current_device()`` — and, in a process that is not
   part of a distributed job, every other visible GPU on which it has already created a CUDA context
   (a model spread over several GPUs by one process);
3. else, not distributed: every visible GPU (``NvmlMeter`` narrows it to step 2 at its first window
   after CUDA starts); distributed with several GPUs visible and nothing to tell which is this
   rank's: :class:`MeterUnavailable`, naming the fixes.

**Ordinals to NVML devices** (:func:`nvml_handles`): once CUDA is initialised, the ordinal's UUID
from ``torch.cuda.get_device_properties`` (exact under any ``CUDA_VISIBLE_DEVICES`` and
``CUDA_DEVICE_ORDER``); before, ``CUDA_VISIBLE_DEVICES`` read as CUDA reads it (indices, ``GPU-``
UUIDs or their prefixes, stopping at the first invalid entry). Indices there and ordinals without it
are NVML's PCI-bus order, which is CUDA's under ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and on nodes of one
GPU model; on a node of mixed models without it, CUDA puts the fastest first and the mapping is
flagged (:func:`order_warning`).

**Waiting** (:func:`synchronize`): ``torch.cuda.synchronize(i)`` of the metered ordinals only, only
when CUDA is already initialised, and only on devices where this process has a CUDA context (a device
without one has no queued work of this process; synchronising it would create a context there).
Nothing here initialises CUDA: ``torch.cuda.is_initialized()`` and ``device_count()`` (NVML-based)
do not.
"""

from __future__ import annotations

import os
import re

from .base import MeterUnavailable


def _torch():
    import torch

    return torch


def cuda_initialized() -> bool:
    torch = _torch()
    return bool(torch.cuda.is_available() and torch.cuda.is_initialized())


def has_context(index: int) -> bool:
    """Whether this process has a CUDA context on ordinal ``index`` (``True`` when torch cannot tell)."""
    from ..._compat import cuda_has_primary_context

    return cuda_has_primary_context(index)


def synchronize(ordinals) -> None:
    """Wait for this process's queued work on ``ordinals``, never initialising CUDA (module doc)."""
    if not cuda_initialized():
        return
    torch = _torch()
    for i in ordinals:
        if has_context(i):
            torch.cuda.synchronize(i)


def distributed() -> bool:
    """Whether this process is one rank of a distributed job (launcher variables or a process group)."""
    if "LOCAL_RANK" in os.environ:
        return True
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return True
    except ValueError:
        pass
    import torch.distributed as dist

    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def default_devices(visible: int) -> tuple[list[int], str]:
    """The CUDA ordinals this process meters by default, and why (module doc, steps 1-3)."""
    if visible <= 0:
        return [], "no GPU is visible"
    local = os.environ.get("LOCAL_RANK")
    if local is not None:
        try:
            rank = int(local)
        except ValueError:
            raise MeterUnavailable(f"LOCAL_RANK={local!r} is not an integer; pass devices=[i]") from None
        if 0 <= rank < visible:
            return [rank], f"LOCAL_RANK={rank}"
        if visible == 1:
            return [0], f"LOCAL_RANK={rank}, the only GPU this process sees"
        if not cuda_initialized():
            raise MeterUnavailable(f"cannot tell this rank's GPU: LOCAL_RANK={rank} but this process sees "
                                   f"{visible} GPUs (0..{visible - 1}); call torch.cuda.set_device() before "
                                   f"building the meter, or pass NvmlMeter(devices=[i])")
    if cuda_initialized():
        current = int(_torch().cuda.current_device())
        ordinals = [current]
        if local is None and not distributed():
            ordinals += [i for i in range(visible) if i != current and has_context(i)]
        if len(ordinals) == 1:
            return ordinals, f"the current CUDA device{' (LOCAL_RANK out of range)' if local is not None else ''}"
        return sorted(ordinals), "the GPUs this process has used"
    if distributed():
        if visible == 1:
            return [0], "the only GPU this rank sees"
        raise MeterUnavailable(f"cannot tell this rank's GPU: no LOCAL_RANK, CUDA not initialised and {visible} "
                               f"GPUs visible; call torch.cuda.set_device() before building the meter, or pass "
                               f"NvmlMeter(devices=[i])")
    return list(range(visible)), "every visible GPU"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_handles(nv) -> list:
    """NVML handles of the GPUs CUDA shows this process, in CUDA's order (module doc)."""
    count = nv.nvmlDeviceGetCount()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    handles = []
    for entry in (e.strip() for e in env.split(",")):
        if not entry:
            break
        if re.fullmatch(r"-?\d+", entry):
            index = int(entry)
            if not 0 <= index < count:
                break  # CUDA stops at the first invalid entry
            handles.append(nv.nvmlDeviceGetHandleByIndex(index))
        elif entry.startswith("GPU-"):
            for i in range(count):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                if _text(nv.nvmlDeviceGetUUID(h)).startswith(entry):
                    handles.append(h)
                    break
            else:
                break
        else:
            raise MeterUnavailable(f"CUDA_VISIBLE_DEVICES entry {entry!r} is not supported by the NVML meter "
                                   f"(accepted: GPU indices or GPU-<uuid>; MIG slices have no energy counter "
                                   f"of their own)")
    return handles


def torch_uuid(ordinal: int) -> str | None:
    """The NVML-style UUID (``GPU-…``) of CUDA ordinal ``ordinal``, read from torch only when CUDA is
    already initialised (else ``None``: reading it would initialise CUDA)."""
    if not cuda_initialized():
        return None
    try:
        uuid = _text(_torch().cuda.get_device_properties(ordinal).uuid)
    except (AttributeError, RuntimeError, AssertionError):
        return None
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def nvml_handles(nv, ordinals, visible: list) -> list:
    """NVML handles of CUDA ``ordinals``: by torch's UUID once CUDA is initialised, else through
    :func:`visible_handles` (``visible``)."""
    out = []
    for ordinal in ordinals:
        uuid = torch_uuid(ordinal)
        handle = None
        if uuid is not None:
            try:
                handle = nv.nvmlDeviceGetHandleByUUID(uuid)
            except nv.NVMLError:
                handle = None
        out.append(handle if handle is not None else visible[ordinal])
    return out


def order_warning(nv, visible: list) -> str | None:
    """A note when CUDA's ordinals may differ from NVML's order: mixed GPU models, no
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and CUDA not initialised (so torch's UUIDs cannot be read)."""
    if os.environ.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID" or cuda_initialized() or len(visible) < 2:
        return None
    try:
        names = {_text(nv.nvmlDeviceGetName(h)) for h in visible}
    except (AttributeError, nv.NVMLError):
        return None
    if len(names) < 2:
        return None
    return (f"this node mixes GPU models ({', '.join(sorted(names))}) and CUDA_DEVICE_ORDER is not "
            "PCI_BUS_ID: CUDA numbers the fastest first, NVML by PCI bus, so an ordinal may name another "
            "GPU; set CUDA_DEVICE_ORDER=PCI_BUS_ID, or build the meter after CUDA is initialised")
