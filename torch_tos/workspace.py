"""The working set of one :func:`torch_tos.profile` step: the user's weights shared, never copied.

What ``profile()`` runs the step on, and what it costs in memory:

- **Modules** (the model, a loss module): shadows (:mod:`torch_tos.copying`) — new module objects
  whose hooks, flags, attributes and containers are the shadow's own.
- **Parameters** are shared read-only. Without a backward (``inference``, ``validation``) the
  shadow holds the user's own parameter objects: nothing writes to them. In ``training`` each
  parameter that requires grad is replaced by an alias (``nn.Parameter(p.detach())``: the same
  storage, a new autograd leaf), so gradients accumulate on the alias, never on ``p.grad``. Each
  alias's gradient is dropped as soon as it is accumulated (a post-accumulate-grad hook), after
  its size, strides and dtype are noted for the optimizer: gradients never pile up in memory.
- **The optimizer step** is counted on a meta shadow of the optimizer (its counts depend on shapes
  and dtypes only): meta parameters with meta gradients of the noted shapes, meta state. The
  user's optimizer state is never copied; the real parameters are never written. Where the real
  optimizer would default to its ``foreach`` implementation (CUDA), the shadow is told to use it
  too, so the same kernels are counted. (``fused=True`` optimizers have no meta kernels: they are
  counted with their ``foreach`` equivalent.)
  Exception: the weight of an ``Embedding``/``EmbeddingBag`` with ``max_norm`` (its forward
  renormalises rows in place) is copied.
- **Buffers** of modules in training mode are copied (the step may update them: batch-norm running
  statistics, ``num_batches_tracked``); buffers of modules in eval mode are shared read-only
  (PyTorch's modules never write buffers in eval mode).
- **Writes to what is shared**: a step that writes a shared parameter or buffer in place (weight
  clipping in ``forward``) is undone after the step — :class:`~torch_tos.writeguard.WriteGuard`
  (:attr:`Workspace.write_guard`, handed to the engine) saves each written region before its first
  write and puts it back, so
  the values are exactly as before; only written regions are copied, only during the step. A
  shared tensor that changed while the step ran without the step writing it (another thread) is
  reported with a :class:`UserWarning` naming it.
- **Inputs and targets** are copied (activation-sized); a leaf that requires grad becomes a new
  leaf that requires grad, so the input-gradient work is counted; a non-leaf (the output of ops
  that require grad) stays a non-leaf — the ``clone()`` of a new leaf that shares its data
  read-only — so the model may apply in-place ops to it (``x.relu_()``) as in the user's loop, and
  the backward stops at that leaf instead of flowing into the user's graph.
- On another ``device`` (``meta`` included) every tensor is copied onto it; on ``meta`` that is
  only sizes, strides and dtypes.
- **Random streams**: the CPU generator, every initialised CUDA device's generator, and any
  ``torch.Generator`` among the inputs are saved before the step and restored after it (also when
  the step raises), so the user's next random numbers are those they would have got.
"""

from __future__ import annotations

import warnings

import torch

from ._compat import default_foreach, disable_current_modes, own_buffers, tensor_version, tree_leaves
from .copying import Shadows, copy_tensor
from .sharded import is_dtensor, meta_dtensor
from .writeguard import WriteGuard


def _meta_like(g: torch.Tensor) -> torch.Tensor:
    if is_dtensor(g):  # a DTensor gradient: its shard on meta, same mesh and placements
        return meta_dtensor(g, _meta_like(g.to_local()))
    if g.layout == torch.strided:
        return torch.empty_strided(g.size(), g.stride(), dtype=g.dtype, device="meta")
    return g.detach().to("meta")


class RngGuard:
    """Saves and restores the CPU, CUDA (initialised devices) and given generators' states."""

    def __init__(self, generators=()):
        self.generators = [g for g in generators if isinstance(g, torch.Generator)]

    def __enter__(self):
        self._cpu = torch.get_rng_state()
        self._cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and \
            torch.cuda.is_initialized() else None
        self._gens = [(g, g.get_state()) for g in self.generators]
        return self

    def __exit__(self, *exc):
        torch.set_rng_state(self._cpu)
        if self._cuda is not None:
            torch.cuda.set_rng_state_all(self._cuda)
        for g, state in self._gens:
            g.set_state(state)
        return False


_EMBEDDINGS = (torch.nn.Embedding, torch.nn.EmbeddingBag)


def _module_flags(modules) -> tuple[dict[int, bool], set[int]]:
    """(id(buffer) → whether some module holding it is in training mode, ids of the weights an
    ``Embedding``/``EmbeddingBag`` with ``max_norm`` renormalises in place), in one walk."""
    out: dict[int, bool] = {}
    written: set[int] = set()
    for m in modules:
        for b in own_buffers(m):
            out[id(b)] = out.get(id(b), False) or m.training
        if isinstance(m, _EMBEDDINGS) and m.max_norm is not None:
            written.add(id(m.weight))
    return out, written


class Workspace:
    """The objects one profiled step runs on (see the module doc).

    ``model``, ``loss_fn``, ``inputs``, ``target``: what to run; ``optimizer``: the meta shadow to
    step (``None`` without one); ``write_guard``: the :class:`~torch_tos.writeguard.WriteGuard`
    for the counting engine (``Engine.write_guard``), which undoes the step's writes to shared
    tensors (``None`` when nothing with values is shared). Call :meth:`close` when done (also
    after an exception).
    """

    def __init__(self, model, optimizer, inputs, target, loss_fn, *, mode: str, device=None):
        self.training = mode == "training"
        self._device = torch.device(device) if device is not None else None
        self._grad_meta: dict[int, torch.Tensor] = {}   # id(alias) → meta gradient
        self._alias_of: dict[int, int] = {}              # id(alias) → id(user parameter)
        self._handles: list = []
        self._shared: list[tuple[torch.Tensor, int | None]] = []  # (user tensor, its version; None: inference)
        roots = [m for m in (model, loss_fn) if isinstance(m, torch.nn.Module)]
        self._roots = roots
        self._train_buffers, self._written = _module_flags(m for r in roots for m in r.modules())
        shadows = Shadows(self._tensor_of)
        self.model = shadows.module(model)
        self.loss_fn = shadows.module(loss_fn) if isinstance(loss_fn, torch.nn.Module) else loss_fn
        data = Shadows(self._input_of)
        self.inputs = data.value(inputs)
        self.target = data.value(target)
        self.rng = RngGuard([g for g in tree_leaves((inputs, target)) if isinstance(g, torch.Generator)])
        self.optimizer = self._meta_optimizer(optimizer) if optimizer is not None and self.training else None
        self._guard = WriteGuard([t for t, _ in self._shared])
        self.write_guard = self._guard if self._guard.watching else None

    # -- which tensor the shadow holds ---------------------------------------------------------
    def _input_of(self, t: torch.Tensor, kind: str) -> torch.Tensor:
        """An input or target: a copy; a non-leaf stays a non-leaf (module doc)."""
        if not (t.requires_grad and t.grad_fn is not None):
            return copy_tensor(t, self._device)
        with torch.no_grad():
            base = copy_tensor(t, self._device, leaf_grad=False) if self._moves(t) else t.detach()
        base.requires_grad_(True)
        with torch.enable_grad():
            return base.clone()

    def _moves(self, t: torch.Tensor) -> bool:
        return self._device is not None and self._device != t.device

    def _tensor_of(self, t: torch.Tensor, kind: str) -> torch.Tensor:
        if self._moves(t) or id(t) in self._written:
            new = copy_tensor(t, self._device)
        elif kind == "buffer" and self._train_buffers.get(id(t), False):
            return copy_tensor(t)
        else:
            self._shared.append((t, None if t.is_inference() else tensor_version(t)))
            if not (kind == "param" and self.training and t.requires_grad):
                return t
            with torch.no_grad():  # same storage, a version counter of its own (a loop stepping
                # the user's optimizer in another thread must not invalidate this step's graph)
                base = torch.empty(0, dtype=t.dtype, device=t.device).set_(
                    t.untyped_storage(), t.storage_offset(), t.size(), t.stride())
            new = torch.nn.Parameter(base, requires_grad=True)
        if kind == "param" and self.training and new.requires_grad:
            self._alias_of[id(new)] = id(t)
            self._handles.append(new.register_post_accumulate_grad_hook(self._drop_grad))
        return new

    def _names(self, tensors) -> list[str]:
        ids = {id(t) for t in tensors}
        names = {id(t): n for r in self._roots for n, t in
                 (*r.named_parameters(remove_duplicate=False), *r.named_buffers(remove_duplicate=False))
                 if id(t) in ids}
        return sorted({names.get(id(t), f"a {tuple(t.shape)} tensor attribute") for t in tensors})

    def _drop_grad(self, alias: torch.Tensor) -> None:
        g = alias.grad
        if g is not None and id(alias) in self._alias_of:
            with disable_current_modes():  # bookkeeping, not part of the counted step
                self._grad_meta[id(alias)] = _meta_like(g)
        alias.grad = None

    # -- the optimizer, on meta ----------------------------------------------------------------
    def _meta_optimizer(self, optimizer):
        self._meta_params: dict[int, torch.Tensor] = {}

        def to_meta(t, kind):
            new = copy_tensor(t, "meta")
            if kind == "param":
                self._meta_params[id(t)] = new
            return new

        shadow = Shadows(to_meta).optimizer(optimizer)
        for group, real in zip(shadow.param_groups, optimizer.param_groups):
            if group.get("fused"):
                group["fused"] = False
                group["foreach"] = True
            elif "foreach" in group and group["foreach"] is None:
                params = [p for p in real["params"] if isinstance(p, torch.Tensor)]
                foreach = default_foreach(params, bool(group.get("differentiable", False)))
                if foreach is not None:  # else the optimizer's default: the for-loop
                    group["foreach"] = foreach
        return shadow

    def before_optimizer(self) -> None:
        """Give the meta parameters the gradients the step produced (meta, same shapes)."""
        by_user = {self._alias_of[a]: g for a, g in self._grad_meta.items()}
        for user_id, meta_p in self._meta_params.items():
            meta_p.grad = by_user.get(user_id)

    # -- end -----------------------------------------------------------------------------------
    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._grad_meta.clear()
        restored = self._guard.restore()
        changed = [t for t, version in self._shared if version is not None and tensor_version(t) != version
                   and t.untyped_storage().data_ptr() not in restored]
        self._shared.clear()
        if changed:
            warnings.warn("torch_tos.profile: tensors it shares read-only with your model changed while "
                          f"it ran, not by the step: {', '.join(self._names(changed))} (another thread writing "
                          "them? they are left as that thread wrote them; profile on device='meta' to share "
                          "nothing)",
                          UserWarning, stacklevel=3)
