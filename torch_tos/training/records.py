"""Step records and totals of the training counter, read from :class:`~torch_tos.counts.Counts`.

A :class:`Summary` is the priced counts of one *kind* of step (one path through the signature
cache, or one distinct table of counts with ``cache=False``): its counts are merged once and
priced once per ``(phase, dtype)`` with :meth:`Counts.priced`. Every :class:`StepRecord` points at
a shared summary, so a record costs a few slots however large the model.

:class:`History` keeps what the counter remembers: the number of records per summary and the
energy sums (enough for exact totals and reports over all steps, O(distinct step kinds)) and the
most recent ``history`` records in full (all of them with ``history=None``), and the joules of each
metered device (:func:`device_readings`), so that totals over ranks count each device once.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

from ..bos import BO_NAMES, BOs
from ..counts import CALLS, FLOPS, N_BOS, PHASES, Counts, phase_sort_key
from ..report import PhaseTotal

__all__ = ["KINDS", "CACHE_STATES", "STEP_COLUMNS", "Summary", "StepRecord", "CounterTotal", "History",
           "ProcessReading", "device_readings"]

KINDS = ("training", "validation", "inference")

#: How a step's counts were obtained (``StepRecord.cache``).
CACHE_STATES = ("miss", "hit", "partial")

#: Columns of :meth:`TOsCounter.to_dataframe` and of the CSV log, one row per step.
STEP_COLUMNS = ["step", "kind", "cache", "recount", *BO_NAMES, "tos", "flops",
                *(f"{p}_{c}" for p in PHASES for c in (*BO_NAMES, "tos", "flops")),
                "joules", "seconds", "estimated", "joules_per_tos"]


class Summary:
    """Priced counts of one kind of step. ``counts`` (a :class:`Counts`) and ``unsupported``
    (``(op, layer, phase)`` → calls) are shared and never mutated once built. They are priced
    when a total is first read (``phases``, ``phase_tos_exact``, ``bos``, ``tos_exact``, ``tos``,
    ``flops``, ``kind``), not inside the step that made them."""

    __slots__ = ("counts", "unsupported", "_table", "_dtype", "_decoding", "_priced", "__weakref__")

    def __init__(self, counts: Counts, unsupported: dict, table, dtype, decoding: bool = False):
        self.counts, self.unsupported = counts, unsupported
        self._table, self._dtype, self._decoding = table, dtype, decoding
        self._priced = None

    def _price(self) -> tuple:
        counts, decoding = self.counts, self._decoding
        rows = counts.group("phase")
        tos = counts.priced("phase", table=self._table, dtype=self._dtype)
        order = sorted((g[0] for g in rows), key=phase_sort_key)
        phases = {p: PhaseTotal(BOs(*rows[(p,)][:N_BOS]), float(tos[(p,)]), rows[(p,)][FLOPS])
                  for p in order}
        phase_tos_exact = {p: tos[(p,)] for p in order}
        tos_exact = sum(phase_tos_exact.values(), Fraction(0))
        calls = {p: rows[(p,)][CALLS] for p in order}
        if calls.get("backward") or calls.get("optimizer"):
            kind = "training"
        elif not decoding and "loss" in phases and phases["loss"].bos:
            kind = "validation"
        else:  # a forward only, or a decoding step (its post-processing is sampling, not a loss)
            kind = "inference"
        self._priced = (phases, phase_tos_exact, sum((t.bos for t in phases.values()), BOs()),
                        tos_exact, float(tos_exact), sum(t.flops for t in phases.values()), kind)
        return self._priced

    @property
    def phases(self) -> dict:
        return (self._priced or self._price())[0]

    @property
    def phase_tos_exact(self) -> dict:
        return (self._priced or self._price())[1]

    @property
    def bos(self) -> BOs:
        return (self._priced or self._price())[2]

    @property
    def tos_exact(self) -> Fraction:
        return (self._priced or self._price())[3]

    @property
    def tos(self) -> float:
        return (self._priced or self._price())[4]

    @property
    def flops(self) -> int:
        return (self._priced or self._price())[5]

    @property
    def kind(self) -> str:
        return (self._priced or self._price())[6]


class StepRecord:
    """One step.

    * ``index`` — its position among all steps of the counter (0-based);
    * ``kind`` — ``"training"`` (backward or optimizer work), ``"validation"`` (no-grad forward
      with a loss or metric computed on its output), ``"inference"`` (forward only, or decoding);
    * ``cache`` — how its counts were obtained, one of :data:`CACHE_STATES`: ``"miss"`` every op
      intercepted and counted; ``"hit"`` every count reused from the signature cache;
      ``"partial"`` the leading part reused, the rest (from the first event that left the cached
      sequence) counted;
    * ``recount`` — why counting started (``None`` for a ``"hit"``): ``"first step"``,
      ``"cache=False"``, ``"forward signature not seen"``, ``"optimizer signature not seen"``,
      ``"call sequence differs at <torch function>"`` (the step's fingerprint left the cached
      one there), ``"data-dependent op aten.nonzero"`` / ``"op … outside any traced call"`` (a
      segment that is counted every time), …;
    * ``phases`` (``{phase: PhaseTotal(bos, tos, flops)}``), totals ``bos``, ``tos``,
      ``tos_exact``, ``flops``; with a meter ``joules``, ``seconds``, ``estimated`` and
      ``joules_per_tos`` (else ``None``).
    """

    __slots__ = ("index", "cache", "recount", "joules", "seconds", "estimated", "summary")

    def __init__(self, index: int, summary: Summary, cache: str, recount: str | None = None,
                 joules=None, seconds=None, estimated=None):
        self.index = index
        self.summary = summary
        self.cache = cache
        self.recount = recount
        self.joules = joules
        self.seconds = seconds
        self.estimated = estimated

    kind = property(lambda self: self.summary.kind)
    phases = property(lambda self: self.summary.phases)
    bos = property(lambda self: self.summary.bos)
    tos = property(lambda self: self.summary.tos)
    tos_exact = property(lambda self: self.summary.tos_exact)
    flops = property(lambda self: self.summary.flops)

    @property
    def cached(self) -> bool:
        return self.cache == "hit"

    @property
    def joules_per_tos(self):
        if self.joules is None or not self.tos:
            return None
        return self.joules / self.tos

    def to_dict(self) -> dict:
        """A flat row with the columns :data:`STEP_COLUMNS`."""
        row = {"step": self.index, "kind": self.kind, "cache": self.cache, "recount": self.recount,
               **self.bos.to_dict(), "tos": self.tos, "flops": self.flops}
        phases = self.phases
        for p in PHASES:
            t = phases.get(p)
            for name, v in zip(BO_NAMES, t.bos if t is not None else (0,) * N_BOS):
                row[f"{p}_{name}"] = v
            row[f"{p}_tos"] = t.tos if t is not None else 0.0
            row[f"{p}_flops"] = t.flops if t is not None else 0
        row.update(joules=self.joules, seconds=self.seconds, estimated=self.estimated,
                   joules_per_tos=self.joules_per_tos)
        return row

    def __repr__(self) -> str:
        energy = f", joules={self.joules:.6g}" if self.joules is not None else ""
        return (f"StepRecord(index={self.index}, kind={self.kind!r}, cache={self.cache!r}, "
                f"tos={self.tos:.6g}, flops={self.flops}{energy})")


@dataclass(frozen=True)
class ProcessReading:
    """The identity of a reading whose meter does not say what it metered (a meter without
    ``Measurement.devices``): this process's own, so sums over ranks add it and never merge it.
    Duck-types :class:`torch_tos.energy.meters.DeviceId`."""

    host: str
    pid: int
    machine = None
    uid = None
    counted = True

    @property
    def name(self) -> str:
        return f"process {self.pid}"

    @property
    def label(self) -> str:
        return f"{self.host}/{self.name}"


def device_readings(m) -> tuple:
    """``(device id, joules)`` of each domain of a closed measurement window: the meter's
    ``Measurement.readings()`` (:class:`~torch_tos.energy.meters.DeviceId`: machine, GPU UUID or RAPL
    zone) where it identifies what it metered, else one :class:`ProcessReading` of the window's
    joules; ``()`` without joules."""
    readings = getattr(m, "readings", None)
    out = tuple((dev, float(j)) for dev, j in readings()) if callable(readings) else ()
    if out:
        return out
    joules = getattr(m, "joules", None)
    return () if joules is None else ((ProcessReading(socket.gethostname(), os.getpid()), float(joules)),)


@dataclass(frozen=True)
class CounterTotal:
    """Totals over the recorded steps: ``bos``, ``tos``, ``flops``, ``steps`` (records), per-phase
    ``phases``, and with a meter ``joules``, ``seconds`` and ``joules_per_tos`` (else ``None``), and
    ``domains``: the joules of each metered device, labelled ``host/name`` (``node1/gpu:0``,
    ``node1/package-0``, ``node1/package-0/dram``; what the meter reports but does not add, such as
    RAPL's ``core``, is left out, so the domains add up to ``joules``)."""

    bos: BOs
    tos: float
    flops: int
    steps: int = 0
    joules: float | None = None
    seconds: float | None = None
    phases: dict = field(default_factory=dict, compare=False)
    tos_exact: Fraction = field(default=Fraction(0), compare=False, repr=False)
    domains: dict = field(default_factory=dict, compare=False)

    @property
    def joules_per_tos(self):
        if self.joules is None or not self.tos:
            return None
        return self.joules / self.tos


class History:
    """Records per summary, energy sums, and the last ``keep`` records (all with ``keep=None``).

    ``devices`` holds the joules of each metered device over all steps (device id → J), from the
    fourth element of a step's ``energy`` (:func:`device_readings`)."""

    def __init__(self, keep: int | None):
        self._recent: deque[StepRecord] = deque(maxlen=keep)
        self._run: list | None = None  # [summary, first index, count, counted]: hits from repeat()
        self._uses: dict[Summary, int] = {}
        self._n = 0
        self._running_tos = 0.0
        self._pending: list[Summary] = []  # recorded by add(), their TOs not yet in _running_tos
        self.joules: float | None = None
        self.seconds: float | None = None
        self.devices: dict = {}

    @property
    def recent(self) -> deque:
        """The last ``keep`` records (all with ``keep=None``), oldest first."""
        if self._run is not None:
            self._build()
        return self._recent

    @property
    def n(self) -> int:
        """How many steps are recorded."""
        self._count()
        return self._n

    @property
    def uses(self) -> dict:
        """Records per summary."""
        self._count()
        return self._uses

    @property
    def running_tos(self) -> float:
        """The TOs of every recorded step, added up step by step."""
        self._count()
        return self._running_tos

    def _count(self) -> None:
        """Adds to the running TOs the steps recorded by :meth:`add` since it was last read, then
        adds the hits of the current run that are not counted yet to the step count, the records
        per summary and the running TOs (one addition per step, in the order of the steps)."""
        total = self._running_tos
        if self._pending:
            for summary in self._pending:
                total += summary.tos
            self._pending.clear()
        run = self._run
        if run is not None and run[3] != run[2]:
            k, summary = run[2] - run[3], run[0]
            run[3] = run[2]
            self._n += k
            self._uses[summary] = self._uses.get(summary, 0) + k
            tos = summary.tos
            for _ in range(k):
                total += tos
        self._running_tos = total

    def _build(self) -> None:
        self._count()
        summary, first, count, _ = self._run
        self._run = None
        keep = self._recent.maxlen
        start = first if keep is None else max(first, first + count - keep)
        self._recent.extend([StepRecord(i, summary, "hit") for i in range(start, first + count)])

    def repeat(self, summary: Summary) -> None:
        """Record a cache hit without energy: the record :meth:`add` would make, built when
        :attr:`recent` is read, and counted in :attr:`n`, :attr:`uses` and :attr:`running_tos`
        when they are read (a run of such steps costs one addition until then)."""
        run = self._run
        if run is not None and run[0] is summary:
            run[2] += 1
            return
        if run is not None:
            self._build()
        self._run = [summary, self._n, 1, 0]

    def add(self, summary: Summary, cache: str, energy=None, recount=None) -> StepRecord:
        """Record a step; ``energy`` is ``(joules, seconds, estimated[, readings])``."""
        if self._run is not None:
            self._build()
        if energy is None:
            rec = StepRecord(self._n, summary, cache, recount)
        else:
            rec = StepRecord(self._n, summary, cache, recount, *energy[:3])
            if rec.joules is not None:
                self.joules = (self.joules or 0.0) + rec.joules
            if rec.seconds is not None:
                self.seconds = (self.seconds or 0.0) + rec.seconds
            for dev, joules in (energy[3] if len(energy) > 3 else ()):
                self.devices[dev] = self.devices.get(dev, 0.0) + joules
        self._n += 1
        self._recent.append(rec)
        uses = self._uses
        uses[summary] = uses.get(summary, 0) + 1
        self._pending.append(summary)  # its TOs: when running_tos is read (priced then)
        if len(self._pending) >= 1024:  # bounded
            self._count()
        return rec

    def record(self, index: int) -> StepRecord:
        """The record of step ``index`` (negative: from the end), if it is still kept."""
        i = index + self.n if index < 0 else index
        first = self.n - len(self.recent)
        if not first <= i < self.n:
            kept = f"steps {first}..{self.n - 1} are kept" if self.recent else "no step is recorded"
            raise IndexError(f"step {index} is not kept ({kept}; pass history=None to keep all)")
        return self.recent[i - first]

    def total(self) -> CounterTotal:
        acc: dict[str, list] = {}
        for summary, n in self.uses.items():
            for p, t in summary.phases.items():
                a = acc.setdefault(p, [BOs(), Fraction(0), 0])
                a[0] += t.bos * n
                a[1] += summary.phase_tos_exact[p] * n
                a[2] += t.flops * n
        order = sorted(acc, key=phase_sort_key)
        phases = {p: PhaseTotal(acc[p][0], float(acc[p][1]), acc[p][2]) for p in order}
        tos = sum((acc[p][1] for p in order), Fraction(0))
        bos = sum((acc[p][0] for p in order), BOs())
        flops = sum(acc[p][2] for p in order)
        return CounterTotal(bos, float(tos), flops, self.n, self.joules, self.seconds, phases, tos,
                            domain_joules(self.devices.items()))

    def energy(self) -> dict | None:
        """What :func:`~torch_tos.training.distributed.total_all_ranks` gathers from this rank
        (``None`` without a meter)."""
        if self.joules is None:
            return None
        return {"joules": self.joules, "seconds": self.seconds, "devices": dict(self.devices)}


def domain_joules(readings) -> dict:
    """``{label: joules}`` of the counted devices among ``(device id, joules)`` pairs (labels shared
    by two devices add up)."""
    out: dict = {}
    for dev, joules in readings:
        if dev.counted:
            out[dev.label] = out.get(dev.label, 0.0) + joules
    return out
