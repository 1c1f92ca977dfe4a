"""``TOsCounter.total_all_ranks``: the counter's total summed over the ranks of a process group.

Counts are all-reduced as exact integers per ``(phase, dtype)`` — the five BOs and FLOPs, each
split into two 40-bit limbs so that no sum overflows ``int64`` — and priced after the reduction,
so TOs stay exact.

Energy (:func:`combine_energy`) is gathered per device, not per rank: each rank's joules per metered
device (``History.devices``, keyed by :class:`~torch_tos.energy.meters.DeviceId`: machine and GPU
UUID or RAPL zone) are gathered, every distinct ``(machine, device)`` counts once — two ranks that
read one GPU or one CPU package add it once, while the same GPU index on two hosts is two devices —
and the job's wall time is the longest rank's (the ranks run side by side), not the sum. ``None``
unless every rank has a meter.
"""

from __future__ import annotations

from fractions import Fraction

import torch

from ..bos import BOs
from ..counts import FLOPS, N_BOS, PHASES, Counts, price_bos
from ..report import PhaseTotal
from ..tables import COMPLEX_COMPONENT, FLOAT_FORMATS, INT_FORMATS
from .records import CounterTotal, History, domain_joules

__all__ = ["total_all_ranks", "combine_energy"]

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


def combine_energy(per_rank: list) -> tuple:
    """``(joules, seconds, domains)`` of a job from each rank's :meth:`History.energy` (``None``
    for a rank without a meter: then ``(None, None, {})``).

    A device (``(machine, uid)`` of its id) read by several ranks counts once, at the largest of
    their readings: the ranks step together, so their windows over it nearly coincide, and the
    largest is the closest to their union. Readings without an identity of the hardware
    (``uid is None``: a meter that does not say what it metered) are each rank's own and add up.
    ``joules`` is the sum over the distinct counted devices, ``seconds`` the longest rank's metered
    time, ``domains`` the joules of each distinct device by ``host/name`` label.
    """
    if not per_rank or any(e is None for e in per_rank):
        return None, None, {}
    best: dict = {}
    for rank, energy in enumerate(per_rank):
        for dev, joules in energy["devices"].items():
            key = (dev.machine, dev.uid) if dev.uid is not None else ("rank", rank, dev.host, dev.name)
            if key not in best or joules > best[key][1]:
                best[key] = (dev, joules)
    domains = domain_joules(best.values())
    if any(not e["devices"] for e in per_rank):  # a rank that metered nothing it could name
        joules = sum(domains.values()) + sum(e["joules"] for e in per_rank if not e["devices"])
    else:
        joules = sum(domains.values())
    seconds = [e["seconds"] for e in per_rank if e["seconds"] is not None]
    return joules, (max(seconds) if seconds else None), domains


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
    steps = torch.tensor([history.n], dtype=torch.int64)
    device = torch.device("cpu")
    if "nccl" in str(dist.get_backend(group)) and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    paused, engine.paused = engine.paused, True
    try:
        ints_d, steps_d = ints.to(device), steps.to(device)
        dist.all_reduce(ints_d, group=group)
        dist.all_reduce(steps_d, group=group)
        ints, steps = ints_d.cpu(), steps_d.cpu()
        energies = [None] * dist.get_world_size(group)
        dist.all_gather_object(energies, history.energy(), group=group)
    finally:
        engine.paused = paused
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
    joules, seconds, domains = combine_energy(energies)
    return CounterTotal(sum((p.bos for p in phases.values()), BOs()), float(tos_all),
                        sum(p.flops for p in phases.values()), int(steps[0]), joules, seconds, phases, tos_all,
                        domains)
