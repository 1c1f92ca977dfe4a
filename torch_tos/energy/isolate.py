"""Runs measured in a process of their own, as a user's training process runs its model.

A step's cost depends on the state of the process's C allocator. glibc's ``malloc`` starts with
mmap and trim thresholds of 128 KiB and raises them (up to 32 MiB and 64 MiB) each time the
process frees a large mapped buffer. A process that has freed buffers of many MiB keeps its
memory between steps; a fresh one may hand a step's buffers back to the kernel at the end of the
step and fault them in again during the next. A calibration's microbenchmarks free buffers up to
512 MiB, so runs measured after them in the same process run without those page faults, while a
user's process, which holds one model, pays them. On this project's 2-core VM, 1 thread, five
development models (``benchmarks/devset.py``) ran 500–5,100 minor faults per step in a fresh
process and 0–130 after such buffers, and used 4–18 % more CPU time per step (docs/energy.md).

:class:`FreshProcesses` forks a small server when it is created, before any measuring has
touched the allocator; each :meth:`~FreshProcesses.run` forks a worker from that server, which
runs ``target(item, *args)`` (the item by its index in the list given at creation, so nothing but
the small ``args`` and the result crosses the pipes) and exits with ``os._exit`` (no interpreter
finalization). The worker's allocator starts as the server's, and the server has done no work.
The worker measures with the meter in its own process; the caller's drift-reference readings stay
in the caller. Where ``os.fork`` is missing (Windows), :func:`fork_available` is False and
callers measure in their own process.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
import struct
import traceback

_HEADER = struct.Struct("!Q")


def fork_available() -> bool:
    """Whether runs can be measured in processes forked from a server (``os.fork`` exists)."""
    return hasattr(os, "fork")


def _write(fd: int, obj) -> None:
    data = pickle.dumps(obj)
    data = _HEADER.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read(fd: int):
    """The next object on ``fd``; raises EOFError when the writer closed it first."""
    head = _read_exact(fd, _HEADER.size)
    if head is None:
        raise EOFError
    body = _read_exact(fd, _HEADER.unpack(head)[0])
    if body is None:
        raise EOFError
    return pickle.loads(body)


def _worker(out: int, target, item, args) -> None:
    try:
        result = (True, target(item, *args))
    except BaseException as e:  # noqa: BLE001 — reported to the caller, which raises it
        result = (False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
    _write(out, result)


def _serve(requests: int, results: int, target, items) -> None:
    """The server's loop: one forked worker per request, its result forwarded; ends at EOF."""
    while True:
        try:
            index, args = _read(requests)
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                _worker(w, target, items[index], args)
            except BaseException:  # noqa: BLE001 — nothing may escape a forked child
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        try:
            result = _read(r)
        except EOFError:
            result = None
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if result is None:
            result = (False, f"the measuring process ended without a result (wait status {status})")
        _write(results, result)


class FreshProcesses:
    """A server forked now; :meth:`run` measures ``target(items[i], *args)`` in a worker forked
    from it (module doc). ``prepare()``, if given, runs once in the server before it serves: the
    one-time costs of a process (lazy imports, library initialisation) that no worker should pay,
    done on buffers too small to move the allocator's thresholds. A context manager: :meth:`close`
    ends the server."""

    def __init__(self, target, items, prepare=None):
        if not fork_available():
            raise RuntimeError("runs in fresh processes need os.fork, which this platform lacks")
        self._index = {id(x): i for i, x in enumerate(items)}
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(req_w)
                os.close(res_r)
                if prepare is not None:
                    prepare()
                _serve(req_r, res_w, target, list(items))
            except BaseException:  # noqa: BLE001 — the caller sees EOF and reports it
                code = 1
            finally:
                os._exit(code)
        os.close(req_r)
        os.close(res_w)
        self.pid, self._requests, self._results = pid, req_w, res_r

    def covers(self, item) -> bool:
        """Whether ``item`` was among the items given at creation."""
        return id(item) in self._index

    def run(self, item, *args):
        """``target(item, *args)`` in a fresh worker process: its return value, or a RuntimeError
        carrying the worker's exception and traceback."""
        if self._requests is None:
            raise RuntimeError("these fresh processes are closed")
        try:
            index = self._index[id(item)]
        except KeyError:
            raise ValueError(f"{item!r} was not given when the fresh-process server was created") from None
        try:
            _write(self._requests, (index, args))
            ok, value = _read(self._results)
        except (EOFError, BrokenPipeError):
            raise RuntimeError("the fresh-process server has ended (killed?); measure again") from None
        if not ok:
            raise RuntimeError(f"a run in a fresh process failed: {value}")
        return value

    def close(self) -> None:
        """End the server and wait for it."""
        if self._requests is None:
            return
        os.close(self._requests)
        self._requests = None
        os.close(self._results)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 — interpreter shutdown
            pass


@contextlib.contextmanager
def gc_paused():
    """Python's garbage collector paused (restored as it was): no collection inside a measured run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_fresh(w, seed: int, repeat: int, *, meter) -> tuple:
    """One run of the :class:`~.runner.Workload` ``w`` in a fresh worker: one untimed step of a
    model built from ``seed`` warms the process up, then a model built from ``seed + repeat`` runs
    inside one meter window. Returns (joules, seconds, meter source, estimated)."""
    import torch

    from .runner import run_workload

    torch.set_num_threads(w.threads)
    X, y = w.data()
    torch.manual_seed(seed)
    run_workload(w, w.build(), X, y, max_steps=1)
    torch.manual_seed(seed + repeat)
    model = w.build()
    with gc_paused(), meter.measure() as m:
        run_workload(w, model, X, y)
    return float(m.joules), float(m.seconds), m.source, bool(m.estimated)


def fresh_processes(workloads, meter):
    """A :class:`FreshProcesses` server measuring runs of ``workloads`` (:class:`~.runner.Workload`)
    with ``meter``, forked now (make it before any measuring), or None where runs cannot be
    isolated: a workload off the CPU (an accelerator's allocator lives in the process, and a forked
    process cannot use a device its parent started) or no ``os.fork``."""
    import torch

    from .meters import get_meter

    workloads = list(workloads)
    if not fork_available() or any(torch.device(w.device).type != "cpu" for w in workloads):
        return None
    return FreshProcesses(functools.partial(_run_fresh, meter=get_meter(meter)), workloads,
                          prepare=functools.partial(_prepare, workloads))


def _prepare(workloads) -> None:
    """A process's one-time costs, paid once in the server: for each workload's dtype and optimizer,
    a step of a 4→4 linear layer (building the first optimizer of a process imports about a
    second of modules; oneDNN and autograd initialise on their first call). Its buffers are a few
    bytes: the allocator's thresholds stay as they were."""
    import torch

    seen = set()
    for w in workloads:
        key = (w.torch_dtype, w.mode, w.optimizer, id(w.family))
        if key in seen:
            continue
        seen.add(key)
        layer = torch.nn.Linear(4, 4).to(w.torch_dtype)
        x = torch.randn(2, 4, dtype=w.torch_dtype)
        if w.mode == "inference":
            with torch.no_grad():
                layer(x)
            continue
        opt = w.make_optimizer(layer.parameters())
        layer(x).sum().backward()
        opt.step()


@contextlib.contextmanager
def fresh_server(fresh, workloads, meter, dev):
    """The :class:`~.isolate.FreshProcesses` server the suite's runs are measured in (None: in
    this process): ``fresh`` True, False or None (on a CPU where ``os.fork`` exists). Made before
    anything is measured, so its allocator is as fresh as this process's when it began."""
    if fresh is None:
        fresh = dev.type == "cpu" and fork_available()
    if fresh and (dev.type != "cpu" or not fork_available()):
        raise ValueError("runs in fresh processes need a CPU device and os.fork; use --no-isolate")
    server = fresh_processes(workloads, meter) if fresh else None
    try:
        yield server
    finally:
        if server is not None:
            server.close()


__all__ = ["FreshProcesses", "fork_available", "fresh_processes", "fresh_server", "gc_paused"]
