"""What ``DistributedDataParallel`` adds to a step's work, as keys for the step cache.

DDP does work the tracer cannot see — C++ calls of its reducer, and the Python communication
hook that runs inside the backward pass — and that work depends on DDP's own state:

* **in the forward** (:func:`forward_state`): the first forward's lazy initialisation, the
  rebuild of the gradient buckets at the first forward after a backward (a broadcast of the new
  bucket order and new bucket buffers), ``no_sync()`` (``require_backward_grad_sync``: no
  all-reduce in the backward that follows), the bucket sizes and the registered communication
  hook (``ddp._get_ddp_logging_data()``);
* **in the backward** (:func:`comm_hook_state`): the communication hook's state. The hooks of
  ``torch.distributed.algorithms.ddp_comm_hooks`` are known: the default ones (all-reduce,
  fp16/bf16 compression and their wrappers, no-op, quantization) do the same work every step;
  PowerSGD (``powerSGD_hook``, ``batched_powerSGD_hook``) all-reduces until
  ``start_powerSGD_iter``, then compresses, creating its error-feedback and low-rank buffers in
  its first compressed step — its key is that phase and the number of buffers it holds; post-local
  SGD switches from the global to the local all-reduce at ``start_localSGD_iter``. Any other
  hook is user code: the backward it runs in is counted every step (``StepRecord.recount`` says
  so).

A step reuses cached counts only when these keys match a counted step with the same keys, so a
hook registered mid-training, or PowerSGD leaving its warm-up, makes the step recount until its
new work has been counted once; counts then equal ``cache=False`` step for step.
"""

from __future__ import annotations

from .._compat import ddp_internals, ddp_mixed_precision_hook

__all__ = ["ddp_of", "forward_state", "comm_hook_state"]


def ddp_of(model):
    """``model`` when it is a ``DistributedDataParallel`` wrapper, else None."""
    from torch.nn.parallel import DistributedDataParallel

    return model if isinstance(model, DistributedDataParallel) else None


def forward_state(ddp) -> tuple:
    """The DDP state that decides its work in the forward about to run and in the backward that
    follows (see the module docstring)."""
    got = ddp_internals(ddp)
    if got is None:  # pragma: no cover - depends on the installed torch
        return ("unknown",)
    data = got["logging"]
    rebuilt = got["has_rebuilt_buckets"]
    # DDP rebuilds its buckets once, at the first forward with gradients after a backward
    pending = None if rebuilt else bool(data.get("iteration", 0))
    return (rebuilt, pending, got["lazy_init_ran"], ddp.require_backward_grad_sync,
            ddp.require_forward_param_sync, str(data.get("comm_hook", "")),
            tuple(data.get("bucket_sizes", ()) or ()), got["delay_all_reduce_all_params"],
            got["static_graph_delay_allreduce_enqueued"])


def comm_hook_state(ddp) -> tuple[tuple, str | None]:
    """``(key, reason)``: the key of the communication hooks' work in the backward about to run,
    and why that backward must be counted every step (None: the key decides it)."""
    got = ddp_internals(ddp)
    if got is None:  # pragma: no cover - depends on the installed torch
        return (), "DDP's internals are not readable on this torch: its backward is counted every step"
    keys = []
    for hook, state in got["hooks"]:
        key = _hook_key(hook, state)
        if key is None:
            name = getattr(hook, "__qualname__", None) or type(hook).__name__
            return (), (f"DDP communication hook {name} is user code (not one of "
                        "torch.distributed.algorithms.ddp_comm_hooks): its backward is counted every step")
        keys.append(key)
    return tuple(keys), None


def _known():
    from torch.distributed.algorithms.ddp_comm_hooks import (debugging_hooks, default_hooks,
                                                              powerSGD_hook, post_localSGD_hook,
                                                              quantization_hooks)

    fixed = {default_hooks.allreduce_hook, default_hooks.fp16_compress_hook,
             default_hooks.bf16_compress_hook, debugging_hooks.noop_hook,
             quantization_hooks.quantization_pertensor_hook, quantization_hooks.quantization_perchannel_hook,
             ddp_mixed_precision_hook()} - {None}
    wrappers = {default_hooks.fp16_compress_wrapper(default_hooks.allreduce_hook).__code__,
                default_hooks.bf16_compress_wrapper(default_hooks.allreduce_hook).__code__}
    stateful = {powerSGD_hook.powerSGD_hook: _powersgd, powerSGD_hook.batched_powerSGD_hook: _powersgd,
                post_localSGD_hook.post_localSGD_hook: _post_local_sgd}
    return fixed, wrappers, stateful


_KNOWN: list = []


def _hook_key(hook, state):
    """The key of one hook's work at this step, None for a hook torch_tos does not know."""
    if not _KNOWN:
        try:
            _KNOWN.append(_known())
        except Exception:  # noqa: BLE001 - torch.distributed.algorithms unavailable: none known
            _KNOWN.append((set(), set(), {}))
    fixed, wrappers, stateful = _KNOWN[0]
    if hook in fixed:
        return (hook.__qualname__,)
    fn = stateful.get(hook)
    if fn is not None:
        return (hook.__qualname__, fn(state))
    code = getattr(hook, "__code__", None)
    if code in wrappers:  # fp16/bf16_compress_wrapper(inner hook): the inner hook decides the rest
        inner = [c.cell_contents for c in hook.__closure__ or () if callable(c.cell_contents)]
        key = _hook_key(inner[0], state) if len(inner) == 1 else None
        return None if key is None else (code.co_name, key)
    return None


def _powersgd(state) -> tuple:
    """PowerSGD's work: vanilla all-reduce before ``start_powerSGD_iter``; then compression,
    whose first step creates the error-feedback and warm-start buffers (their number tells)."""
    if state.iter < state.start_powerSGD_iter:
        return ("allreduce",)
    return ("compress", len(state.error_dict), len(state.p_memory_dict), len(state.q_memory_dict),
            state.matrix_approximation_rank, state.min_compression_rate, state.use_error_feedback,
            state.warm_start, getattr(state, "batch_tensors_with_same_shape", None),
            state.orthogonalization_epsilon, id(state.process_group))


def _post_local_sgd(state) -> tuple:
    """Post-local SGD: the global all-reduce before ``start_localSGD_iter``, then the subgroup's
    (or none)."""
    if state.iter < state.start_localSGD_iter:
        return ("global", id(state.process_group))
    return ("local", state.post_local_gradient_allreduce, id(state.subgroup))
