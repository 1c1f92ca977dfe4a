"""The FLOPs baseline: PyTorch's own ``torch.utils.flop_counter`` formulas.

``FLOP_FORMULAS`` is ``flop_counter.flop_registry`` plus the entries of :data:`CUSTOM_MAPPING`,
wrapped exactly as ``FlopCounterMode(custom_mapping=...)`` wraps them, so
``FlopCounterMode(custom_mapping=CUSTOM_MAPPING)`` and torch_tos always agree. ``CUSTOM_MAPPING``
closes gaps of ``FlopCounterMode`` itself (kernels it has no formula for); it reuses PyTorch's
formulas rather than re-deriving FLOPs.
"""

from __future__ import annotations

from torch.utils.flop_counter import flop_registry, shape_wrapper

#: aten packet → FLOP formula (FlopCounterMode ``custom_mapping`` convention: shape-level formula)
CUSTOM_MAPPING: dict = {}


def flop_formulas(extra: dict | None = None) -> dict:
    """``flop_registry`` + :data:`CUSTOM_MAPPING` + ``extra``, wrapped like ``FlopCounterMode`` does."""
    out = dict(flop_registry)
    for mapping in (CUSTOM_MAPPING, extra or {}):
        for k, v in mapping.items():
            out[k] = v if getattr(v, "_get_raw", False) else shape_wrapper(v)
    return out
