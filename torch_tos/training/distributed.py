"""``TOsCounter.total_all_ranks``: the counter's total summed over the ranks of a process group.

Counts are all-reduced as exact integers per ``(phase, dtype)`` — the five BOs and FLOPs, each
split into two 40-bit limbs so that no sum overflows ``int64`` — and priced after the reduction,
so TOs stay exact. Joules/seconds are summed over ranks (``None`` unless every rank has a meter).
"""

from __future__ import annotations

from fractions import Fraction

import torch

from ..bos import BOs
from ..counts import FLOPS, N_BOS, PHASES, Counts, price_bos
from ..report import PhaseTotal
from ..tables import COMPLEX_COMPONENT, FLOAT_FORMATS, INT_FORMATS
from .records import CounterTotal, History

__all__ = ["total_all_ranks"]

_LIMB = 40
_MASK = (1 << _LIMB) - 1
_FIELDS = (*range(N_BOS), FLOPS)


def _dtypes() -> list:
    return sorted({*FLOAT_FORMATS, *INT_FORMATS, *COMPLEX_COMPONENT}, key=str)


def local_table(history: History) -> Counts:
    """All recorded steps' counts as one table."""
    out = Counts()
    for summary, n in history.uses.items():
        out.merge(summary.counts, n)
    return out


def total_all_ranks(history: History, engine, table, dtype, group=None) -> CounterTotal:
    """See :meth:`TOsCounter.total_all_ranks`. ``engine`` is paused during the collectives (their
    ops are not part of any step)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return history.total()
    dtypes = _dtypes()
    index = {d: i for i, d in enumerate(dtypes)}
    ints = torch.zeros(len(PHASES), len(dtypes), len(_FIELDS), 2, dtype=torch.int64)
    for (phase, dt), row in local_table(history).group("phase", "dtype").items():
        if phase not in PHASES or dt not in index:
            raise ValueError(f"cannot all-reduce counts of phase {phase!r}, dtype {dt}")
        cell = ints[PHASES.index(phase), index[dt]]
        for j, f in enumerate(_FIELDS):
            cell[j, 0] = row[f] >> _LIMB
            cell[j, 1] = row[f] & _MASK
    has_meter = history.joules is not None
    floats = torch.tensor([history.joules or 0.0, history.seconds or 0.0, float(has_meter),
                           float(history.n)], dtype=torch.float64)
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend(group)) and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    paused, engine.paused = engine.paused, True
    try:
        ints_d, floats_d = ints.to(device), floats.to(device)
        dist.all_reduce(ints_d, group=group)
        dist.all_reduce(floats_d, group=group)
        ints, floats = ints_d.cpu(), floats_d.cpu()
    finally:
        engine.paused = paused
    world = dist.get_world_size(group)
    phases, tos_all = {}, Fraction(0)
    for pi, phase in enumerate(PHASES):
        block = ints[pi].tolist()
        vals = [[(hi << _LIMB) + lo for hi, lo in cell] for cell in block]  # per dtype: 5 BOs, flops
        if not any(any(v) for v in vals):
            continue
        tos = sum((price_bos(table, v[:N_BOS], dtype or d) for d, v in zip(dtypes, vals) if any(v[:N_BOS])),
                  Fraction(0))
        bos = BOs(*(sum(v[i] for v in vals) for i in range(N_BOS)))
        phases[phase] = PhaseTotal(bos, float(tos), sum(v[N_BOS] for v in vals))
        tos_all += tos
    everyone_metered = int(floats[2]) == world
    return CounterTotal(sum((p.bos for p in phases.values()), BOs()), float(tos_all),
                        sum(p.flops for p in phases.values()), int(floats[3]),
                        float(floats[0]) if everyone_metered else None,
                        float(floats[1]) if everyone_metered else None, phases, tos_all)
