"""Step signatures: what the cache compares to decide that a step is the same work as one counted.

**Forward signature** (taken at the model's root forward pre-hook, :func:`forward_signature`):
input shapes, dtypes, devices, layouts and ``requires_grad`` (for a leaf that requires grad also
whether it holds a gradient), any non-tensor arguments (a key/value cache object by its type and
current length, see :func:`value_sig`), the train/eval flag of every submodule whose forward
may read it (all but the ``torch.nn`` classes known not to:
:data:`FLAG_FREE`), the dtype and ``requires_grad`` of every parameter, grad mode, inference mode
and the autocast state.

**Optimizer signature** (:func:`optimizer_signature`): the hyperparameters of each param group
reduced to what changes the counted work (zero, one, minus one, other — so a learning-rate schedule
does not force a recount), which parameters have a gradient, and how much optimizer state exists
(the first Adam/momentum step differs from the later ones).
"""

from __future__ import annotations

import operator

import torch

from .._compat import is_any_autocast_enabled

__all__ = ["FLAG_FREE", "value_sig", "tensor_sig", "forward_signature", "optimizer_signature",
           "kv_cache_length", "without_grad"]

_SCALARS = (bool, int, float, str, bytes, torch.dtype, torch.device, torch.Size, type(None))
_Tensor = torch.Tensor
_grad_enabled = torch.is_grad_enabled
_inference_mode = torch.is_inference_mode_enabled
tensor_sig = operator.attrgetter("shape", "dtype", "requires_grad", "device", "layout")
_DTYPE_RG = operator.attrgetter("dtype", "requires_grad")
_TRAINING = operator.attrgetter("training")
_CPU = torch.device("cpu")
_CPU_SIG = operator.attrgetter("shape", "dtype", "requires_grad", "is_cpu", "layout")


def sig_reader(sig: tuple) -> tuple:
    """``(getter, value)`` with ``getter(t) == value`` exactly for the tensors ``t`` whose
    :data:`tensor_sig` equals ``sig``: on the CPU the device is read as ``is_cpu`` (a CPU tensor's
    device is always ``cpu``, without index), which makes no ``torch.device`` object."""
    if sig[3] == _CPU:
        return _CPU_SIG, (sig[0], sig[1], sig[2], True, sig[4])
    return tensor_sig, sig


def without_grad(params) -> tuple:
    """``p.grad is None`` for each of ``params`` (called on every step; plain enough for dynamo to
    run when a compiled loop calls the counter's hooks)."""
    return tuple([p.grad is None for p in params])


def _flag_free_modules() -> frozenset:
    """``torch.nn`` module classes whose forward never reads ``self.training`` (exact types: a
    subclass may). Their train/eval flag is left out of the signature."""
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


FLAG_FREE = _flag_free_modules()


def kv_cache_length(v):
    """The length of a key/value cache object (a Hugging Face ``Cache``: ``get_seq_length()``),
    else ``None``."""
    get = getattr(v, "get_seq_length", None)
    if not callable(get):
        return None
    try:
        n = get()
    except Exception:  # an unusual cache: its type alone stays in the signature
        return None
    return int(n) if isinstance(n, (int, torch.SymInt)) or hasattr(n, "__index__") else None


def value_sig(v):
    """Signature of one forward argument: tensors by :data:`tensor_sig`, containers element-wise,
    scalars as themselves, a key/value cache by its type and length, anything else by type."""
    if isinstance(v, torch.Tensor):
        return tensor_sig(v)
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(value_sig(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((k, value_sig(x)) for k, x in v.items()))
    n = kv_cache_length(v)
    return type(v).__qualname__ if n is None else (type(v).__qualname__, "length", n)


def has_kv_cache(args, kwargs) -> bool:
    """True when a forward is given a key/value cache (``past_key_values`` or a ``Cache``
    object): a decoding step, whose post-processing is not a loss."""
    if kwargs.get("past_key_values") is not None:
        return True
    return any(kv_cache_length(v) is not None for v in (*args, *kwargs.values()))


class ForwardSignature:
    """Computes :func:`forward_signature` for one model. The parameter part enters it as a small
    int (``param_id``, one per distinct tuple of parameter dtypes and ``requires_grad``; the
    optimizer key takes it too), so that a key hashes in a few steps however many parameters."""

    def __init__(self, model: torch.nn.Module):
        self.modules = [m for m in model.modules() if type(m) not in FLAG_FREE]
        self.params = list(model.parameters())
        self.autocast_devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
        self.param_sig = None
        self.param_id = -1
        self.param_ids: dict = {}

    def __call__(self, args, kwargs) -> tuple:
        """``sig[0][0]`` is the grad mode."""
        if len(args) == 1 and type(args[0]) is _Tensor and not args[0].requires_grad:
            inputs = (tensor_sig(args[0]),)
        else:
            inputs = tuple([value_sig(a) for a in args])
            # an input leaf that requires grad: the backward accumulates into its gradient once
            # it holds one (an add per element), stores it the first time
            leaves = tuple([a.grad is None for a in (*args, *kwargs.values())
                            if isinstance(a, _Tensor) and a.requires_grad and a.grad_fn is None])
            if leaves:
                inputs += (("leaf gradients absent", leaves),)
        if kwargs:
            inputs = (inputs, tuple([(k, value_sig(v)) for k, v in kwargs.items()]))
        state = (_grad_enabled(), _inference_mode())
        if is_any_autocast_enabled():
            state += tuple((torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
                           for d in self.autocast_devices)
        params = tuple(map(_DTYPE_RG, self.params))
        if params != self.param_sig:
            self.param_sig = params
            self.param_id = self.param_ids.setdefault(params, len(self.param_ids))
        if self.modules:
            return (state, tuple(map(_TRAINING, self.modules)), self.param_id, inputs)
        return (state, self.param_id, inputs)


def forward_signature(model: torch.nn.Module, args, kwargs) -> tuple:
    """The forward signature of calling ``model(*args, **kwargs)`` now (see the module doc)."""
    return ForwardSignature(model)(args, kwargs)


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
    """``_hyper_class`` of every hyperparameter of param group ``g`` as a small int (equal ints:
    equal classes), recomputed only when one of its values changed (``memo``: id(group) ->
    (values, int), classes -> int)."""
    values = tuple(g.values())
    hit = memo.get(id(g))
    if hit is not None and hit[0] == values:
        return hit[1]
    classes = tuple((k, _hyper_class(v)) for k, v in g.items() if k != "params")
    n = memo.setdefault(classes, len(memo))
    memo[id(g)] = (values, n)
    return n


def optimizer_signature(opt: torch.optim.Optimizer, memo: dict) -> tuple:
    """What decides the counted work of ``opt.step()`` (see the module doc). Parameter dtypes are
    in the forward signature; the caller adds its ``param_id``."""
    state = opt.state
    return (id(opt), len(state), sum(map(len, state.values())),
            tuple([(_group_hyper(g, memo), without_grad(g["params"]))
                   for g in opt.param_groups]))
