"""DeepSpeed: :class:`~torch_tos.TOsCounter` follows a ``DeepSpeedEngine`` (an optional extra:
``pip install 'torch-tos[deepspeed]'``).

::

    engine, optimizer, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                   config=config)
    with torch_tos.TOsCounter(engine) as counter:      # TOsCounter(engine, optimizer) is the same
        for x, y in loader:
            loss = loss_fn(engine(x), y)
            engine.backward(loss)
            engine.step()
        print(counter.total_all_ranks())               # every rank calls it

**Steps.** A step opens at the engine's first forward and closes when ``engine.step()`` returns at
a gradient-accumulation boundary (every ``step()`` with ``managed_gradient_accumulation=false``);
the micro-steps of an accumulation cycle are one step. Everything ``engine.step()`` runs at the
boundary is ``optimizer`` work (layer ``(optimizer)``): ZeRO's gradient norm and overflow checks,
unscaling and clipping, the step of the ``torch.optim`` optimizer DeepSpeed wraps (over this
rank's flat partition), the copy back to the low-precision parameters and the all-gather of the
updated partitions, ``zero_grad``. The report names the optimizer ``"AdamW in
DeepSpeedZeroOptimizer"`` (the wrapped optimizer, then DeepSpeed's).

**Per rank.** Each rank counts the ops it runs: its micro-batch's forward, loss and backward (the
full model: ZeRO partitions memory, not the forward/backward arithmetic; stage 3 gathers each
layer's parameters before its ops), the gradient reductions DeepSpeed issues (priced by the
collective rules, :mod:`torch_tos.rules.distributed`), and the optimizer over *its partition*
(stages 1–3: 1/world of the parameters, padded to DeepSpeed's alignment; stage 0: every
parameter on every rank). :meth:`~torch_tos.TOsCounter.total_all_ranks` sums the ranks exactly,
inside the ``with`` block or after it.

**How the step is followed.** DeepSpeed's optimizer is not a ``torch.optim.Optimizer`` and the
engine has no step hooks (nor does DeepSpeed offer another way to see the update), so while the
counter is active ``engine.step`` and ``engine.backward`` are instance attributes
(:mod:`torch_tos.integrations.followed`) that call the engine's own methods between the counter's
marks — in the counter's thread only; elsewhere they only call through, and copies and pickles of
the engine get its own methods. They answer as the engine's methods (name, docstring, signature,
``repr``) and are removed when the counter exits, also when the loop raises; a ``step`` or
``backward`` the user had set on the instance is put back. This is the one exception to "nothing
is written onto the model"; nothing else of the engine, its optimizer or DeepSpeed is changed.

Tested with DeepSpeed 0.19 on the CPU accelerator (``gloo``, two ranks), ZeRO stages 0–3, float32.
"""

from __future__ import annotations

import functools

try:
    import deepspeed  # noqa: F401
    from deepspeed.runtime.engine import DeepSpeedEngine
except ImportError as e:  # pragma: no cover - depends on what is installed
    raise ImportError("torch_tos.integrations.deepspeed needs DeepSpeed: "
                      "pip install 'torch-tos[deepspeed]'") from e

import torch

from ..training.adapters import register_step_adapter
from .followed import FollowedMethods

__all__ = ["DeepSpeedAdapter", "wrapped_optimizer"]


def wrapped_optimizer(optimizer):
    """The ``torch.optim`` optimizer a DeepSpeed optimizer steps (``optimizer.optimizer``), or
    ``optimizer`` itself when it is one (or nothing is wrapped)."""
    inner = getattr(optimizer, "optimizer", None)
    if isinstance(inner, torch.optim.Optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
        return inner
    return optimizer


def _at_boundary(engine) -> bool:
    """Whether the ``engine.step()`` about to run applies an update."""
    managed = getattr(engine, "managed_gradient_accumulation", None)
    if callable(managed) and not managed():
        return True  # caller-owned accumulation: every step() is the boundary
    return bool(engine.is_gradient_accumulation_boundary())


def _step(marks, engine, call, *args, **kwargs):
    """``engine.step()`` between the counter's optimizer marks when it applies an update."""
    boundary = _at_boundary(engine)
    if boundary:
        marks.optimizer_begin()
    out = call(*args, **kwargs)
    if boundary:
        marks.optimizer_end()
    return out


def _backward(marks, engine, call, *args, **kwargs):
    """``engine.backward()`` as ``backward`` work: the autograd pass and the gradient reduction."""
    with marks.backward():
        return call(*args, **kwargs)


class DeepSpeedAdapter:
    """The :class:`~torch_tos.training.adapters.StepAdapter` of ``DeepSpeedEngine``."""

    def claims(self, model) -> bool:
        return isinstance(model, DeepSpeedEngine)

    def check_optimizer(self, engine, optimizer):
        if optimizer is None or optimizer is engine.optimizer or \
                optimizer is wrapped_optimizer(engine.optimizer):
            return optimizer
        raise TypeError(f"optimizer for a DeepSpeed engine must be None or the optimizer "
                        f"deepspeed.initialize returned ({type(engine.optimizer).__name__}), got "
                        f"{type(optimizer).__name__}")

    def step_state(self, engine):
        return wrapped_optimizer(engine.optimizer)

    def describe(self, engine) -> str:
        outer = engine.optimizer
        if outer is None:
            return ""
        inner = wrapped_optimizer(outer)
        return type(inner).__name__ if inner is outer else f"{type(inner).__name__} in {type(outer).__name__}"

    def attach(self, engine, marks) -> FollowedMethods:
        return FollowedMethods(engine, {"step": functools.partial(_step, marks),
                                        "backward": functools.partial(_backward, marks)})


register_step_adapter("deepspeed", DeepSpeedAdapter())
