"""The vocabulary of a count key ``(layer, phase, dtype, op)``: the phases and their order, the
pseudo-layers for work outside the model's modules, the recompute mark, and how layer names fold to
a depth and sort. Defined here and nowhere else; :mod:`torch_tos.counts` re-exports it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

#: The phases of a step, in the order every view lists them.
PHASES: tuple[str, ...] = ("forward", "loss", "backward", "optimizer")
PHASE_ORDER: dict[str, int] = {p: i for i, p in enumerate(PHASES)}

#: Pseudo-layers for work that runs outside the model's modules.
LOSS_LAYER = "(loss)"
OPTIMIZER_LAYER = "(optimizer)"
OUTSIDE_LAYER = "(outside)"
#: How the root module (layer ``""``) is shown in tables.
MODEL_LAYER = "(model)"
PSEUDO_LAYER_ORDER: dict[str, int] = {LOSS_LAYER: 0, OPTIMIZER_LAYER: 1, OUTSIDE_LAYER: 2}
#: Appended to the op name of work an activation-checkpointing recompute re-runs
#: (``"aten.mm (recompute)"``, booked in the backward phase under the module that re-ran).
RECOMPUTE_SUFFIX = " (recompute)"


def is_recompute(op: str) -> bool:
    return op.endswith(RECOMPUTE_SUFFIX)


#: The fields of a count key, in order.
KEY_FIELDS: tuple[str, ...] = ("layer", "phase", "dtype", "op")


class CountKey(NamedTuple):
    """Where counts belong: the layer (module path or pseudo-layer), the phase, the dtype the op
    computed in, and the aten op's name (``"aten.mm"``)."""

    layer: str
    phase: str
    dtype: torch.dtype
    op: str


def phase_sort_key(phase: str):
    return (PHASE_ORDER.get(phase, len(PHASES)), phase)


def is_pseudo_layer(layer: str) -> bool:
    return layer.startswith("(")


def fold_layer(layer: str, depth: int | None) -> str:
    """``layer`` folded into its ancestor at ``depth`` (torchinfo's ``depth``); pseudo-layers and
    the root stay as they are."""
    if depth is None or not layer or is_pseudo_layer(layer):
        return layer
    return ".".join(layer.split(".")[:depth])


def layer_and_ancestors(layer: str) -> list[str]:
    """``"a.b.c"`` → ``["", "a", "a.b", "a.b.c"]`` (fvcore's inclusive per-module view); a
    pseudo-layer is only itself."""
    if is_pseudo_layer(layer):
        return [layer]
    parts = layer.split(".") if layer else []
    return [".".join(parts[:i]) for i in range(len(parts) + 1)]


def layer_sort_key(order: dict[str, int]) -> Callable[[str], tuple]:
    """Sort key for layers: model order (``order`` maps module path → position) first, then the
    pseudo-layers ``(loss)``, ``(optimizer)``, ``(outside)``, then anything else by name."""

    def key(layer: str):
        if layer in order:
            return (0, order[layer], layer)
        return (1, PSEUDO_LAYER_ORDER.get(layer, len(PSEUDO_LAYER_ORDER)), layer)

    return key
