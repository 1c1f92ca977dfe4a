"""DTensor (``torch.distributed.tensor``) under the counting engine: each rank's local work.

An op on DTensors reaches a ``TorchDispatchMode`` before DTensor's own dispatch, at the
*global* shape: ``mm`` of a ``[16, 32]`` input by a ``[32, 64]`` weight sharded column-wise on
two ranks arrives as the full ``[16, 32] × [32, 64]`` product, though each rank's kernel computes
``[16, 32] × [32, 32]``. The engine re-dispatches such a call with its mode pushed again and
declines it there (``NotImplemented``, as ``torch.distributed.tensor.debug.CommDebugMode``
does), so DTensor's dispatch runs with the counting mode active: the redistributions it needs
(functional collectives on local tensors: ``all_gather_into_tensor``, ``reduce_scatter_tensor``,
``all_reduce``, ``all_to_all_single``, plus the local copies, chunks and divisions around them)
and the op itself on the local shards each reach the engine as ops on plain tensors, and are
priced once, at the shapes the rank's kernels see. The sharding propagation's fake-tensor run of
the global op (to learn the output's metadata) computes nothing and is let through uncounted.
Attribution is unchanged: the local ops run inside the same module call, autograd node and phase
as the DTensor op they implement.

``torch.distributed.tensor`` is never imported here: a process that holds a DTensor has
imported it already.
"""

from __future__ import annotations

import sys

import torch

__all__ = ["check_profile_model", "dtensor_class", "holds_dtensor", "is_dtensor", "meta_dtensor"]


def dtensor_class():
    """The ``DTensor`` class, or ``None`` when ``torch.distributed.tensor`` is not loaded."""
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def holds_dtensor(types) -> bool:
    """Whether the tensor-subclass ``types`` of a dispatched call include DTensor (or a subclass)."""
    cls = dtensor_class()
    return cls is not None and any(isinstance(t, type) and issubclass(t, cls) for t in types)


def is_dtensor(t) -> bool:
    """Whether ``t`` is a DTensor."""
    cls = dtensor_class()
    return cls is not None and isinstance(t, cls)


def meta_dtensor(t, local):
    """A DTensor with ``t``'s mesh, placements, global size and strides around ``local`` (the
    rank's shard, e.g. on ``meta``): ops on it run DTensor's dispatch at the rank's shard shapes,
    and its redistributions run the functional collectives' meta kernels (no communication)."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(local, t.device_mesh, t.placements, run_check=False,
                              shape=t.shape, stride=t.stride())


def _fsdp_module_class():
    module = sys.modules.get("torch.distributed.fsdp")
    return getattr(module, "FSDPModule", None) if module is not None else None


def check_profile_model(model, device) -> None:
    """One-line ``ValueError`` where :func:`torch_tos.profile` cannot count ``model``'s step.

    * FSDP2 (``fully_shard``): the step all-gathers and reduce-scatters with the other ranks and
      swaps the modules' parameters between their sharded and unsharded forms — state of the
      user's modules that ``profile()`` never changes.
    * Other DTensor parameters (tensor parallelism) on their real device: the step communicates
      with the other ranks (a rank profiling alone would wait forever). On ``meta`` the rank's
      local step is counted: every parameter becomes a meta DTensor of the same mesh and
      placements (:func:`meta_dtensor`), so the shard shapes and the collectives' reductions are
      what the rank would run.
    """
    fsdp = _fsdp_module_class()
    if fsdp is not None and any(isinstance(m, fsdp) for m in model.modules()):
        raise ValueError("profile() cannot run an FSDP2 (fully_shard) model: its step all-gathers "
                         "and reduce-scatters with the other ranks and swaps the modules' parameters; "
                         "count its real steps with TOsCounter(model, optimizer) on every rank, or "
                         "profile the model before fully_shard (docs/distributed.md)")
    if dtensor_class() is None or (device is not None and torch.device(device).type == "meta"):
        return
    if any(is_dtensor(t) for t in (*model.parameters(), *model.buffers())):
        raise ValueError("profile() runs a model with DTensor parameters (tensor parallelism) on "
                         "device='meta' only: on its real device the step communicates with the other "
                         "ranks; profile(model, inputs, device='meta') counts this rank's local step, "
                         "TOsCounter(model, optimizer) counts real steps on every rank")
