"""What lets the cache *show* that a step is the same work: a fingerprint of everything that runs.

A step's events (see :mod:`.cache`) are not only its forwards and optimizer steps but every
``torch`` call made in the step outside library code known to be a fixed function of its
signature — the loss, metrics, regularizers, closures, code between forwards, a KV cache being
read, the optimizer's own code when it is not a known one. :class:`Tracer`, a
``TorchFunctionMode`` active in those stretches of the step, turns each call into an event keyed
by the function and the signature of its arguments (shapes, dtypes, ``requires_grad``, devices,
non-tensor values; for a leaf that requires grad also whether it holds a gradient); ``Tensor.backward`` is such a call, so the backward pass is keyed by what it
is called on, by which parameters already hold a gradient, by the state of a DDP communication
hook (:mod:`.ddp`) and by the graph the preceding events built. Calls that run no op are not
events: switching grad mode, the profiler's markers, and reading or setting a tensor attribute
(``p.grad = None``, ``requires_grad``, …; what a setting changes is in the keys of the events that
depend on it). A step reuses cached counts only while every event matches the cached sequence;
at the first difference it counts from there.

Trusted (not traced inside):

* a model's forward when every module of the model is of a :data:`TRUSTED_MODULES` type (exact
  ``torch.nn`` classes whose forward is a fixed function of the inputs' signature, the train/eval
  flags and the parameters' dtypes; an ``Embedding`` only without ``max_norm``) and no global
  module hooks are set;
* ``optimizer.step()`` of a :data:`TRUSTED_OPTIMIZERS` type (its work is a fixed function of the
  optimizer signature); LBFGS (whose work depends on its history and line search), RAdam (on the
  step number) and any other optimizer are traced.

Counted segments of the traced stretches are marked *volatile* — never reused — when they hold an
op whose output shape depends on data (``torch.Tag.dynamic_output_shape``: ``nonzero``, …) or an
op that ran outside any traced call (work the fingerprint cannot see).
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from .._compat import C_SET_GRAD_ENABLED, global_module_hooks_set, has_module_hooks, sequence_nr
from ..kernels import STANDS_FOR
from .ddp import comm_hook_state
from .signature import FLAG_FREE, tensor_sig, value_sig, without_grad

__all__ = ["TRUSTED_MODULES", "TRUSTED_OPTIMIZERS", "Tracer", "model_is_trusted", "data_dependent"]


def _trusted_modules() -> frozenset:
    nn = torch.nn
    extra = ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
             "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d",
             "InstanceNorm3d", "RReLU")
    return (FLAG_FREE | {getattr(nn, n) for n in extra if hasattr(nn, n)}) - {nn.EmbeddingBag}


TRUSTED_MODULES = _trusted_modules()
TRUSTED_OPTIMIZERS = frozenset(getattr(torch.optim, n) for n in (
    "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax", "RMSprop", "NAdam", "Rprop")
    if hasattr(torch.optim, n))


def model_is_trusted(model: torch.nn.Module) -> bool:
    """Every module of ``model`` is of a trusted type and carries no hooks but ``ours`` (a set of
    hook ids: the counter's own)."""
    for m in model.modules():
        if type(m) not in TRUSTED_MODULES:
            return False
        if type(m) is torch.nn.Embedding and m.max_norm is not None:
            return False
        if has_module_hooks(m, pre=m is not model):
            return False
    return True


def global_module_hooks() -> bool:
    """True when module hooks registered for every module (``register_module_forward_hook`` …)
    are set: they run user code inside trusted forwards."""
    return global_module_hooks_set()


_DATA_DEPENDENT: dict = {}
_TAGS = tuple(getattr(torch.Tag, t) for t in ("dynamic_output_shape",) if hasattr(torch.Tag, t))


def data_dependent(func) -> bool:
    """Whether aten op ``func`` has an output shape that depends on data (``nonzero``,
    ``unique``, ``masked_select``, …). Ops that only hand a value to Python (``item()``) are not:
    they cost nothing, and Python code that branches on the value makes different calls, which
    the fingerprint sees."""
    hit = _DATA_DEPENDENT.get(func)
    if hit is None:
        tags = getattr(func, "tags", ())
        hit = _DATA_DEPENDENT[func] = any(t in tags for t in _TAGS)
    return hit


#: Tensor attributes whose reading runs an op (a view: ``x.T``, ``x.data`` is an ``aten.detach``)
#: or whose setting does (``x.real = y`` copies): their accesses stay events.
_ATTRIBUTES_WITH_OPS = frozenset(("T", "mT", "H", "mH", "data", "real", "imag"))


def _bookkeeping_attributes(setters: bool = False) -> tuple:
    """Reading and setting every other ``Tensor`` attribute (``p.grad``, ``p.grad = None``,
    ``requires_grad``, ``grad_fn``, ``shape``, …): no op runs, so no work to verify — what a
    setting changes (a gradient dropped, ``requires_grad``) is in the keys of the later events
    that depend on it (a backward's key says which parameters hold a gradient, every signature
    has ``requires_grad``). Were one of them to run an op after all, that op would run outside
    any traced call and its segment would be counted every time (still exact)."""
    out = []
    for name in dir(torch.Tensor):  # the C getters and setters, as the class inherits them
        attr = getattr(torch.Tensor, name, None)
        if type(attr).__name__ == "getset_descriptor" and name not in _ATTRIBUTES_WITH_OPS:
            out += [attr.__set__] if setters else [attr.__get__, attr.__set__]
    return tuple(out)


#: Calls that are not events: switching grad mode changes no work by itself; what it changes
#: (``requires_grad`` of the tensors made under it) is in the signatures of the calls that use them.
#: Nor are the profiler's ``record_function`` markers (``optimizer.step()`` and ``zero_grad()``
#: set them up): bookkeeping, never counted. Nor the bookkeeping of gradients and flags
#: (``zero_grad()``'s ``p.grad = None``, ``requires_grad_()``; see :func:`_bookkeeping_attributes`).
_NOT_EVENTS = frozenset(f for f in (
    C_SET_GRAD_ENABLED, torch.Tensor.requires_grad_, *_bookkeeping_attributes(),
    *(getattr(getattr(torch.ops, "profiler", None), n, None)
      for n in ("_record_function_enter", "_record_function_enter_new", "_record_function_exit")))
    if f is not None)
#: The setters among them (and ``requires_grad_``): after one, which parameters hold a gradient
#: is read again (see ``StepTracker.grads``).
_SETTERS = frozenset((torch.Tensor.requires_grad_, *_bookkeeping_attributes(setters=True)))
#: Calls that run the backward pass: their key also says which tensors the pass starts from and
#: which parameters already hold a gradient (accumulating into an existing ``.grad`` is an add per
#: element, storing a first one is not).
_BACKWARD = frozenset((torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad))


_Tensor = torch.Tensor


def _roots(t, seq0):
    """Which tensors a backward pass starts from: the position, in the step, of the autograd
    node that made each (its sequence number after the step's first), so that two equal-shaped
    losses of one step are told apart."""
    if isinstance(t, (list, tuple)):
        return tuple(_roots(x, seq0) for x in t)
    fn = getattr(t, "grad_fn", None)
    if fn is None or seq0 is None:
        return None
    return sequence_nr(fn) - seq0
_PLAIN = frozenset((type(None), bool, int, float, str, torch.dtype, torch.device))


def _tensor_key(t) -> tuple:
    """A traced call's tensor argument: its :data:`~.signature.tensor_sig` and, for a leaf that
    requires grad (a target or an input the loop made trainable), whether it holds a gradient — a
    backward that reaches it adds into an existing gradient per element and stores a first one,
    as the backward's key says of the parameters."""
    sig = tensor_sig(t)
    if sig[2] and t.grad_fn is None:
        return (*sig, t.grad is None)
    return sig


class Tracer(TorchFunctionMode):
    """Turns every ``torch`` call into an event of the open step (key: the function, then the
    signature of each argument) and, while the step is counted, keeps ``tracker.depth`` (> 0
    inside a call) for the engine's outside-any-call check."""

    def __init__(self, tracker, params=()):
        super().__init__()
        self.tracker = tracker
        self.params = params

    def __torch_function__(self, func, types, args=(), kwargs=None):
        tracker = self.tracker
        step = tracker.step
        if step is None or func in _NOT_EVENTS:
            if func in _SETTERS:  # a gradient may have been set or dropped
                tracker.grads = None
            return func(*args, **kwargs) if kwargs else func(*args)
        # an open Engine's method wrappers (a meta adaptation's, kernels.STANDS_FOR) are the same call
        key = (_STANDS_FOR.get(func, func), *[_tensor_key(a) if isinstance(a, _Tensor) else
                                              (a if type(a) in _PLAIN else value_sig(a)) for a in args])
        if kwargs:
            key += (tuple([(k, v if type(v) in _PLAIN else _tensor_key(v) if isinstance(v, _Tensor) else
                            value_sig(v)) for k, v in kwargs.items()]),)
        else:
            kwargs = _EMPTY
        volatile = None
        if func in _BACKWARD:
            grads = tracker.grads  # which parameters hold a gradient, if known since the step opened
            if grads is None:
                grads = without_grad(self.params)
            tracker.grads = None  # the backward changes them
            key += (_roots(args[0] if args else kwargs.get("tensors", kwargs.get("outputs")), step.seq0),
                    grads)
            if tracker.ddp is not None:  # the communication hook runs inside this backward
                comm, volatile = comm_hook_state(tracker.ddp)
                key += (("ddp communication hook", comm),)
        if not step.counting and not step.full and volatile is None:  # replaying the cache (the
            # common case): as StepTracker.event decides for a known event, inlined
            child = step.node.children.get(key)
            if child is not None and child.volatile is None:
                step.node = child
                step.reused += 1
                return func(*args, **kwargs)
        tracker.event(step, key)
        if volatile is not None:
            step.node.volatile = volatile
        tracker.depth += 1
        try:
            return func(*args, **kwargs)
        finally:
            tracker.depth -= 1


_STANDS_FOR = STANDS_FOR
_EMPTY: dict = {}
