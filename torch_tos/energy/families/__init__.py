"""Model families: the paper's two (Table IV, :mod:`.paper`) and the micro-workloads of the
calibration suite (:mod:`.micro`), behind one :class:`Family` interface (:mod:`.base`).

``get_family(name, **options)`` builds one; :data:`FAMILIES` maps every name to its class.
"""

from __future__ import annotations

from .base import ACTIVATIONS, Config, Family
from .micro import MICRO_FAMILIES
from .paper import CNN, CNN_CHANNELS, CNN_MAX_DEPTH, FFN, cnn_kernel

PAPER_FAMILIES = {"ffn": FFN, "cnn": CNN}
FAMILIES = {**PAPER_FAMILIES, **MICRO_FAMILIES}


def get_family(name: str, **options) -> Family:
    """The family called ``name`` built with ``options`` (e.g. ``batch_size=64``)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; accepted: {', '.join(FAMILIES)}")
    return FAMILIES[name](**options)


__all__ = ["ACTIVATIONS", "Config", "Family", "FFN", "CNN", "FAMILIES", "PAPER_FAMILIES", "MICRO_FAMILIES",
           "CNN_CHANNELS", "CNN_MAX_DEPTH", "cnn_kernel", "get_family"]
