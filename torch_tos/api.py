"""``torch_tos.profile``: count one forward / validation / training step of a real ``nn.Module``."""

from __future__ import annotations

import dataclasses

import torch

from ._compat import tree_leaves
from .attribution import ModuleScope
from .counter import Engine, warn_unsupported
from .extensions import Extensions
from .report import Report, check_law
from .reporting import build_report
from .sharded import check_profile_model
from .tables import DEFAULT_TABLE, TransistorTable
from .workspace import Workspace
from .validation import MODES, check_profile_args, split_inputs  # noqa: F401 - MODES re-exported

SURROGATE_LOSS = "surrogate: output.sum() (no loss_fn given)"


def _tensor_leaves(output) -> list:
    """The tensors in ``output``: pytree containers (tuples, lists, dicts, Hugging Face outputs)
    and, inside them, dataclass instances, field by field (never copied)."""
    out = []
    for leaf in tree_leaves(output):
        if dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
            out += _tensor_leaves([getattr(leaf, f.name) for f in dataclasses.fields(leaf)])
        else:
            out.append(leaf)
    return out


def _surrogate_loss(output) -> torch.Tensor:
    leaves = [t for t in _tensor_leaves(output)
              if isinstance(t, torch.Tensor) and (t.is_floating_point() or t.is_complex())]
    if not leaves:
        raise ValueError("cannot build the surrogate loss output.sum(): the model returned no "
                         "floating-point tensor; pass loss_fn=")
    total = leaves[0].sum()
    for t in leaves[1:]:
        total = total + t.sum()
    return total


def profile(model: torch.nn.Module, inputs, *, mode: str = "inference", target=None, loss_fn=None,
            optimizer: torch.optim.Optimizer | None = None, dtype=None, device=None,
            table: TransistorTable | None = None, flop_mapping: dict | None = None,
            module_rules: dict | None = None, ignore=None, law=None) -> Report:
    """Count the BOs, TOs and FLOPs of one step of ``model`` on ``inputs``.

    ``mode``: ``"inference"`` = forward; ``"validation"`` = forward + loss; ``"training"`` =
    forward + loss + backward, plus one ``optimizer.step()`` when an optimizer is given.
    ``inputs``: a tensor, a tuple of positional inputs, or a dict of keyword inputs.
    ``loss_fn`` is called as ``loss_fn(output, target)`` (or ``loss_fn(output)`` without a target);
    without one, the loss is the documented surrogate ``output.sum()``.
    ``dtype`` prices every op in that format (what-if analysis) instead of its own.
    ``device="meta"`` counts without computing anything.

    The model, optimizer and inputs are never touched, and the weights are not copied: the step
    runs on a :class:`~torch_tos.workspace.Workspace` (on ``device`` when given) that shares the
    parameters read-only, collects gradients away from ``.grad`` and counts the optimizer step on
    a meta shadow, so parameters, gradients, buffers, hooks, optimizer state and random streams
    are exactly as before — also when the model raises. The model's train/eval flag is kept: profile
    in ``model.eval()`` for eval-mode behaviour of dropout and batch norm.

    Extensions (:mod:`torch_tos.extensions`): ``module_rules={MyBlock: fn}`` prices the forward of
    every ``MyBlock`` with ``fn(module, args, output) -> BOs`` instead of its aten ops;
    ``ignore=[torch.ops.aten.add, nn.BatchNorm2d, model.head]`` counts nothing for those ops,
    module classes or submodules. ``law`` (a cost model,
    :class:`torch_tos.energy.CostModel`) adds a ``joules`` column and ``report.prediction``
    (:meth:`Report.with_law`; the same function as ``law.predict``).
    """
    dtype, device = check_profile_args(model, mode, dtype, device, loss_fn, optimizer, table)
    check_profile_model(model, device)
    extensions = Extensions(ignore, module_rules)
    if law is not None:
        check_law(law)

    work = Workspace(model, optimizer, inputs, target, loss_fn, mode=mode, device=device)
    model_c, opt_c, inputs_c, target_c, loss_c = (work.model, work.optimizer, work.inputs,
                                                  work.target, work.loss_fn)
    args, kwargs = split_inputs(inputs_c)

    scope = ModuleScope(model_c)
    ext = extensions.translated(model, model_c)
    engine = Engine(scope, flop_mapping=flop_mapping, extensions=ext)
    engine.write_guard = work.write_guard  # undoes the step's writes to what it shares with the model
    meta = {"mode": mode, "model": type(model).__name__,
            "device": str(device) if device is not None else _device_of(model_c, args, kwargs)}
    grad = mode == "training"
    try:
        with work.rng, scope, engine, torch.set_grad_enabled(grad):
            engine.phase = "forward"
            output = model_c(*args, **kwargs)
            if mode in ("validation", "training"):
                engine.phase = "loss"
                if loss_c is not None:
                    loss = loss_c(output, target_c) if target is not None else loss_c(output)
                    meta["loss"] = type(loss_c).__name__ if isinstance(loss_c, torch.nn.Module) else \
                        getattr(loss_c, "__name__", type(loss_c).__name__)
                else:
                    loss = _surrogate_loss(output)
                    meta["loss"] = SURROGATE_LOSS
            del output
            if grad:
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise ValueError("training needs a scalar loss; loss_fn returned "
                                     f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__}"
                                     " (use reduction='mean' or 'sum')")
                engine.phase = "backward"
                loss.backward()
                del loss
                if opt_c is not None:
                    engine.phase = "optimizer"
                    work.before_optimizer()
                    opt_c.step()
                    meta["optimizer"] = type(optimizer).__name__
    finally:
        work.close()
    if isinstance(loss_fn, torch.nn.Module):
        loss_type = type(loss_fn).__name__
    else:
        loss_type = "output.sum()" if loss_fn is None and mode != "inference" else None
    warn_unsupported(engine.unsupported)
    return build_report(engine.counts, engine.unsupported, scope, model=model, dtype=dtype,
                        table=table or DEFAULT_TABLE, metadata=meta, law=law, loss=loss_type,
                        optimizer=type(optimizer).__name__ if optimizer is not None else None)


def _device_of(model, args, kwargs) -> str:
    for t in (*model.parameters(), *tree_leaves((args, kwargs))):
        if isinstance(t, torch.Tensor):
            return str(t.device)
    return "cpu"
