"""The one factory of :class:`~torch_tos.report.Report`: counts, the scope they were attributed
under and the model they came from, as a report.

:func:`torch_tos.profile`, :meth:`Engine.report <torch_tos.counter.Engine.report>` and
:meth:`TOsCounter.report <torch_tos.TOsCounter.report>` all call :func:`build_report`, so the
three give the same report for the same step: layer types, model order and output shapes from the
scope (:class:`~torch_tos.attribution.ModuleScope`), parameters per module from the model, the
names of the ``(loss)`` and ``(optimizer)`` pseudo-layers, and the transistor table, dtype
override, law and metadata the caller chose.
"""

from __future__ import annotations

import torch

from .attribution import module_params, own_params
from .counts import LOSS_LAYER, OPTIMIZER_LAYER
from .report import Report
from .tables import TransistorTable


def build_report(counts, unsupported: dict, scope=None, *, model: torch.nn.Module | None = None,
                 dtype: torch.dtype | None = None, table: TransistorTable | None = None,
                 metadata: dict | None = None, law=None, loss: str | None = None,
                 optimizer: str | None = None, uncalled: bool = True) -> Report:
    """The :class:`Report` of ``counts`` (a :class:`~torch_tos.counts.Counts`) and ``unsupported``
    (``{(op, layer, phase): calls}``) attributed under ``scope`` (a ModuleScope, or ``None``:
    everything under the layer ``""``) on ``model`` (its parameters per module; ``None``: none).

    ``loss`` and ``optimizer`` name the ``(loss)`` and ``(optimizer)`` pseudo-layers' types
    (``"MSELoss"``, ``"SGD"``); ``uncalled=False`` leaves out the modules that never ran (a
    training counter's report sums steps that need not have run the same modules). ``dtype`` is
    a parsed dtype override; ``table``, ``metadata`` and ``law`` are the report's own.
    """
    types = dict(getattr(scope, "types", None) or {})
    if loss:
        types[LOSS_LAYER] = loss
    if optimizer:
        types[OPTIMIZER_LAYER] = optimizer
    has_model = model is not None
    return Report(counts, unsupported, types=types, order=getattr(scope, "order", None), dtype=dtype,
                  table=table, metadata=metadata, law=law,
                  params=module_params(model) if has_model else None,
                  own_params=own_params(model) if has_model else None,
                  uncalled=scope.uncalled() if has_model and uncalled and scope is not None else None,
                  shapes=getattr(scope, "shapes", None))
