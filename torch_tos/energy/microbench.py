"""Microbenchmarks: the measured cost of single aten calls on this device, per dtype.

For every workload of :mod:`.benchsuite` at every size and dtype:

1. **intercept**: run the workload once (forward and backward) under a dispatch mode that hands
   over each aten call, with its live arguments, right after it runs (nothing is kept: memory stays
   that of the workload);
2. **classify**: replay the call once on snapshots of its arguments (same sizes, strides and
   storage offsets) under the counting engine (:class:`~torch_tos.counter.Engine`), which gives its
   op name, dtype and work bin — FLOPs, bytes read and written, op attributes — exactly as a
   counted model's call gets them, so the profile's axes and a model's counts can never disagree;
   calls of class ``views`` (dispatch only) and calls of the same (op, dtype, bin) as one already
   timed are skipped;
3. **time**: replay the call in a loop inside meter windows (:func:`time_call`), on its live
   arguments (an in-place op changes values, never shapes, as a real step's repeated calls do): one warm-up call,
   one timed probe to choose the repeat count so a window lasts :func:`window_seconds` of the
   meter, then ``windows`` windows (median kept), each synchronised at both edges on CUDA; the
   window's joules and wall seconds divided by the repeats give joules and seconds per call.

The dispatch floor — a call that does nothing (``aten.alias``) timed the same way — is measured
once (:func:`dispatch_floor`): the cost model subtracts it from every call's time, so a call's
price is what its kernel adds to an empty call, and the cost of dispatching ops in a real step is
fitted at step level (:mod:`.costmodel`).

Results are appended to a JSON-lines file as each workload size finishes (:class:`BenchFile`), so a
killed calibration resumes where it stopped. ``torch.set_flush_denormal(True)`` holds while
timing: a call replayed thousands of times on its own outputs (``mul_`` by 0.9) would otherwise
reach denormal numbers that real steps do not see.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from .._compat import OpOverload, TorchDispatchMode
from ..opcalls import op_name
from .benchsuite import WORKLOADS, Workload
from .device import DTYPES, Device
from .opclasses import op_class, table_class

#: Seconds a measurement window lasts, per meter source (a coarser counter needs longer windows).
WINDOW_SECONDS = {"cputime": 0.006, "rapl": 0.05, "nvml": 0.2, "nvml-sampled": 0.5, "zeus": 0.2,
                  "codecarbon": 0.5}
MAX_REPEATS = 200_000


def window_seconds(meter) -> float:
    """How long each measurement window of ``meter`` lasts (:data:`WINDOW_SECONDS`; 0.2 s for a
    meter not listed)."""
    return WINDOW_SECONDS.get(getattr(meter, "source", ""), 0.2)


def _snapshot(value):
    """A copy of a tensor with the same size, strides and storage offset (its whole storage
    cloned); containers copied element by element; anything else as is."""
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta" or value.is_sparse or value.is_quantized:
            return value
        storage = value.untyped_storage().clone()
        out = torch.empty(0, dtype=value.dtype, device=value.device)
        return out.set_(storage, value.storage_offset(), value.size(), value.stride())
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    return value


class _Recorder(TorchDispatchMode):
    """Calls ``on_call(func, args, kwargs)`` after each aten call runs (the mode is off while it
    does: what it runs is not recorded)."""

    def __init__(self, on_call):
        super().__init__()
        self.on_call = on_call

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if isinstance(func, OpOverload):
            self.on_call(func, args, kwargs)
        return out


def capture(run) -> list[tuple]:
    """The aten calls ``run()`` makes, each ``(func, args, kwargs)`` with snapshot arguments."""
    calls = []
    with _Recorder(lambda f, a, k: calls.append((f, _snapshot(a), _snapshot(k)))):
        run()
    return calls


def classify(func, args, kwargs) -> tuple | None:
    """``(op, dtype, bin)`` of one call, from the counting engine (None when the engine does not
    book it as one call of one op, e.g. an op it decomposes)."""
    from ..counter import Engine

    engine = Engine()
    args, kwargs = _snapshot(args), _snapshot(kwargs)
    with engine:
        func(*args, **kwargs)
    if len(engine.counts.rows) != 1:
        return None
    (key, hist), = engine.counts.work.items()
    if len(hist) != 1:
        return None
    (bin_, calls), = hist.items()
    return (key[3], key[2], bin_) if calls == 1 else None


@dataclass
class Timing:
    """Seconds and joules per call (medians over the windows), the repeats per window."""

    seconds: float
    joules: float
    repeats: int


def time_call(func, args, kwargs, meter, device: Device, windows: int = 3, target: float | None = None) -> Timing:
    """Time one call in ``windows`` meter windows (module doc, step 3)."""
    target = window_seconds(meter) if target is None else target
    sync = device.synchronize
    func(*args, **kwargs)
    sync()
    t0 = time.perf_counter()
    func(*args, **kwargs)
    sync()
    probe = time.perf_counter() - t0
    n = int(min(MAX_REPEATS, max(1, math.ceil(target / max(probe, 1e-7)))))
    secs, joules = [], []
    for _ in range(windows):
        sync()
        with meter.measure() as m:
            for _ in range(n):
                func(*args, **kwargs)
            sync()
        secs.append(m.seconds / n)
        joules.append(m.joules / n)
    return Timing(statistics.median(secs), statistics.median(joules), n)


def dispatch_floor(meter, device: Device, windows: int = 3) -> Timing:
    """The cost of a call that does nothing: ``aten.alias`` of a one-element tensor."""
    x = torch.zeros(1, device=device.torch)
    return time_call(torch.ops.aten.alias.default, (x,), {}, meter, device, windows)


#: Bytes of the fresh buffers :func:`allocation_costs` times (1 KiB to 512 MiB).
ALLOCATION_SIZES = tuple(4 ** k for k in range(5, 15))


def allocation_costs(meter, device: Device, floor: Timing, sizes=ALLOCATION_SIZES,
                     windows: int = 3) -> list[list[float]]:
    """``[[bytes, seconds, joules], …]``: what a fresh output buffer of each size costs beyond
    writing it — allocating it, faulting its pages in, freeing it (a large buffer may be fresh
    pages every time, a small one recycled) — as ``empty(n).fill_()`` minus ``fill_()`` of a
    buffer allocated once minus one dispatch ``floor`` (the extra call), each timed like a call
    (:func:`time_call`), never below 0. Sizes are measured from the largest down, after one
    untimed buffer of each size: the allocator then is in the state a training process reaches
    (allocators adapt their thresholds to the buffers freed)."""
    out = []
    sizes = sorted(sizes, reverse=True)
    for n in sizes:  # warm the allocator as a step does: buffers of every size allocated and freed before
        torch.empty(n, dtype=torch.uint8, device=device.torch).fill_(1)
    for n in sizes:
        kept = torch.empty(n, dtype=torch.uint8, device=device.torch)
        fresh = time_call(lambda: torch.empty(n, dtype=torch.uint8, device=device.torch).fill_(1), (), {}, meter,
                          device, windows)
        warm = time_call(kept.fill_, (1,), {}, meter, device, windows)
        out.append([float(n), max(fresh.seconds - warm.seconds - floor.seconds, 0.0),
                    max(fresh.joules - warm.joules - floor.joules, 0.0)])
        del kept
    return sorted(out)


def _jsonable_attrs(attrs):
    return None if attrs is None else [a if isinstance(a, (int, str)) else float(a) for a in attrs]


def _point_key(p: dict) -> tuple:
    return (p["op"], p["dtype"], tuple(p["attrs"]) if p["attrs"] is not None else None, p["flops"], p["bytes_in"],
            p["bytes_out"])


def measure_workload(workload: Workload, size, dtype_name: str, meter, device: Device, *, windows: int = 3,
                     seen: set | None = None, seen_key=_point_key) -> list[dict]:
    """The measured points of one workload size in one dtype: one dict per distinct timed call
    (class, op, dtype, attrs, flops, bytes_in, bytes_out, seconds, joules, repeats); a call whose
    ``seen_key`` is in ``seen`` (measured before) is not timed again."""
    dtype = DTYPES[dtype_name]
    seen = set() if seen is None else seen
    points = []

    def on_call(func, args, kwargs):
        if table_class(op_name(func)) == "views":
            return
        hit = classify(func, args, kwargs)
        if hit is None:
            return
        op, dt, bin_ = hit
        cls = op_class(op, bin_[3])
        point = {"class": cls, "op": op, "dtype": dtype_name if dt == dtype else str(dt).replace("torch.", ""),
                 "attrs": _jsonable_attrs(bin_[3]), "flops": float(bin_[0]), "bytes_in": float(bin_[1]),
                 "bytes_out": float(bin_[2])}
        key = seen_key(point)
        if cls == "views" or key in seen:
            return
        seen.add(key)
        try:
            t = time_call(func, args, kwargs, meter, device, windows)
        except (RuntimeError, ValueError, TypeError):  # a call that cannot be replayed on its own
            return
        points.append({**point, "seconds": t.seconds, "joules": t.joules, "repeats": t.repeats})

    with device.tf32(dtype_name == "tf32"):
        torch.manual_seed(0)
        run = workload.make(size, dtype, device.torch)
        run()  # first-call costs (kernel selection, allocator) stay out of the timing
        with _Recorder(on_call):
            run()
    return points


def plan(dtypes, workloads=WORKLOADS, thin: int = 1):
    """The (dtype, workload, size) triples of a sweep, in measuring order; ``thin`` > 1 keeps every
    ``thin``-th size of each workload (and its largest): a sparser sweep, for meters whose windows
    must be long."""
    for dt in dtypes:
        for w in workloads:
            if w.floating_only and dt in ("bfloat16", "float16"):
                continue
            sizes = w.sizes if thin <= 1 else tuple(dict.fromkeys((*w.sizes[::thin], w.sizes[-1])))
            for size in sizes:
                yield dt, w, size


__all__ = ["capture", "classify", "time_call", "dispatch_floor", "allocation_costs", "ALLOCATION_SIZES", "measure_workload", "plan", "Timing",
           "window_seconds", "WINDOW_SECONDS"]
