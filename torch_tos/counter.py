"""The counting engine: a ``TorchDispatchMode`` that prices every aten op that really runs.

A thin shim in the style of ``torch.utils.flop_counter``: for each op it looks up the rule in the
registry (:mod:`torch_tos.rules`), runs the op, calls the rule with the op's real output and
arguments, and adds the resulting :class:`BOs` — with the call, its FLOPs and the bytes its tensors
hold — to the row ``(layer, phase, dtype, op)`` of :attr:`Engine.counts`, a
:class:`~torch_tos.counts.Counts` table that every view (:class:`~torch_tos.report.Report`, the
training counter, the fx graph view) reads. The FLOPs baseline comes from PyTorch's own
``torch.utils.flop_counter.flop_registry`` — the formulas ``FlopCounterMode`` uses — evaluated on
the same ops, so the two views can never drift apart.

An op with no rule is first decomposed (as ``FlopCounterMode`` does); if it cannot be, it runs,
counts zero, and is recorded in :attr:`Engine.unsupported` — never silently dropped.
"""

from __future__ import annotations

import torch

from ._compat import (HigherOrderOperator, TorchDispatchMode, current_autograd_node,
                      current_graph_task_id, fake_mode_active)
from .flops import flop_formulas
from .attribution import ModuleScope
from .bos import BOs
from .counts import (LOSS_LAYER, N_BOS, OPTIMIZER_LAYER, OUTSIDE_LAYER, PHASES,  # noqa: F401
                     RECOMPUTE_SUFFIX, WORK_BINS, Counts, cap_bins)
from .extensions import Extensions, call_rule, module_op_name
from .hops import handle_higher_order
from .kernels import kernel_choices
from .opattrs import attrs_function
from .opcalls import op_dtype, op_name, tensor_bytes  # noqa: F401 - op_name re-exported
from .rules import lookup
from .rules.registry import ALIAS_OPS
from .rules.complex import COMPLEX_DTYPES, complex_bos
from .sharded import holds_dtensor

# Metadata queries that FlopCounterMode also lets through untouched.
_PASSTHROUGH = {
    torch.ops.aten.sym_is_contiguous.default if hasattr(torch.ops.aten, "sym_is_contiguous") else None,
    torch.ops.aten.is_contiguous.default, torch.ops.aten.is_contiguous.memory_format,
    torch.ops.aten.is_strides_like_format.default, torch.ops.aten.is_non_overlapping_and_dense.default,
    torch.ops.aten.size.default, torch.ops.aten.sym_size.default, torch.ops.aten.stride.default,
    torch.ops.aten.sym_stride.default, torch.ops.aten.storage_offset.default,
    torch.ops.aten.sym_storage_offset.default, torch.ops.aten.numel.default,
    torch.ops.aten.sym_numel.default, torch.ops.aten.dim.default, torch.ops.prim.layout.default,
}
_PASSTHROUGH.discard(None)

class UnsupportedOpWarning(UserWarning):
    """Some aten ops ran without a counting rule (they are listed in ``report.unsupported``)."""


def warn_unsupported(unsupported: dict, stacklevel: int = 3) -> None:
    """One warning naming every op of ``unsupported`` ((op, layer, phase) → calls), if any."""
    if not unsupported:
        return
    import warnings

    names = sorted({k[0] for k in unsupported})
    warnings.warn(f"torch_tos: no counting rule for {len(names)} aten op(s), counted as zero: "
                  f"{', '.join(names)} (see report.unsupported)", UnsupportedOpWarning,
                  stacklevel=stacklevel)


class _Dispatch(TorchDispatchMode):
    supports_higher_order_operators = True  # torch.cond & co. reach _handle (see hops.py)

    def __init__(self, engine: "Engine"):
        super().__init__()
        self.engine = engine
        self._dtensor_depth = 0   # DTensor dispatches running under this mode
        self._declining = None    # the DTensor op this mode re-dispatched and now declines

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if isinstance(func, HigherOrderOperator):  # its body's ops come back here, DTensor or not
            return handle_higher_order(self.engine, self, func, args, kwargs or {})
        if types or self._dtensor_depth:  # tensor subclasses (plain tensors: no types)
            if holds_dtensor(types):
                return self._dtensor_op(func, types, args, kwargs or {})
            if self._dtensor_depth and fake_mode_active():
                return func(*args, **(kwargs or {}))  # DTensor's shape propagation: no work done
        return self.engine._handle(self, func, args, kwargs or {})

    def _dtensor_op(self, func, types, args, kwargs):
        """An op on DTensors: run DTensor's dispatch with this mode active (:mod:`.sharded`)."""
        if self._declining is func:
            self._declining = None
            return NotImplemented  # DTensor's own dispatch runs next, this mode still active
        self._dtensor_depth += 1
        self._declining = func
        try:
            with self:
                return func(*args, **kwargs)
        finally:
            self._declining = None
            self._dtensor_depth -= 1


_IGNORED = object()  # resolution of an op the user ignores


class Engine:
    """Counts the BOs (and FLOPs) of every aten op run inside ``with engine:``.

    Attribution: ``model=`` attributes ops to that model's modules for *any* code run inside the
    ``with`` (the engine registers its hooks on entry and removes them on exit); ``scope`` (a
    :class:`~torch_tos.attribution.ModuleScope`) does the same for a caller that manages the hooks
    itself. Forward ops go to the innermost running module, backward ops to the layer that created
    the running autograd node, an activation-checkpointing recompute to the module that re-ran,
    in the backward phase, with the op name marked ``" (recompute)"``. Without either every op is
    booked under the layer ``""``. A shared module is booked under the name through which each
    call reached it (:class:`~torch_tos.attribution.ModuleScope`).

    ``phase`` is the phase ops are booked under; when it is ``None`` the phase is inferred
    (backward inside the autograd engine, optimizer while ``in_optimizer`` is set, forward inside
    the model — or everywhere when there is no scope — loss otherwise).

    ``module_rules`` and ``ignore``: see :mod:`torch_tos.extensions`; ``extensions``: the same,
    already validated (an :class:`~torch_tos.extensions.Extensions`, what :func:`torch_tos.profile`
    and :class:`~torch_tos.TOsCounter` pass). ``write_guard`` (``None``,
    or a :class:`~torch_tos.writeguard.WriteGuard` that :func:`torch_tos.profile` sets) is told of
    every op before it runs.

    Re-entering: counts *accumulate* over several ``with engine:`` blocks (unlike
    ``FlopCounterMode``, which restarts on each ``with``); call :meth:`reset` to start again, and
    :meth:`report` for a snapshot. Nesting ``with engine:`` inside itself is an error (every op
    would be counted twice).

    Results: ``counts`` (a :class:`~torch_tos.counts.Counts` table keyed by ``(layer, phase, dtype,
    op)`` with the fields add, sub, mul, div, root, calls, flops, bytes); ``unsupported`` maps
    ``(op, layer, phase)`` to a call count.
    """

    def __init__(self, scope: ModuleScope | None = None, *, model: torch.nn.Module | None = None,
                 flops: bool = True, flop_mapping: dict | None = None,
                 module_rules: dict | None = None, ignore=None, extensions: Extensions | None = None):
        if extensions is not None and (module_rules is not None or ignore is not None):
            raise ValueError("Engine takes extensions= or module_rules=/ignore=, not both")
        if model is not None:
            if scope is not None:
                raise ValueError("Engine takes scope= or model=, not both")
            if not isinstance(model, torch.nn.Module):
                raise TypeError(f"Engine(model=...) needs an nn.Module, got {type(model).__name__}")
            scope = ModuleScope(model)
        self._own_scope = model is not None
        self.scope = scope
        self.phase: str | None = None
        self.in_optimizer = False
        self.paused = False
        self.write_guard = None
        self.counts = Counts()
        self.unsupported: dict[tuple, int] = {}
        self.flop_formulas = flop_formulas(flop_mapping) if flops else {}
        self._resolved: dict = {}
        self._mode: _Dispatch | None = None
        self._dispatched = 0
        ext = extensions if extensions is not None else Extensions(ignore, module_rules)
        self._ignored_ops = frozenset(ext.ops)
        self._ignored_layers, self._ruled_layers, self._ruled = frozenset(), frozenset(), {}
        if ext.has_modules:
            if getattr(scope, "model", None) is None:
                raise ValueError("module rules and ignored modules need a model: "
                                 "Engine(model=...) or profile()")
            self._ignored_layers, self._ruled_layers, self._ruled = ext.layers(scope.model)
            if self._ruled:
                scope.listeners.append(self._module_done)
        self._skip_layers = bool(self._ignored_layers or self._ruled_layers)

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> "Engine":
        if self._mode is not None:
            raise RuntimeError("this Engine is already counting: nested `with engine:` would count "
                               "every op twice")
        if self._own_scope:
            self.scope.attach()
        self._kernels = kernel_choices()  # meta runs the CPU's kernels (torch_tos.kernels)
        self._kernels.__enter__()
        self._mode = _Dispatch(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        mode, self._mode = self._mode, None
        mode.__exit__(*exc)
        self._kernels.__exit__(*exc)
        if self._own_scope:
            self.scope.detach()
        return False

    def reset(self) -> None:
        self.counts.clear()
        self.unsupported.clear()

    # -- results ----------------------------------------------------------------------------
    def bos_by_op(self, phases=None) -> dict[str, BOs]:
        """BOs per aten op name (``"aten.mm"``), summed over layers and dtypes; ``phases``
        restricts to those phases. Ops that cost nothing are left out."""
        counts = self.counts if phases is None else self.counts.where(phases=phases)
        per_op = {op: BOs(*row[:N_BOS]) for (op,), row in counts.group("op").items()}
        return {op: b for op, b in per_op.items() if b}

    def report(self, *, dtype=None, table=None, metadata: dict | None = None):
        """The :class:`~torch_tos.report.Report` of everything counted so far.

        >>> with Engine() as engine:
        ...     _ = torch.sigmoid(torch.randn(3))
        >>> engine.report().bos
        BOs(add=3, sub=3, mul=0, div=3, root=3)
        """
        from .reporting import build_report
        from .tables import parse_dtype

        return build_report(self.counts, self.unsupported, self.scope,
                            model=getattr(self.scope, "model", None),
                            dtype=parse_dtype(dtype) if dtype is not None else None, table=table,
                            metadata={"mode": "engine", **(metadata or {})})

    # -- where an op belongs ----------------------------------------------------------------
    def _where(self) -> tuple[str, str, bool]:
        """``(layer, phase, recompute)`` of the op running now."""
        scope = self.scope
        phase = self.phase
        in_bw = current_graph_task_id() != -1
        if phase is None:
            if in_bw:
                phase = "backward"
            elif self.in_optimizer:
                phase = "optimizer"
            elif scope is None or scope.stack:
                phase = "forward"
            else:
                phase = "loss"
        if in_bw or phase == "backward":
            if scope is None:
                return "", phase, False
            if in_bw and scope.stack and getattr(scope, "recomputing", False):
                return scope.current, phase, True  # a checkpointed module re-running its forward
            layer = scope.owner_of(current_autograd_node())
            if layer is None or layer == OUTSIDE_LAYER:
                layer = scope.current or LOSS_LAYER
            return layer, phase, False
        if phase == "optimizer":
            return OPTIMIZER_LAYER, phase, False
        layer = scope.current if scope is not None else None
        if layer is None:
            layer = LOSS_LAYER if phase == "loss" else (OUTSIDE_LAYER if scope is not None else "")
        return layer, phase, False

    def _skipped(self, layer: str, phase: str, recompute: bool) -> bool:
        """The op belongs to an ignored module, or to the forward of a module with a rule."""
        return layer in self._ignored_layers or (
            layer in self._ruled_layers and (phase != "backward" or recompute))

    def _module_done(self, name, module, args, kwargs, output) -> None:
        """Book a module-class rule's BOs when the ruled module's forward returns."""
        hit = self._ruled.get(name)
        if hit is None or self._mode is None or self.paused:
            return
        cls, fn = hit
        what = f"module rule {getattr(fn, '__name__', fn)!s} for {cls.__name__} (layer {name!r})"
        bos = call_rule(fn, (module, args, output), what, failed="failed:")
        in_bw = current_graph_task_id() != -1
        phase = self.phase or ("backward" if in_bw else "optimizer" if self.in_optimizer else "forward")
        op = module_op_name(cls) + (RECOMPUTE_SUFFIX if in_bw else "")
        moved = tensor_bytes(args) + tensor_bytes((output,))
        self.counts.add((name, phase, op_dtype(args, output), op), bos, bytes=moved)

    # -- the per-op handler ---------------------------------------------------------------
    def _resolve(self, func):
        packet = getattr(func, "overloadpacket", None)
        if self._ignored_ops and (func in self._ignored_ops or packet in self._ignored_ops):
            hit = _IGNORED
        else:
            hit = (lookup(func), self.flop_formulas.get(packet), op_name(func),
                   bool(getattr(func, "is_view", False)) or op_name(func) in ALIAS_OPS,
                   attrs_function(func))
        self._resolved[func] = hit
        return hit

    def _handle(self, mode, func, args, kwargs):
        self._dispatched += 1
        if self.write_guard is not None:  # profile(): what the op writes of the user's tensors
            self.write_guard.check(func, args, kwargs)
        if func in _PASSTHROUGH or self.paused:
            return func(*args, **kwargs)
        hit = self._resolved.get(func)
        if hit is None:
            hit = self._resolve(func)
        if hit is _IGNORED:
            return func(*args, **kwargs)
        rule, flop_fn, name, is_view, attrs_fn = hit
        if rule is None and flop_fn is None:
            before = self._dispatched
            with mode:
                r = func.decompose(*args, **kwargs)
            if r is not NotImplemented and self._dispatched > before:
                return r
            if r is not NotImplemented:  # decomposed into nothing we can see: count it unsupported
                out = r
            else:
                out = func(*args, **kwargs)
        else:
            out = func(*args, **kwargs)

        layer, phase, recompute = self._where()
        if self._skip_layers and self._skipped(layer, phase, recompute):
            return out
        if recompute:
            name += RECOMPUTE_SUFFIX
        dtype = op_dtype(args, out)
        if rule is None:
            key = (name, layer, phase)
            self.unsupported[key] = self.unsupported.get(key, 0) + 1
            bos = (0, 0, 0, 0, 0)
        else:
            # an ``out=`` tensor (``torch.maximum(a, b, out=c)``) is the rule's ``out``, not a kwarg
            bos = rule(out, *args, **({k: v for k, v in kwargs.items() if k != "out"}
                                      if "out" in kwargs else kwargs))
            if dtype in COMPLEX_DTYPES or (isinstance(out, torch.Tensor) and out.is_complex()):
                bos = complex_bos(name, bos, args)  # real operations on (re, im) pairs
        flops = flop_fn(*args, **kwargs, out_val=out) if flop_fn is not None else 0
        if is_view:
            read = written = 0
        else:
            read = tensor_bytes(args) + tensor_bytes(kwargs.values()) if kwargs else tensor_bytes(args)
            written = tensor_bytes((out,))
        key = (layer, phase, dtype, name)
        rows = self.counts.rows
        row = rows.get(key)
        b0, b1, b2, b3, b4 = tuple.__iter__(bos) if isinstance(bos, tuple) else bos
        if row is None:
            rows[key] = [b0, b1, b2, b3, b4, 1, flops, read + written]
        else:
            row[0] += b0
            row[1] += b1
            row[2] += b2
            row[3] += b3
            row[4] += b4
            row[5] += 1
            row[6] += flops
            row[7] += read + written
        # the call's work per call (Counts.work): one more call in its bin
        bin_ = (flops, read, written, attrs_fn(args, kwargs, out, bos) if attrs_fn is not None else None)
        hist = self.counts.work.get(key)
        if hist is None:
            self.counts.work[key] = {bin_: 1}
        elif bin_ in hist:
            hist[bin_] += 1
        else:
            hist[bin_] = 1
            if len(hist) > WORK_BINS:
                cap_bins(hist)
        return out
