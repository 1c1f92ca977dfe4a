"""``TOsCounter``: BOs, TOs and FLOPs of every step of an unchanged training loop.

::

    with torch_tos.TOsCounter(model, optimizer) as counter:
        for x, y in loader:
            opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
    print(counter.total, counter.report())

**Steps.** A step opens at the first forward of the model (its root module's forward pre-hook)
after the previous step closed, and closes after ``optimizer.step()`` (its step post-hook) or at an
explicit :meth:`TOsCounter.step`. Without ``optimizer=``, every optimizer whose parameters belong to
the model is followed (global optimizer step hooks, filtered by parameter). Several forwards before
one ``optimizer.step()`` (gradient accumulation) are one step. A forward with gradients disabled
(``torch.no_grad()`` / ``torch.inference_mode()`` evaluation) is a step of its own — ``validation``
when something is computed on its output (a loss, a metric) before the next forward, else
``inference`` — so evaluation never mixes into training steps; its record closes at the next
forward, optimizer step, :meth:`TOsCounter.step` or the end of the ``with`` block. A no-grad
forward *inside* an open training step (a teacher / target network pass) is recorded as a separate
``inference`` record covering that forward, and the training step goes on.

**Phases** are inferred exactly as by the engine: ``forward`` while a module of the model runs,
``backward`` inside the autograd engine, ``optimizer`` inside ``optimizer.step()`` (but not inside
the closure it is given), ``loss`` for what runs between the end of forward and the start of
backward. Autograd's implicit gradient seed (``ones_like`` in ``loss.backward()``) is booked under
``backward``, as :func:`torch_tos.profile` books it; the profiler's ``record_function`` markers
(zero-cost bookkeeping around ``optimizer.step()``) are not counted.

**Cache.** With ``cache=True`` a step is intercepted op by op (the dispatch mode, module hooks on
every submodule) only the first time its signature is seen; later steps with the same signature
reuse those counts and run with nothing but three hooks (the model's root forward pre-hook and the
optimizer's step pre/post hooks). The signature of a forward is taken at the root forward
pre-hook: input shapes, dtypes, devices, layouts and ``requires_grad`` (and any non-tensor
arguments), the train/eval flag of every submodule whose forward may read it (all but the
``torch.nn`` classes known not to: Linear, convolutions, activations, pooling, containers, …), the
dtype and ``requires_grad`` of every parameter, grad mode, inference mode and the autocast state.
The optimizer part of a step is cached separately, keyed by which parameters have gradients, how
much optimizer state exists (the first Adam/momentum step differs from the later ones), the
hyperparameters reduced to what changes the counted work (zero, one, minus one, other — so a
learning-rate schedule does not force a recount) and the parameters' dtypes and ``requires_grad``.
Any change re-counts. A step whose sequence of forwards leaves the cached one (a smaller last
micro-batch of gradient accumulation) reuses the cached forwards before the change and counts the
rest (``cache="partial"``). The cache assumes that a step with the same signature runs the same
ops — true for ordinary models; models whose work depends on data *values* (``nonzero``,
data-dependent control flow) should use ``cache=False``, which intercepts every step.

**Safety.** Nothing is written onto the model: the hooks are registered on entry (the per-module
attribution hooks only while a step is being counted) and all removed on exit, also when the loop
raises. Hook objects turn into no-ops when the model or optimizer is deep-copied or pickled, so a
copy made inside the block is not counted. A second ``TOsCounter`` on the same model (or on one
sharing modules with it) while the first is active is an error.
"""

from __future__ import annotations

import csv
import logging
import operator
import os
import sys
import weakref
from dataclasses import dataclass, field
from fractions import Fraction

import torch

from .attribution import ModuleScope
from .bos import BO_NAMES, BOs
from .counter import PHASES, Engine, warn_unsupported
from .report import PhaseTotal, Report
from .tables import (COMPLEX_COMPONENT, DEFAULT_TABLE, FLOAT_FORMATS, INT_FORMATS, TransistorTable,
                     parse_dtype)

__all__ = ["TOsCounter", "StepRecord", "CounterTotal", "STEP_COLUMNS"]

#: Models (root modules) with an active TOsCounter -> the counter. Kept here, never on the model.
_ACTIVE: "weakref.WeakKeyDictionary[torch.nn.Module, TOsCounter]" = weakref.WeakKeyDictionary()

KINDS = ("training", "validation", "inference")

#: Columns of :meth:`TOsCounter.to_dataframe` and of the CSV log, one row per step.
STEP_COLUMNS = ["step", "kind", "cache", *BO_NAMES, "tos", "flops",
                *(f"{p}_{c}" for p in PHASES for c in (*BO_NAMES, "tos", "flops")),
                "joules", "seconds", "estimated", "joules_per_tos"]


# ------------------------------------------------------------------------------------------------
# hook objects that do not travel with copies of the model / optimizer
# ------------------------------------------------------------------------------------------------
class _Noop:
    """What a :class:`_Hook` becomes in a deep copy or a pickle: a hook that does nothing."""

    def __call__(self, *args):
        return None

    def __reduce__(self):
        return (_Noop, ())


class _Hook:
    """A hook calling ``fn``; deep copies and pickles of it are a :class:`_Noop`, so copying or
    saving the model/optimizer while the counter is active neither fails nor gets counted."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args):
        return self.fn(*args)

    def __deepcopy__(self, memo):
        return _Noop()

    def __copy__(self):
        return _Noop()

    def __reduce__(self):
        return (_Noop, ())


# ------------------------------------------------------------------------------------------------
# the engine, with two bookkeeping ops placed where profile() places them
# ------------------------------------------------------------------------------------------------
def _profiler_ops() -> set:
    out = set()
    prof = getattr(torch.ops, "profiler", None)
    for name in ("_record_function_enter", "_record_function_enter_new", "_record_function_exit"):
        packet = getattr(prof, name, None) if prof is not None else None
        if packet is None:
            continue
        for overload in packet.overloads():
            out.add(getattr(packet, overload))
    return out


_PROFILER_OPS = _profiler_ops()
_ONES_LIKE = torch.ops.aten.ones_like.default
_MAKE_GRADS = getattr(getattr(torch.autograd, "_make_grads", None), "__code__", None)


def _called_from(code, depth: int = 8) -> bool:
    f = sys._getframe(2)
    for _ in range(depth):
        if f is None:
            return False
        if f.f_code is code:
            return True
        f = f.f_back
    return False


class _CounterEngine(Engine):
    """:class:`Engine` plus two placements so that a counted step books exactly what
    ``profile(mode="training")`` books: autograd's gradient seed (``ones_like`` called by
    ``torch.autograd.backward`` before the autograd engine starts) is ``backward``, and the
    profiler's ``record_function`` markers around ``optimizer.step()`` (which fire before the step
    pre-hook and after the post-hook) are passed through uncounted."""

    def _handle(self, mode, func, args, kwargs):
        if func in _PROFILER_OPS:
            return func(*args, **kwargs)
        if (func is _ONES_LIKE and self.phase is None and not self.in_optimizer and _MAKE_GRADS is not None
                and torch._C._current_graph_task_id() == -1 and _called_from(_MAKE_GRADS)):
            self.phase = "backward"
            try:
                return Engine._handle(self, mode, func, args, kwargs)
            finally:
                self.phase = None
        return Engine._handle(self, mode, func, args, kwargs)


# ------------------------------------------------------------------------------------------------
# signatures
# ------------------------------------------------------------------------------------------------
_SCALARS = (bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size, type(None))
_TENSOR_SIG = operator.attrgetter("shape", "dtype", "requires_grad", "device", "layout")
_DTYPE_RG = operator.attrgetter("dtype", "requires_grad")
_TRAINING = operator.attrgetter("training")
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None) or (lambda: True)


def _flag_free_modules() -> frozenset:
    """``torch.nn`` module classes whose forward never reads ``self.training`` (exact types: a
    subclass may). Their train/eval flag is left out of the signature; every other module's flag
    (dropout, batch norm, RNNs, attention, RReLU, any user-defined module) is in it."""
    nn = torch.nn
    names = ("Identity", "Linear", "Bilinear", "LazyLinear", "Flatten", "Unflatten", "Sequential",
             "ModuleList", "ModuleDict", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
             "ConvTranspose2d", "ConvTranspose3d", "Embedding", "EmbeddingBag", "LayerNorm",
             "GroupNorm", "RMSNorm", "LocalResponseNorm", "Sigmoid", "Tanh", "ReLU", "ReLU6",
             "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish", "Softplus",
             "Softsign", "Softshrink", "Hardshrink", "Tanhshrink", "Hardtanh", "Hardsigmoid",
             "Hardswish", "LogSigmoid", "Threshold", "GLU", "Softmax", "Softmin", "LogSoftmax",
             "Softmax2d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
             "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AdaptiveAvgPool1d",
             "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "LPPool1d", "LPPool2d", "Upsample",
             "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle",
             "ZeroPad1d", "ZeroPad2d", "ZeroPad3d", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
             "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", "ReplicationPad1d",
             "ReplicationPad2d", "ReplicationPad3d", "CosineSimilarity", "PairwiseDistance")
    return frozenset(getattr(nn, n) for n in names if hasattr(nn, n))


_FLAG_FREE = _flag_free_modules()


def _value_sig(v):
    if isinstance(v, torch.Tensor):
        return _TENSOR_SIG(v)
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_value_sig(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((k, _value_sig(x)) for k, x in v.items()))
    return type(v).__qualname__


def _hyper_class(v):
    """A hyperparameter reduced to what changes the counted work of an optimizer step."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return v if v in (0, 1, -1) else "x"
    if isinstance(v, (tuple, list)):
        return tuple(_hyper_class(x) for x in v)
    if isinstance(v, torch.Tensor):
        return ("tensor", v.dtype, v.shape, v.device)
    return type(v).__qualname__


def _group_hyper(g: dict, memo: dict) -> int:
    """``_hyper_class`` of every hyperparameter of param group ``g``, as a small int (equal ints:
    equal classes), recomputed only when one of its values changed. ``memo``: id(group) ->
    (values, int) and classes -> int; comparing the tuple of values is cheap when they are the
    same objects."""
    values = tuple(g.values())
    hit = memo.get(id(g))
    if hit is not None and hit[0] == values:
        return hit[1]
    classes = tuple((k, _hyper_class(v)) for k, v in g.items() if k != "params")
    n = memo.setdefault(classes, len(memo))
    memo[id(g)] = (values, n)
    return n


def _optimizer_signature(opt: torch.optim.Optimizer, memo: dict):
    """What decides the counted work of ``opt.step()``: the hyperparameters of each group reduced
    by :func:`_hyper_class`, which parameters have a gradient, and how much state exists (the
    first step of Adam or momentum SGD differs from the later ones). Parameter data types are in
    the forward signature, which is part of the key too (see ``TOsCounter._optimizer_begin``)."""
    state = opt.state
    return (id(opt), len(state), sum(map(len, state.values())),
            tuple([(_group_hyper(g, memo), tuple([p.grad is None for p in g["params"]]))
                   for g in opt.param_groups]))


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
def _merge(dst: dict, src: dict, n: int = 1) -> None:
    for key, row in src.items():
        acc = dst.get(key)
        if acc is None:
            dst[key] = [v * n for v in row]
        else:
            for i, v in enumerate(row):
                acc[i] += v * n


def _merge_unsupported(dst: dict, src: dict, n: int = 1) -> None:
    for key, calls in src.items():
        dst[key] = dst.get(key, 0) + calls * n


class _Part:
    """Counts of part of a step: the forward side (forwards, losses, backwards; one segment per
    forward) or the optimizer side. Shared, never mutated once built."""

    __slots__ = ("stats", "unsupported", "sigs", "segments", "__weakref__")

    def __init__(self, segments, sigs=()):
        self.segments = tuple(segments)  # ((stats, unsupported), ...)
        self.sigs = tuple(sigs)
        self.stats, self.unsupported = {}, {}
        for stats, unsup in self.segments:
            _merge(self.stats, stats)
            _merge_unsupported(self.unsupported, unsup)


class _Summary:
    """Priced counts of one combination of parts (what a step record shows)."""

    __slots__ = ("parts", "phases", "phase_tos_exact", "bos", "tos_exact", "tos", "flops", "kind")

    def __init__(self, parts, table: TransistorTable, dtype):
        self.parts = parts
        acc: dict[str, list] = {}
        calls: dict[str, int] = {}
        for part in parts:
            for (_layer, phase, dt, _op), row in part.stats.items():
                a = acc.get(phase)
                if a is None:
                    a = acc[phase] = [0, 0, 0, 0, 0, Fraction(0), 0]
                for i in range(5):
                    a[i] += row[i]
                a[5] += table.tos_exact(row[:5], dtype if dtype is not None else dt)
                a[6] += row[6]
                calls[phase] = calls.get(phase, 0) + row[5]
        order = [p for p in PHASES if p in acc] + sorted(p for p in acc if p not in PHASES)
        self.phases = {p: PhaseTotal(BOs(*acc[p][:5]), float(acc[p][5]), acc[p][6]) for p in order}
        self.phase_tos_exact = {p: acc[p][5] for p in order}
        self.bos = sum((t.bos for t in self.phases.values()), BOs())
        self.tos_exact = sum((acc[p][5] for p in order), Fraction(0))
        self.tos = float(self.tos_exact)
        self.flops = sum(t.flops for t in self.phases.values())
        if calls.get("backward") or calls.get("optimizer"):
            self.kind = "training"
        elif "loss" in self.phases and self.phases["loss"].bos:
            self.kind = "validation"
        else:
            self.kind = "inference"


class StepRecord:
    """One step: ``index``, ``kind`` (``training`` / ``validation`` / ``inference``), ``cache``
    (``"miss"``: intercepted op by op, ``"hit"``: counts reused, ``"partial"``: some of both),
    ``phases`` (``{phase: PhaseTotal(bos, tos, flops)}``), totals ``bos``, ``tos``, ``flops``, and —
    with a meter — ``joules``, ``seconds``, ``estimated`` and ``joules_per_tos`` (else ``None``)."""

    __slots__ = ("index", "cache", "joules", "seconds", "estimated", "_summary")

    def __init__(self, index, summary, cache, joules=None, seconds=None, estimated=None):
        self.index = index
        self._summary = summary
        self.cache = cache
        self.joules = joules
        self.seconds = seconds
        self.estimated = estimated

    kind = property(lambda self: self._summary.kind)
    phases = property(lambda self: self._summary.phases)
    bos = property(lambda self: self._summary.bos)
    tos = property(lambda self: self._summary.tos)
    tos_exact = property(lambda self: self._summary.tos_exact)
    flops = property(lambda self: self._summary.flops)

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
        row = {"step": self.index, "kind": self.kind, "cache": self.cache,
               **self.bos.to_dict(), "tos": self.tos, "flops": self.flops}
        phases = self.phases
        for p in PHASES:
            t = phases.get(p)
            for name, v in zip(BO_NAMES, t.bos if t is not None else (0, 0, 0, 0, 0)):
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
class CounterTotal:
    """Totals over the recorded steps: ``bos``, ``tos``, ``flops``, ``steps`` (records), per-phase
    ``phases``, and with a meter ``joules``, ``seconds`` and ``joules_per_tos`` (else ``None``)."""

    bos: BOs
    tos: float
    flops: int
    steps: int = 0
    joules: float | None = None
    seconds: float | None = None
    phases: dict = field(default_factory=dict, compare=False)
    tos_exact: Fraction = field(default=Fraction(0), compare=False, repr=False)

    @property
    def joules_per_tos(self):
        if self.joules is None or not self.tos:
            return None
        return self.joules / self.tos


# ------------------------------------------------------------------------------------------------
# logging sinks
# ------------------------------------------------------------------------------------------------
class _TensorBoardSink:
    def __init__(self, writer):
        self.writer = writer

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        w, i = self.writer, rec.index
        w.add_scalar("tos/step", rec.tos, i)
        w.add_scalar("tos/total", running_tos, i)
        w.add_scalar("flops/step", rec.flops, i)
        if rec.joules is not None:
            w.add_scalar("energy/joules", rec.joules, i)
            if rec.joules_per_tos is not None:
                w.add_scalar("energy/joules_per_tos", rec.joules_per_tos, i)

    def close(self):
        pass


class _LoggerSink:
    def __init__(self, logger, level=logging.INFO):
        self.logger, self.level = logger, level

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        energy = ""
        if rec.joules is not None:
            energy = f", {rec.joules:.6g} J" + (" (estimated)" if rec.estimated else "")
        self.logger.log(self.level, "torch_tos step %d (%s, cache %s): %.6g TOs, %d FLOPs, total %.6g TOs%s",
                        rec.index, rec.kind, rec.cache, rec.tos, rec.flops, running_tos, energy)

    def close(self):
        pass


class _CSVSink:
    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = None
        self._writer = None

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        if self._file is None:
            d = os.path.dirname(self.path)
            if d:
                os.makedirs(d, exist_ok=True)
            self._file = open(self.path, "a", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=STEP_COLUMNS)
            if self._file.tell() == 0:
                self._writer.writeheader()
        self._writer.writerow(rec.to_dict())
        self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = self._writer = None


class _CallableSink:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, rec: StepRecord, running_tos: float) -> None:
        self.fn(rec)

    def close(self):
        pass


# ------------------------------------------------------------------------------------------------
# the open step
# ------------------------------------------------------------------------------------------------
class _Step:
    """The open step. Class attributes are the defaults; an instance sets only what differs."""

    mode = None            # None (no forward yet), "count", "cached", "mixed"
    entry = None           # the cached forward _Part this step follows ("cached"/"mixed")
    prefix = ()            # segments taken from ``entry`` before a "mixed" step left it
    opt_key = None
    opt_part = None        # _Part, or (stats, unsupported) while being counted
    opt_counting = False
    opt_cached = False
    meter_ctx = None
    meter_m = None

    segments = ()          # (stats, unsupported) per counted forward; a list once counting

    def __init__(self, grad: bool, explicit: bool, sig=None):
        self.grad = grad
        self.explicit = explicit
        self.sigs = (sig,) if sig is not None else ()


class TOsCounter:
    """Count BOs, TOs and FLOPs of every step of a training loop; see the module docstring.

    Parameters: ``model`` (the ``nn.Module`` the loop calls; a ``DistributedDataParallel`` wrapper
    is fine), ``optimizer`` (its ``step()`` closes a step; ``None`` follows any optimizer over the
    model's parameters), ``dtype`` (price every op in this format — what-if analysis), ``meter``
    (an energy meter with ``measure()``; each step is measured), ``cache`` (reuse the counts of a
    step whose signature was already seen), ``table`` (transistor constants), ``flop_mapping``
    (extra FLOP formulas, as for :func:`torch_tos.profile`).

    Results: :attr:`steps`, :attr:`total`, :meth:`report`, :meth:`to_dataframe`,
    :meth:`total_all_ranks`; logging: :meth:`log_to`.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 dtype=None, meter=None, cache: bool = True, table: TransistorTable | None = None,
                 flop_mapping: dict | None = None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError("optimizer must be a torch.optim.Optimizer or None, "
                            f"got {type(optimizer).__name__}")
        if meter is not None and not callable(getattr(meter, "measure", None)):
            raise TypeError("meter must have a measure() method returning a context manager "
                            "(e.g. torch_tos.energy.auto_meter())")
        if table is not None and not isinstance(table, TransistorTable):
            raise TypeError(f"table must be a torch_tos.TransistorTable, got {type(table).__name__}")
        self.model = model
        self.optimizer = optimizer
        self.dtype = parse_dtype(dtype) if dtype is not None else None
        self.meter = meter
        self.cache = bool(cache)
        self.table = table or DEFAULT_TABLE
        self._raw: list = []            # one entry per step: a _Summary (plain cache hit) or a tuple
        self._records: list[StepRecord] = []  # StepRecords built from _raw on demand
        self._tallied = 0               # entries of _raw already in _uses / the running sums
        self._scope = ModuleScope(model)
        self._engine = _CounterEngine(self._scope, flop_mapping=flop_mapping)
        self._sinks: list = []
        self._handles: list = []
        self._active = False
        self._engine_on = False
        self._scope_on = False
        self._step: _Step | None = None
        self._fwd_first: dict = {}      # first forward signature -> forward _Part
        self._opt_cache: dict = {}      # optimizer signature -> optimizer _Part
        self._inner_cache: dict = {}    # signature of a no-grad forward inside a training step -> _Part
        self._summaries: dict = {}      # (fwd part, opt part) -> _Summary
        self._uses: dict = {}           # _Summary -> number of records using it
        self._running_tos = 0.0
        self._joules = None
        self._seconds = None
        self._ours: dict = {}  # id(optimizer) -> (weakref, follows the model?) without optimizer=
        self._param_sig = None          # parameter dtypes / requires_grad at the last forward ...
        self._param_sig_id = -1         # ... as a small int, for the optimizer cache key
        self._param_sig_ids: dict = {}
        self._last_hit = None           # (signature, forward _Part) of the last cache hit
        self._hyper_memo: dict = {}
        self._optimizer_types: set[str] = set()
        self._inner_handle = None
        self._warned: set = set()

    # ==========================================================================================
    # context manager
    # ==========================================================================================
    def __enter__(self) -> "TOsCounter":
        model = self.model
        if self._active:
            raise RuntimeError("this TOsCounter is already active; TOsCounter cannot be nested")
        mine = {id(m) for m in model.modules()}
        for other in list(_ACTIVE.keys()):
            if id(other) in mine or any(m is model for m in other.modules()):
                what = "model" if other is model else "a model sharing modules with it"
                raise RuntimeError(
                    f"a TOsCounter is already active on this {what} ({type(other).__name__}); "
                    "nested TOsCounters on the same model are not supported — use one counter "
                    "(its steps, total and report() cover everything the loop runs)")
        _ACTIVE[model] = self
        self._active = True
        try:
            # the train/eval flag of every module whose forward may depend on it (see _FLAG_FREE)
            self._modules = [m for m in model.modules() if type(m) not in _FLAG_FREE]
            self._params = list(model.parameters())
            self._param_ids = {id(p) for p in self._params}
            self._autocast_devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
            # names and types of every module for the report (hooks registered and removed at once)
            self._scope.attach()
            self._scope.detach()
            self._handles.append(model.register_forward_pre_hook(
                _Hook(self._on_root_pre), with_kwargs=True, prepend=True))
            if self.optimizer is not None:
                self._optimizer_types.add(type(self.optimizer).__name__)
                self._handles.append(self.optimizer.register_step_pre_hook(_Hook(self._on_opt_pre)))
                self._handles.append(self.optimizer.register_step_post_hook(_Hook(self._on_opt_post)))
            else:
                from torch.optim.optimizer import (register_optimizer_step_post_hook,
                                                   register_optimizer_step_pre_hook)

                self._handles.append(register_optimizer_step_pre_hook(_Hook(self._on_opt_pre)))
                self._handles.append(register_optimizer_step_post_hook(_Hook(self._on_opt_post)))
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._step is not None:
                if exc_type is None:
                    self._close_step()
                else:  # the loop raised mid-step: drop the unfinished step
                    self._discard_step(exc_type, exc, tb)
        finally:
            self._cleanup()
        return False

    def _cleanup(self) -> None:
        if self._engine_on:
            self._engine_exit()
        if self._scope_on:
            self._scope_off()
        self._engine.in_optimizer = False
        self._engine.phase = None
        self._engine.paused = False
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._inner_handle is not None:
            self._inner_handle.remove()
            self._inner_handle = None
        for sink in self._sinks:
            sink.close()
        self._step = None
        if _ACTIVE.get(self.model) is self:
            del _ACTIVE[self.model]
        self._active = False

    # ==========================================================================================
    # explicit step control
    # ==========================================================================================
    def step(self) -> StepRecord | None:
        """Close the open step (if any) and return its record. Needed only without an optimizer
        (or when ``optimizer.step()`` may be skipped, e.g. by a ``GradScaler``)."""
        if self._step is None:
            return None
        self._close_step()
        return self.steps[-1] if self._raw else None

    def begin_step(self, *inputs, **kw_inputs) -> None:
        """Open a step explicitly, with the signature of ``inputs`` (e.g. the batch). For training
        frameworks that do not call the model's root module (a ``LightningModule`` whose
        ``training_step`` calls submodules); the step then closes at ``optimizer.step()`` or
        :meth:`step`, and root forwards inside it do not start new steps."""
        if not self._active:
            raise RuntimeError("begin_step() needs an active TOsCounter (use it inside `with counter:`)")
        self._forward_event(inputs, kw_inputs, explicit=True)

    # ==========================================================================================
    # hooks
    # ==========================================================================================
    def _on_root_pre(self, module, args, kwargs):
        if self._step is None and not self._scope_on and self.cache:
            # the common case, kept short (it runs every step): a new step whose signature is known
            sig = self._signature(args, kwargs)
            last = self._last_hit
            if last is not None and last[0] == sig:  # as the previous step: no hashing needed
                sig, entry = last
            else:
                entry = self._fwd_first.get(sig)
                if entry is not None:
                    self._last_hit = (sig, entry)
            if entry is not None:
                step = self._step = _Step(sig[0][0], False, sig)
                step.mode, step.entry = "cached", entry
                if self.meter is not None:
                    self._meter_start(step)
                return None
            self._forward_event(args, kwargs, explicit=False, sig=sig)
        elif not self._scope.stack:  # not the root called re-entrantly from inside its own forward
            self._forward_event(args, kwargs, explicit=False)
        if self._scope_on:  # the scope's own root pre-hook is left out (see ModuleScope.attach)
            self._scope.enter_root(args, kwargs)
        return None

    def _is_ours(self, opt) -> bool:
        if opt is self.optimizer:
            return True
        if self.optimizer is not None:
            return False
        hit = self._ours.get(id(opt))
        if hit is None or hit[0]() is not opt:
            mine = any(id(p) in self._param_ids for g in opt.param_groups for p in g["params"])
            hit = self._ours[id(opt)] = (weakref.ref(opt), mine)
            if mine:
                self._optimizer_types.add(type(opt).__name__)
        return hit[1]

    def _on_opt_pre(self, opt, args, kwargs):
        if opt is not self.optimizer and not self._is_ours(opt):
            return None
        if not kwargs and len(args) == 1:  # opt.step()
            step = self._step
            if step is not None and step.mode == "cached" and step.opt_key is None and self.cache:
                # the common case, kept short: the forward side came from the cache
                key = (_optimizer_signature(opt, self._hyper_memo), self._param_sig_id)
                part = self._opt_cache.get(key)
                if part is not None:
                    step.opt_key, step.opt_part, step.opt_cached = key, part, True
                    return None
            self._optimizer_begin(opt)
            return None
        closure = kwargs.get("closure") if "closure" in kwargs else (args[1] if len(args) > 1 else None)
        if closure is None:
            self._optimizer_begin(opt)
            return None
        counter = self

        def counted_closure(*a, **k):  # forward/loss/backward inside the closure are not "optimizer"
            counter._engine.in_optimizer = False
            try:
                return closure(*a, **k)
            finally:
                if counter._active:
                    counter._optimizer_begin(opt)

        if "closure" in kwargs:
            kwargs = dict(kwargs, closure=counted_closure)
        else:
            args = (args[0], counted_closure, *args[2:])
        return args, kwargs

    def _on_opt_post(self, opt, args, kwargs):
        step = self._step
        if step is None or (opt is not self.optimizer and not self._is_ours(opt)):
            return None
        if step.opt_cached and step.mode == "cached" and step.meter_ctx is None and \
                len(step.sigs) == len(step.entry.sigs):
            # the common case, kept short: everything of this step came from the cache
            summary = self._summaries.get((step.entry, step.opt_part))
            if summary is not None:
                self._step = None
                self._engine.in_optimizer = False  # set when the step came through a closure
                self._record(summary, "hit", None)
                return None
        self._optimizer_end()
        self._close_step()
        return None

    # ==========================================================================================
    # step machinery
    # ==========================================================================================
    def _signature(self, args, kwargs):
        """The forward signature (see the module docstring); kept cheap, it runs every step.
        ``sig[0][0]`` is the grad mode."""
        if len(args) == 1 and type(args[0]) is torch.Tensor:
            inputs = (_TENSOR_SIG(args[0]),)
        else:
            inputs = tuple([_value_sig(a) for a in args])
        if kwargs:
            inputs = (inputs, tuple([(k, _value_sig(v)) for k, v in kwargs.items()]))
        state = (torch.is_grad_enabled(), torch.is_inference_mode_enabled())
        if _any_autocast():
            state += tuple((torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
                           for d in self._autocast_devices)
        params = tuple(map(_DTYPE_RG, self._params))
        if params != self._param_sig:
            self._param_sig = params
            self._param_sig_id = self._param_sig_ids.setdefault(params, len(self._param_sig_ids))
        return (state, tuple(map(_TRAINING, self._modules)), params, inputs)

    def _forward_event(self, args, kwargs, explicit: bool, sig=None) -> None:
        step = self._step
        grad = torch.is_grad_enabled()
        if step is not None:
            if step.explicit and not explicit:
                return  # forwards inside an explicitly opened step belong to it
            if step.grad and not grad and not explicit:
                self._inner_eval(args, kwargs)
                return
            if not step.grad or not grad or step.mode is None:
                # an evaluation step ends at the next forward; a step opened by a bare optimizer
                # step (no forward) cannot take forwards any more
                self._close_step()
                step = None
        if sig is None:
            sig = self._signature(args, kwargs)
        if step is None:
            step = self._step = _Step(grad, explicit, sig)
            self._meter_start(step)
            i = 0
        else:
            i = len(step.sigs)
            step.sigs += (sig,)
        if step.mode is None:
            entry = self._fwd_first.get(sig) if self.cache else None
            if entry is not None:
                step.mode, step.entry = "cached", entry
            else:
                step.mode = "count"
                self._count_from_here(step)
        elif step.mode == "cached":
            e = step.entry
            if i >= len(e.sigs) or e.sigs[i] != sig:
                # the step left the cached sequence: the earlier forwards' segments come from the
                # cache, the rest is counted
                step.mode, step.prefix = "mixed", e.segments[:i]
                self._count_from_here(step)
        else:  # counting: one segment per forward
            self._new_segment(step)

    def _count_from_here(self, step: _Step) -> None:
        self._scope_attach()
        if not self._engine_on:
            self._engine_enter()
        self._new_segment(step)

    def _new_segment(self, step: _Step) -> None:
        stats, unsup = {}, {}
        if not step.segments:
            step.segments = []
        step.segments.append((stats, unsup))
        self._engine.stats, self._engine.unsupported = stats, unsup

    def _inner_eval(self, args, kwargs) -> None:
        """A no-grad forward inside an open training step: its own ``inference`` record."""
        sig = ("inner", self._signature(args, kwargs))
        part = self._inner_cache.get(sig) if self.cache else None
        if part is not None:
            self._record(self._summary(part, None), "hit", None)
            return
        engine = self._engine
        saved = (engine.stats, engine.unsupported)
        stats, unsup = {}, {}
        engine.stats, engine.unsupported = stats, unsup
        started_scope = started_engine = False
        if not self._scope_on:
            self._scope_attach()
            started_scope = True
        if not self._engine_on:
            self._engine_enter()
            started_engine = True
        holder = []

        def done(module, a, k, out):
            holder[0].remove()
            self._inner_handle = None
            if started_engine and self._engine_on:
                self._engine_exit()
            if started_scope and self._scope_on:
                # the scope's own post-hook ran before this one (registered earlier)
                self._scope_off()
            engine.stats, engine.unsupported = saved
            new = _Part([(stats, unsup)], (sig,))
            if self.cache:
                self._inner_cache[sig] = new
            self._record(self._summary(new, None), "miss", None)
            return None

        holder.append(self.model.register_forward_hook(_Hook(done), with_kwargs=True, always_call=True))
        self._inner_handle = holder[0]

    def _optimizer_begin(self, opt) -> None:
        step = self._step
        if step is not None and not step.grad:
            self._close_step()
            step = None
        if step is None:
            step = self._step = _Step(True, False)
            self._meter_start(step)
        self._engine.in_optimizer = True
        if step.opt_key is not None:  # again in the same step (a closure called several times)
            if step.opt_counting:
                self._engine.stats, self._engine.unsupported = step.opt_part
            return
        key = (_optimizer_signature(opt, self._hyper_memo), self._param_sig_id)
        step.opt_key = key
        if self._engine_on and (step.mode in ("count", "mixed")):
            stats, unsup = {}, {}
            self._engine.stats, self._engine.unsupported = stats, unsup
            step.opt_part = (stats, unsup)
            step.opt_counting = True
            return
        part = self._opt_cache.get(key) if self.cache else None
        if part is not None:
            step.opt_part, step.opt_cached = part, True
            return
        stats, unsup = {}, {}
        self._engine.stats, self._engine.unsupported = stats, unsup
        step.opt_part = (stats, unsup)
        step.opt_counting = True
        if not self._engine_on:
            self._engine_enter()

    def _optimizer_end(self) -> None:
        self._engine.in_optimizer = False
        step = self._step
        if step is not None and step.opt_counting:
            part = _Part([step.opt_part])
            step.opt_part, step.opt_counting = part, False
            self._opt_cache[step.opt_key] = part

    def _engine_enter(self) -> None:
        self._engine.__enter__()
        self._engine_on = True

    def _engine_exit(self, *exc) -> None:
        self._engine_on = False
        self._engine.__exit__(*(exc or (None, None, None)))

    def _scope_attach(self) -> None:
        if not self._scope_on:
            self._scope.attach(root_pre_hook=False)
            self._scope_on = True

    def _scope_off(self) -> None:
        self._scope.detach()
        self._scope.forget_nodes()
        self._scope_on = False

    def _stop_counting(self) -> None:
        if self._engine_on:
            self._engine_exit()
        if self._scope_on:
            self._scope_off()
        self._engine.in_optimizer = False
        self._engine.stats, self._engine.unsupported = {}, {}

    def _close_step(self) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        if self._engine_on or self._scope_on:
            self._stop_counting()
        else:
            self._engine.in_optimizer = False
        if step.opt_counting:  # step() called inside optimizer.step(): keep what was counted
            step.opt_part, step.opt_counting = _Part([step.opt_part]), False
        mode, opt = step.mode, step.opt_part
        if mode == "cached" and len(step.sigs) == len(step.entry.sigs) and (opt is None or step.opt_cached):
            fwd, cache = step.entry, "hit"  # the common case: everything reused
        else:
            fwd = None
            counted = cached = False
            if mode == "count":
                fwd = _Part(step.segments, step.sigs)
                if self.cache:
                    self._fwd_first[step.sigs[0]] = fwd
                    self._last_hit = None
                counted = True
            elif mode == "cached":
                e = step.entry
                if len(step.sigs) == len(e.sigs):
                    fwd = e
                else:  # fewer forwards than the cached step had: its first segments
                    fwd = _Part(e.segments[:len(step.sigs)], step.sigs)
                    counted = True
                cached = True
            elif mode == "mixed":
                fwd = _Part((*step.prefix, *step.segments), step.sigs)
                cached = counted = True
            if opt is not None:
                if step.opt_cached:
                    cached = True
                else:
                    counted = True
            if fwd is None and opt is None:
                self._meter_stop(step)
                return
            cache = "partial" if (cached and counted) else ("hit" if cached else "miss")
        key = (fwd, opt)
        summary = self._summaries.get(key)
        if summary is None:
            summary = self._new_summary(fwd, opt)
        self._record(summary, cache, self._meter_stop(step) if step.meter_ctx is not None else None)

    def _discard_step(self, *exc) -> None:
        step, self._step = self._step, None
        if self._engine_on:
            self._engine_exit(*exc)
        if step is not None and step.meter_ctx is not None:
            try:
                step.meter_ctx.__exit__(*exc)
            except Exception:  # the loop's own exception is the one to report
                pass

    def _summary(self, fwd, opt) -> _Summary:
        s = self._summaries.get((fwd, opt))
        return s if s is not None else self._new_summary(fwd, opt)

    def _new_summary(self, fwd, opt) -> _Summary:
        parts = tuple(p for p in (fwd, opt) if p is not None)
        s = self._summaries[(fwd, opt)] = _Summary(parts, self.table, self.dtype)
        # ops that ran without a counting rule: one warning per op name over the counter's life
        new = {k: v for part in parts for k, v in part.unsupported.items() if k[0] not in self._warned}
        if new:
            self._warned.update(k[0] for k in new)
            warn_unsupported(new, stacklevel=2)
        return s

    def _record(self, summary: _Summary, cache: str, energy) -> None:
        """Append a step. Kept cheap (it runs every step): the :class:`StepRecord` objects and the
        running sums are built when asked for (:attr:`steps`, :attr:`total`) or when logging."""
        if energy is None and cache == "hit":
            self._raw.append(summary)
        else:
            self._raw.append((summary, cache, *(energy or (None, None, None))))
        if self._sinks:
            rec = self.steps[-1]
            self._tally()
            for sink in self._sinks:
                sink(rec, self._running_tos)

    @property
    def steps(self) -> list[StepRecord]:
        """One :class:`StepRecord` per step, in order."""
        records, raw = self._records, self._raw
        for i in range(len(records), len(raw)):
            e = raw[i]
            records.append(StepRecord(i, e, "hit") if type(e) is _Summary else StepRecord(i, *e))
        return records

    def _tally(self) -> None:
        """Bring ``_uses`` (records per summary) and the running sums up to date."""
        raw, uses = self._raw, self._uses
        for i in range(self._tallied, len(raw)):
            e = raw[i]
            if type(e) is _Summary:
                summary = e
            else:
                summary, _cache, joules, seconds, _est = e
                if joules is not None:
                    self._joules = (self._joules or 0.0) + joules
                if seconds is not None:
                    self._seconds = (self._seconds or 0.0) + seconds
            uses[summary] = uses.get(summary, 0) + 1
            self._running_tos += summary.tos
        self._tallied = len(raw)

    # -- meter ----------------------------------------------------------------------------------
    def _meter_start(self, step: _Step) -> None:
        if self.meter is None:
            return
        ctx = self.meter.measure()
        step.meter_m = ctx.__enter__()
        step.meter_ctx = ctx

    def _meter_stop(self, step: _Step):
        if step.meter_ctx is None:
            return None, None, None
        step.meter_ctx.__exit__(None, None, None)
        m = step.meter_m if step.meter_m is not None else step.meter_ctx
        joules = getattr(m, "joules", None)
        seconds = getattr(m, "seconds", None)
        return (float(joules) if joules is not None else None,
                float(seconds) if seconds is not None else None, getattr(m, "estimated", None))

    # ==========================================================================================
    # results
    # ==========================================================================================
    @property
    def total(self) -> CounterTotal:
        """BOs, TOs and FLOPs (and joules/seconds with a meter) of all recorded steps."""
        self._tally()
        return self._total(self._uses.items())

    def _total(self, uses) -> CounterTotal:
        acc: dict[str, list] = {}
        steps = 0
        for summary, n in uses:
            steps += n
            for p, t in summary.phases.items():
                a = acc.setdefault(p, [BOs(), Fraction(0), 0])
                a[0] += t.bos * n
                a[1] += summary.phase_tos_exact[p] * n
                a[2] += t.flops * n
        order = [p for p in PHASES if p in acc] + sorted(p for p in acc if p not in PHASES)
        phases = {p: PhaseTotal(acc[p][0], float(acc[p][1]), acc[p][2]) for p in order}
        tos = sum((acc[p][1] for p in order), Fraction(0))
        bos = sum((acc[p][0] for p in order), BOs())
        flops = sum(acc[p][2] for p in order)
        return CounterTotal(bos, float(tos), flops, steps, self._joules, self._seconds, phases, tos)

    def _selected(self, step=None, kind=None) -> list[StepRecord]:
        if step is not None:
            return [self.steps[step]]
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; accepted: {', '.join(KINDS)}")
        return [r for r in self.steps if kind is None or r.kind == kind]

    def report(self, step: int | None = None, kind: str | None = None) -> Report:
        """The per-layer :class:`Report` (as :func:`torch_tos.profile` returns) of one step
        (``step=i``, negative indices allowed) or of all steps of ``kind`` (``"training"``,
        ``"validation"``, ``"inference"``; ``None``: every recorded step)."""
        records = self._selected(step, kind)
        counts: dict = {}
        for r in records:
            for part in r._summary.parts:
                counts[part] = counts.get(part, 0) + 1
        stats, unsupported = {}, {}
        for part, n in counts.items():
            _merge(stats, part.stats, n)
            _merge_unsupported(unsupported, part.unsupported, n)
        types = dict(self._scope.types)
        if self._optimizer_types:
            types["(optimizer)"] = ", ".join(sorted(self._optimizer_types))
        kinds = sorted({r.kind for r in records}, key=KINDS.index)
        meta = {"mode": kinds[0] if len(kinds) == 1 else "+".join(kinds) if kinds else None,
                "model": type(self.model).__name__, "steps": len(records),
                "step": records[0].index if step is not None else None, "source": "TOsCounter"}
        if self._optimizer_types:
            meta["optimizer"] = types["(optimizer)"]
        return Report(stats, unsupported, types=types, order=self._scope.order, dtype=self.dtype,
                      table=self.table, metadata=meta)

    def to_dataframe(self):
        """pandas DataFrame, one row per step, columns :data:`STEP_COLUMNS`."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.steps], columns=STEP_COLUMNS)

    # -- logging --------------------------------------------------------------------------------
    def log_to(self, target, *, level: int = logging.INFO) -> "TOsCounter":
        """Log every step as it closes to ``target``: a ``torch.utils.tensorboard.SummaryWriter``
        (scalars ``tos/step``, ``tos/total``, ``flops/step``, ``energy/joules``,
        ``energy/joules_per_tos``; global step = step index), a ``logging.Logger`` (one line per
        step at ``level``), a CSV path (one row per step, columns :data:`STEP_COLUMNS`, appended and
        flushed as it goes; the header is written when the file is new), or a callable taking the
        :class:`StepRecord`. Returns the counter, so calls chain."""
        if isinstance(target, (logging.Logger, logging.LoggerAdapter)):
            sink = _LoggerSink(target, level)
        elif isinstance(target, (str, os.PathLike)):
            sink = _CSVSink(target)
        elif callable(getattr(target, "add_scalar", None)):
            sink = _TensorBoardSink(target)
        elif callable(target):
            sink = _CallableSink(target)
        else:
            raise TypeError("log_to() accepts a torch.utils.tensorboard.SummaryWriter, a logging.Logger, "
                            f"a CSV path or a callable, got {type(target).__name__}")
        self._sinks.append(sink)
        return self

    # -- multi-process --------------------------------------------------------------------------
    def total_all_ranks(self, group=None) -> CounterTotal:
        """:attr:`total` summed over all ranks of ``group`` (``torch.distributed`` all-reduce;
        every rank must call it). BOs and FLOPs are all-reduced as exact integers per data type,
        then priced, so TOs stay exact. Joules/seconds are summed over ranks (``None`` unless every
        rank has a meter). Without an initialised process group, the local total."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self.total
        self._tally()
        dtypes = sorted({*FLOAT_FORMATS, *INT_FORMATS, *COMPLEX_COMPONENT}, key=str)
        index = {d: i for i, d in enumerate(dtypes)}
        n_phase = len(PHASES)
        ints = torch.zeros(n_phase, len(dtypes), 6, dtype=torch.int64)  # 5 BOs + flops
        for summary, n in self._uses.items():
            for part in summary.parts:
                for (_layer, phase, dt, _op), row in part.stats.items():
                    pi = PHASES.index(phase) if phase in PHASES else None
                    if pi is None or dt not in index:
                        raise ValueError(f"cannot all-reduce counts of phase {phase!r}, dtype {dt}")
                    cell = ints[pi, index[dt]]
                    for i in range(5):
                        cell[i] += int(row[i]) * n
                    cell[5] += int(row[6]) * n
        steps = sum(self._uses.values())
        has_meter = self._joules is not None
        floats = torch.tensor([self._joules or 0.0, self._seconds or 0.0, float(has_meter), float(steps)],
                              dtype=torch.float64)
        device = torch.device("cpu")
        backend = str(dist.get_backend(group))
        if "nccl" in backend and torch.cuda.is_available():
            device = torch.device("cuda", torch.cuda.current_device())
        paused, self._engine.paused = self._engine.paused, True
        try:
            ints_d, floats_d = ints.to(device), floats.to(device)
            dist.all_reduce(ints_d, group=group)
            dist.all_reduce(floats_d, group=group)
            ints, floats = ints_d.cpu(), floats_d.cpu()
        finally:
            self._engine.paused = paused
        world = dist.get_world_size(group)
        phases = {}
        tos_all = Fraction(0)
        for pi, phase in enumerate(PHASES):
            block = ints[pi]
            if not bool(block.any()):
                continue
            b = BOs(*(int(v) for v in block[:, :5].sum(0).tolist()))
            t = Fraction(0)
            for di, d in enumerate(dtypes):
                vec = [int(v) for v in block[di, :5].tolist()]
                if any(vec):
                    t += self.table.tos_exact(vec, self.dtype or d)
            phases[phase] = PhaseTotal(b, float(t), int(block[:, 5].sum()))
            tos_all += t
        bos = sum((p.bos for p in phases.values()), BOs())
        flops = sum(p.flops for p in phases.values())
        everyone_metered = int(floats[2]) == world
        return CounterTotal(bos, float(tos_all), flops, int(floats[3]),
                            float(floats[0]) if everyone_metered else None,
                            float(floats[1]) if everyone_metered else None, phases, tos_all)

    def __repr__(self) -> str:
        t = self.total
        return (f"TOsCounter({type(self.model).__name__}, steps={len(self.steps)}, tos={t.tos:.6g}, "
                f"flops={t.flops}, cache={self.cache}, active={self._active})")
