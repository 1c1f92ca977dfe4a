"""Training engines that run the optimizer step themselves: how :class:`~torch_tos.TOsCounter`
follows them.

Some engines wrap the model *and* own its update: DeepSpeed's ``engine.step()`` reduces or
partitions gradients, unscales and clips them, steps the ``torch.optim`` optimizer it wraps over
flat partitions of the parameters and gathers the updated partitions back — and its optimizer is
not a ``torch.optim.Optimizer``, so the counter's optimizer hooks cannot see that step. A
:class:`StepAdapter`, registered by the integration that knows the engine, tells the counter:

* :meth:`~StepAdapter.claims` — whether the object the loop calls is such an engine;
* :meth:`~StepAdapter.check_optimizer` — the optimizer the user passed (``None`` or the engine's
  own; anything else is a one-line ``TypeError`` naming what is accepted), and :meth:`~StepAdapter.describe`
  — the name the report gives the optimizer;
* :meth:`~StepAdapter.step_state` — the optimizer whose ``state`` and ``param_groups`` describe a
  step (the wrapped ``torch.optim`` optimizer): the step cache's signature;
* :meth:`~StepAdapter.attach` — tell the counter's :class:`Marks` when an optimizer step of the
  engine begins and ends (the engine's own boundary: once per gradient-accumulation cycle) and
  which calls are the engine's backward; it returns a handle whose ``remove()`` undoes everything.

The counter books everything between :meth:`Marks.optimizer_begin` and :meth:`Marks.optimizer_end`
in the ``optimizer`` phase (layer ``(optimizer)``) and closes the step at the end; inside
:meth:`Marks.backward` every op is ``backward`` work (the engine's gradient reduction after the
autograd pass included; ops outside any autograd node are booked under layer ``(loss)``). The step
is keyed in the cache by an :class:`EngineStep` — never a trusted type, so the engine's own Python
code is traced and a step whose work changes (a skipped fp16 step, clipping that applies) is
recounted.

The training package imports no integration: :func:`autoload_step_adapter` names, as strings, a
module to import when its library has been imported by the time a counter is made (the package
root declares DeepSpeed's), and the module registers its adapter with
:func:`register_step_adapter`.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Protocol

import torch

from ..plugins import Plugins

__all__ = ["EngineStep", "Marks", "StepAdapter", "autoload_step_adapter", "register_step_adapter",
           "step_adapter", "unregister_step_adapter"]


class StepAdapter(Protocol):
    """What an integration tells the counter about an engine that owns the optimizer step."""

    def claims(self, model: torch.nn.Module) -> bool: ...

    def check_optimizer(self, model: torch.nn.Module, optimizer): ...

    def describe(self, model: torch.nn.Module) -> str: ...

    def step_state(self, model: torch.nn.Module): ...

    def attach(self, model: torch.nn.Module, marks: "Marks"): ...


class Marks:
    """What an adapter calls to tell a counter where the engine is; acts only in the counter's
    thread (``thread``, an ident) and does nothing elsewhere."""

    __slots__ = ("_tracker", "_thread")

    def __init__(self, tracker, thread: int):
        self._tracker, self._thread = tracker, thread

    def _here(self) -> bool:
        return threading.get_ident() == self._thread and self._tracker.active

    def optimizer_begin(self) -> None:
        """The engine's optimizer step begins: what follows is ``optimizer`` work."""
        if self._here():
            step = self._tracker.optimizer
            self._tracker.on_opt_pre(step, (step,), {})

    def optimizer_end(self) -> None:
        """The engine's optimizer step has returned: the training step closes."""
        if self._here():
            step = self._tracker.optimizer
            self._tracker.on_opt_post(step, (step,), {})

    @contextmanager
    def backward(self):
        """The body is the engine's backward: every op in it is ``backward`` work."""
        if not self._here():
            yield
            return
        engine = self._tracker.engine
        previous, engine.phase = engine.phase, "backward"
        try:
            yield
        finally:
            engine.phase = previous


class EngineStep:
    """The optimizer step of an engine as the step tracker sees it: the ``state`` and
    ``param_groups`` of the optimizer the engine wraps (the step's signature), under a type the
    tracker never trusts."""

    __slots__ = ("_optimizer",)

    def __init__(self, optimizer):
        self._optimizer = optimizer

    @property
    def state(self):
        return getattr(self._optimizer, "state", {}) if self._optimizer is not None else {}

    @property
    def param_groups(self):
        return getattr(self._optimizer, "param_groups", []) if self._optimizer is not None else []


#: name → the StepAdapter registered by an integration, and the integration to import once its
#: library has been imported
_ADAPTERS = Plugins("step adapter", needs=("claims", "check_optimizer", "describe", "step_state", "attach"),
                    expects=" (see torch_tos.training.adapters.StepAdapter)")


def register_step_adapter(name: str, adapter: StepAdapter) -> None:
    """Let every counter made from now on follow the engines ``adapter`` claims (registering
    ``name`` again replaces it)."""
    _ADAPTERS.register(name, adapter)


def unregister_step_adapter(name: str) -> None:
    """Forget the adapter registered as ``name`` (no error if there is none)."""
    _ADAPTERS.unregister(name)


def autoload_step_adapter(library: str, module: str) -> None:
    """When ``library`` has been imported by the time a counter is made, import ``module`` first
    (it registers its adapter on import). Neither is imported before that."""
    _ADAPTERS.autoload(library, module)


def step_adapter(model) -> StepAdapter | None:
    """The adapter that claims ``model``, or ``None`` (a plain module: optimizer hooks suffice)."""
    for adapter in _ADAPTERS.current():
        if adapter.claims(model):
            return adapter
    return None
