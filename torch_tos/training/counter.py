"""``TOsCounter``: BOs, TOs and FLOPs of every step of an unchanged training loop.

::

    with torch_tos.TOsCounter(model, optimizer) as counter:
        for x, y in loader:
            opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
    print(counter.total, counter.report())

**Steps** (:mod:`.steps`): a step opens at the model's first forward after the previous step
closed and closes after ``optimizer.step()`` or at :meth:`TOsCounter.step` (work between the two,
e.g. a ``zero_grad()`` before the forward or ``GradScaler.update()``, is in no step). Without
``optimizer=``, every optimizer whose parameters belong to the model is followed. Gradient
accumulation is one step; a no-grad forward is a step of its own (``validation`` when something
is computed on its output, else ``inference``; a decoding step given a key/value cache is
``inference``); a no-grad forward inside a training step is a separate ``inference`` record.

**Phases** are inferred by the engine: ``forward`` while a module of the model runs, ``backward``
inside the autograd engine, ``optimizer`` inside ``optimizer.step()`` (not inside its closure),
``loss`` for the rest. Autograd's gradient seed (``ones_like`` in ``loss.backward()``, zero BOs)
lands in ``loss``, where it runs; the profiler's ``record_function`` markers are not counted.

**Cache** (:mod:`.cache`, :mod:`.signature`, :mod:`.verify`, :mod:`.ddp`): with ``cache=True``
a step reuses counts only while the library can show it is the same work. Its events — forward
signatures (with DDP's own state), optimizer signatures, and every ``torch`` call outside trusted
library code (the loss, metrics, regularizers, closures, KV-cache reads, ``backward()`` with its
roots and DDP's communication hook, the code of optimizers other than the built-in ones; reading
and setting tensor attributes such as ``p.grad = None`` runs no op and is not an event) — are
matched against the cached sequence, the first one together with the step's starting state (which
parameters hold a gradient, how much optimizer state exists); while all match nothing is
intercepted (``"hit"``), at the first difference the step is counted from there (``"partial"``;
:attr:`StepRecord.recount` says why), attributed per layer exactly as if counted from its start
(:class:`~.hooks.CounterScope`). Segments with data-dependent shapes or with ops no traced call
covers are counted every time. A step that repeats the last one compares the values its keys are
made of with the last step's instead of walking the cache (:mod:`.replay`). ``cache=False``
intercepts every step; both give the same tables, step for step.

**Memory**: totals and :meth:`report` cover every step from O(distinct step kinds) state; the
last ``history`` records are kept in full in :attr:`steps` (``history=None``: all of them).

**Safety**: nothing is written onto the model; hooks are registered on entry (per-module hooks
only while a step is counted) and removed on exit, also when the loop raises. Hooks act only in
the thread that entered the counter (any thread may) and are no-ops in deep copies and pickles. A
second counter on the same model (or one sharing modules) while the first is active is an error,
which names the other counter's thread when it is another one.
"""

from __future__ import annotations

import logging
import operator
import sys
import threading
import weakref

import torch

from ..counter import warn_unsupported
from ..counts import Counts
from ..extensions import Extensions
from ..report import Report
from ..reporting import build_report
from ..tables import DEFAULT_TABLE, TransistorTable
from ..validation import (check_count, check_dtype, check_meter, check_model, check_optimizer,
                          check_table)
from .adapters import EngineStep, Marks, step_adapter
from .cache import StepCache
from .distributed import total_all_ranks
from .hooks import CounterEngine, CounterScope, Hook, ModuleHook
from .records import KINDS, STEP_COLUMNS, CounterTotal, History, StepRecord, Summary
from .sinks import make_sink
from .verify import model_is_trusted
from .steps import StepTracker

__all__ = ["TOsCounter", "ACTIVE"]

#: Models (root modules) with an active TOsCounter -> the counter. Kept here, never on the model.
ACTIVE: "weakref.WeakKeyDictionary[torch.nn.Module, TOsCounter]" = weakref.WeakKeyDictionary()
_ACTIVE_LOCK = threading.Lock()


class TOsCounter:
    """Count BOs, TOs and FLOPs of every step of a training loop; see the module docstring.

    Parameters: ``model`` (the ``nn.Module`` the loop calls; a ``DistributedDataParallel`` wrapper
    is fine, and so is an engine an integration follows, such as a DeepSpeed engine: see
    :mod:`.adapters`), ``optimizer`` (its ``step()`` closes a step; ``None`` follows any optimizer
    over the model's parameters, or the engine's own step), ``dtype`` (price every op in this
    format — what-if analysis), ``meter`` (an energy meter with ``measure()``; each step is
    measured), ``cache`` (reuse the counts of known steps), ``table`` (transistor constants),
    ``flop_mapping`` (extra FLOP formulas, as for :func:`torch_tos.profile`), ``history`` (how many
    recent :class:`StepRecord` objects to keep; ``None``: all), ``module_rules`` and ``ignore`` (as
    for :func:`torch_tos.profile`; see :mod:`torch_tos.extensions`).

    Results: :attr:`steps`, :attr:`total`, :meth:`report`, :meth:`to_dataframe`,
    :meth:`total_all_ranks`; logging: :meth:`log_to`.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 dtype=None, meter=None, cache: bool = True, table: TransistorTable | None = None,
                 flop_mapping: dict | None = None, history: int | None = 1000,
                 module_rules: dict | None = None, ignore=None):
        self.model = check_model(model)
        self._extensions = Extensions(ignore, module_rules)  # validated here, once
        self._extensions.layers(self.model)  # an ignored instance outside the model: fail here
        self._adapter = step_adapter(self.model)  # an engine that owns its optimizer step (.adapters)
        self.optimizer = (check_optimizer(optimizer) if self._adapter is None
                          else self._adapter.check_optimizer(self.model, optimizer))
        self.dtype: torch.dtype | None = check_dtype(dtype)
        self.meter = check_meter(meter)
        self.cache: bool = bool(cache)
        self.table: TransistorTable = check_table(table) or DEFAULT_TABLE
        if history is not None:
            history = check_count(history, "history", what="records kept; None keeps every record")
        self.history: int | None = history
        self._flop_mapping = flop_mapping
        self._sinks: list = []
        self._handles: list = []
        self._active = False
        self._thread: threading.Thread | None = None  # the thread that entered it
        self._warned: set = set()
        self._reset()

    def _reset(self) -> None:
        """Fresh results and cache; the hooks' thread is set on entry."""
        self._records = History(self.history)
        self._cache = StepCache(self.cache, self.table, self.dtype)
        self._scope = CounterScope(self.model, threading.get_ident())
        self._engine = CounterEngine(self._scope, flop_mapping=self._flop_mapping,
                                     extensions=self._extensions)
        adapter, followed = self._adapter, self.optimizer
        if adapter is not None:
            followed = EngineStep(adapter.step_state(self.model))
        self._tracker = StepTracker(self.model, followed, self._engine, self._scope, self._cache,
                                    self.meter, self._record)
        self._tracker.history, self._tracker.sinks = self._records, self._sinks
        if adapter is not None:
            self._tracker.optimizer_types = {adapter.describe(self.model)} - {""}

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> "TOsCounter":
        model = self.model
        here = threading.current_thread()
        with _ACTIVE_LOCK:  # two threads entering at once: one wins, the other gets the error
            if self._active:
                if self._thread is here:
                    raise RuntimeError("this TOsCounter is already active: `with counter:` blocks of one "
                                       "counter cannot be nested (the outer one covers everything)")
                raise RuntimeError(
                    f"this TOsCounter is already active in thread {self._thread.name!r}: a counter "
                    "counts the ops of the one thread that entered it — leave it there first, or give "
                    "this thread its own counter (over its own model)")
            mine = {id(m) for m in model.modules()}
            for other in list(ACTIVE.keys()):
                if id(other) in mine or any(m is model for m in other.modules()):
                    what = "model" if other is model else "a model sharing modules with it"
                    holder = ACTIVE.get(other)
                    thread = holder._thread if holder is not None else None
                    if thread is not None and thread is not here:
                        raise RuntimeError(
                            f"a TOsCounter is already active on this {what} ({type(other).__name__}) "
                            f"in thread {thread.name!r}: a model is counted by one counter at a time, "
                            "and a counter sees only the thread that entered it (calls of the model "
                            "from other threads are not counted) — count this thread's work on a copy "
                            "of the model, or after the other counter exits")
                    raise RuntimeError(
                        f"a TOsCounter is already active on this {what} ({type(other).__name__}); "
                        "nested TOsCounters on the same model are not supported — use one counter "
                        "(its steps, total and report() cover everything the loop runs)")
            ACTIVE[model] = self
            self._active = True
            self._thread = here
        tracker = self._tracker
        thread = self._scope.thread = threading.get_ident()
        try:
            tracker.model_trusted = model_is_trusted(model)  # before any hook of ours is on it
            tracker.stretch.enter(sys._getframe(1), tracker.model_trusted, tracker.ddp)
            self._scope.attach()  # names and types of every module for the report
            self._scope.detach()
            self._handles.append(model.register_forward_pre_hook(
                ModuleHook(tracker.on_root_pre, thread), with_kwargs=True, prepend=True))
            self._handles.append(model.register_forward_hook(
                ModuleHook(tracker.on_root_post, thread), prepend=True, always_call=True))
            if self._adapter is not None:  # the engine's own step: marked by the adapter
                self._handles.append(self._adapter.attach(model, Marks(tracker, thread)))
            elif self.optimizer is not None:
                opt = self.optimizer
                pre = opt.register_step_pre_hook(Hook(tracker.on_opt_pre, thread))
                self._handles += [pre, opt.register_step_post_hook(Hook(tracker.on_opt_post, thread))]
                tracker.stretch.hook_ids = (pre.id,)
            else:
                from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                                   register_optimizer_step_pre_hook)

                pre = register_optimizer_step_pre_hook(Hook(tracker.on_opt_pre, thread))
                self._handles += [pre, register_optimizer_step_post_hook(Hook(tracker.on_opt_post, thread))]
                tracker.stretch.hook_ids = (pre.id,)
            tracker.active = True
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._tracker.step is not None:
                if exc_type is None:
                    self._tracker.close()
                else:  # the loop raised mid-step: drop the unfinished step
                    self._tracker.discard(exc_type, exc, tb)
        finally:
            self._cleanup()
        return False

    def _cleanup(self) -> None:
        tracker = self._tracker
        tracker.active = False
        tracker.stop_counting()
        tracker.stretch.reset()
        tracker.replay.forget()
        tracker.step = None
        self._engine.phase = None
        self._engine.paused = False
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if tracker.inner_handle is not None:
            tracker.inner_handle.remove()
            tracker.inner_handle = None
        for sink in self._sinks:
            sink.close()
        with _ACTIVE_LOCK:
            if ACTIVE.get(self.model) is self:
                del ACTIVE[self.model]
            self._active = False
            self._thread = None

    # -- explicit step control ---------------------------------------------------------------
    def step(self) -> StepRecord | None:
        """Close the open step (if any) and return its record. Needed only without an optimizer
        (or when ``optimizer.step()`` may be skipped, e.g. by a ``GradScaler``)."""
        return self._tracker.close()

    def begin_step(self, *inputs, **kw_inputs) -> None:
        """Open a step explicitly, with the signature of ``inputs`` (e.g. the batch). For training
        frameworks that do not call the model's root module (a ``LightningModule`` whose
        ``training_step`` calls submodules); the step then closes at ``optimizer.step()`` or
        :meth:`step`, and root forwards inside it do not start new steps."""
        if not self._active:
            raise RuntimeError("begin_step() needs an active TOsCounter (use it inside `with counter:`)")
        self._tracker.begin(inputs, kw_inputs)

    # -- recording ---------------------------------------------------------------------------
    def _record(self, summary: Summary, cache: str, energy, new: bool, recount) -> StepRecord:
        if new and summary.unsupported:  # one warning per op name over the counter's life
            fresh = {k: v for k, v in summary.unsupported.items() if k[0] not in self._warned}
            if fresh:
                self._warned.update(k[0] for k in fresh)
                warn_unsupported(fresh, stacklevel=4)
        rec = self._records.add(summary, cache, energy, recount)
        for sink in self._sinks:
            sink(rec, self._records.running_tos)
        return rec

    # -- results -----------------------------------------------------------------------------
    @property
    def steps(self) -> list[StepRecord]:
        """The recorded steps, in order (the last ``history`` of them)."""
        return list(self._records.recent)

    @property
    def total(self) -> CounterTotal:
        """BOs, TOs and FLOPs (and joules/seconds with a meter) of all recorded steps."""
        return self._records.total()

    def report(self, step: int | None = None, kind: str | None = None) -> Report:
        """The per-layer :class:`Report` (as :func:`torch_tos.profile` returns) of one step
        (``step=i``, negative indices allowed) or of all steps of ``kind`` (``"training"``,
        ``"validation"``, ``"inference"``; ``None``: every recorded step)."""
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
        if step is not None:
            rec = self._records.record(_index(step))
            uses, first = {rec.summary: 1}, rec.index
        else:
            uses = {s: n for s, n in self._records.uses.items() if kind is None or s.kind == kind}
            first = None
        counts, unsupported = Counts(), {}
        for summary, n in uses.items():
            counts.merge(summary.counts, n)
            for k, v in summary.unsupported.items():
                unsupported[k] = unsupported.get(k, 0) + v * n
        optimizers = ", ".join(sorted(self._tracker.optimizer_types))
        kinds = sorted({s.kind for s in uses}, key=KINDS.index)
        meta = {"mode": "+".join(kinds) if kinds else None, "model": type(self.model).__name__,
                "steps": sum(uses.values()), "step": first, "source": "TOsCounter"}
        if optimizers:
            meta["optimizer"] = optimizers
        return build_report(counts, unsupported, self._scope, model=self.model, dtype=self.dtype,
                            table=self.table, metadata=meta, optimizer=optimizers or None,
                            uncalled=False)

    def to_dataframe(self):
        """pandas DataFrame, one row per kept step, columns :data:`STEP_COLUMNS`."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self._records.recent], columns=STEP_COLUMNS)

    def log_to(self, target, *, level: int = logging.INFO) -> "TOsCounter":
        """Log every step as it closes to ``target``: a ``torch.utils.tensorboard.SummaryWriter``
        (global step = step index; training steps as ``tos/step``, ``flops/step``,
        ``energy/joules``, ``energy/joules_per_tos``, validation and inference steps under their
        own tags — ``tos/validation_step``, ``flops/inference_step``, ``energy/inference_joules``
        …; ``tos/total`` for all), a ``logging.Logger`` (one line per step at ``level``), a CSV
        path (one row per step, columns :data:`STEP_COLUMNS`, each appended as one whole line; the
        header is written when the file is new; the path is checked now and a torn last line
        repaired; under ``torch.distributed`` each rank writes its own ``<name>.rank<r>.csv``
        with a leading ``rank`` column — see :mod:`.sinks`), or a callable taking the
        :class:`StepRecord`. Returns the counter, so calls chain."""
        self._sinks.append(make_sink(target, level))
        return self

    def total_all_ranks(self, group=None) -> CounterTotal:
        """:attr:`total` summed over all ranks of ``group`` (``torch.distributed`` all-reduce;
        every rank must call it), exact (see :mod:`.distributed`). Without an initialised process
        group, the local total."""
        return total_all_ranks(self._records, self._engine, self.table, self.dtype, group)

    def __repr__(self) -> str:
        t = self.total
        return (f"TOsCounter({type(self.model).__name__}, steps={self._records.n}, tos={t.tos:.6g}, "
                f"flops={t.flops}, cache={self.cache}, active={self._active})")


def _index(step) -> int:
    """A step index (negative from the end): any integral number, e.g. ``numpy.int64``."""
    try:
        if not isinstance(step, bool):
            return operator.index(step)
    except TypeError:
        pass
    raise TypeError(f"step must be an integer step index (negative: from the end), got {step!r}")
