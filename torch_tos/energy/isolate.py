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

:class:`FreshProcesses` forks a small server when it is created (so make it before any measuring:
its workers start from the caller's allocator as it was then); the server pays a process's
one-time costs on tiny buffers (``prepare``) and says it is ready. Each
:meth:`~FreshProcesses.run` forks a worker from the server, which runs ``target(item, *args)``
(the item by its index in the list given at creation, so nothing but the small ``args`` and the
result crosses the pipes) and exits with ``os._exit`` (no interpreter finalization). The worker
measures with the meter in its own process; the caller's drift-reference readings stay in the
caller. Runs are isolated on a CPU at one thread only (:func:`resolve_isolate`): OpenMP cannot
start its threads again in a process forked after it ran them, and an accelerator's memory lives
in the process. Where ``os.fork`` is missing (Windows), callers measure in their own process.
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


def _die_with_parent() -> None:
    """Linux: this process is killed when its parent dies (a killed caller leaves no server, a
    killed server no worker). Elsewhere nothing: the pipes' EOF still ends an idle server."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _outcome(fn, *args) -> tuple:
    """``(True, fn(*args))``, or ``(False, exception, its traceback)`` — the exception itself when
    it pickles (so the caller raises its type), else a RuntimeError carrying its text."""
    try:
        value = fn(*args)
        pickle.dumps(value)
        return True, value
    except BaseException as e:  # noqa: BLE001 — reported to the caller, which raises it
        text = traceback.format_exc()
        try:
            pickle.loads(pickle.dumps(e))
        except Exception:  # noqa: BLE001 — an exception that does not travel is sent as text
            e = RuntimeError(f"{type(e).__name__}: {e}")
        return False, e, text


def _serve(requests: int, results: int, target, items, prepare) -> None:
    """The server: ``prepare()`` and a ready message, then one forked worker per request, its
    outcome forwarded; ends at EOF."""
    _die_with_parent()
    ready = _outcome(prepare) if prepare is not None else (True, None)
    _write(results, ready)
    if not ready[0]:
        return
    while True:
        try:
            index, args = _read(requests)
        except EOFError:
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                _die_with_parent()
                os.close(r)
                _write(w, _outcome(target, items[index], *args))
            finally:
                os._exit(0)
        os.close(w)
        try:
            outcome = _read(r)
        except EOFError:
            outcome = None
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if outcome is None:
            outcome = (False, RuntimeError(f"the measuring process ended without a result (wait status {status})"), "")
        _write(results, outcome)


def _raise(outcome) -> None:
    _, exc, text = outcome
    if text and hasattr(exc, "add_note"):
        exc.add_note("raised in a fresh measuring process:\n" + text.rstrip())
    raise exc


class FreshProcesses:
    """A server forked now; :meth:`run` measures ``target(items[i], *args)`` in a worker forked
    from it (module doc). ``prepare()``, if given, runs once in the server before it serves, and
    the constructor waits for it: the one-time costs of a process (lazy imports, library
    initialisation) that no worker should pay, done on buffers too small to move the allocator's
    thresholds. A worker's exception is raised in the caller with its type (its traceback in a
    note). A context manager: :meth:`close` ends the server; on Linux a killed caller takes the
    server and its worker with it."""

    def __init__(self, target, items, prepare=None):
        if not fork_available():
            raise RuntimeError("runs in fresh processes need os.fork, which this platform lacks")
        self._items = list(items)
        self._index = {id(x): i for i, x in enumerate(self._items)}
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(req_w)
                os.close(res_r)
                _serve(req_r, res_w, target, self._items, prepare)
            finally:
                os._exit(0)
        os.close(req_r)
        os.close(res_w)
        self.pid, self._requests, self._results = pid, req_w, res_r
        try:
            ready = _read(self._results)
        except EOFError:
            ready = (False, RuntimeError("the fresh-process server ended before it was ready"), "")
        if not ready[0]:
            self.close()
            _raise(ready)

    def covers(self, item) -> bool:
        """Whether ``item`` was among the items given at creation."""
        return id(item) in self._index

    def run(self, item, *args):
        """``target(item, *args)`` in a fresh worker process: its return value, or the worker's
        exception. Anything that interrupts the exchange (Ctrl-C) ends the server: a request
        without its answer would pair the next request with this one's."""
        if self._requests is None:
            raise RuntimeError("these fresh processes are closed")
        try:
            index = self._index[id(item)]
        except KeyError:
            raise ValueError(f"{item!r} was not given when the fresh-process server was created") from None
        try:
            _write(self._requests, (index, args))
            outcome = _read(self._results)
        except (EOFError, BrokenPipeError):
            self.close()
            raise RuntimeError("the fresh-process server has ended (killed?); measure again") from None
        except BaseException:
            self.kill()
            raise
        if not outcome[0]:
            _raise(outcome)
        return outcome[1]

    def kill(self) -> None:
        """End the server now (SIGKILL; on Linux its worker goes with it) and wait for it."""
        if self._requests is not None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
        self.close()

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
    with ``meter`` (bound in the server, never sent through a pipe), forked now: make it before
    any measuring."""
    from .meters import get_meter

    workloads = list(workloads)
    return FreshProcesses(functools.partial(_run_fresh, meter=get_meter(meter)), workloads,
                          prepare=functools.partial(_prepare, workloads))


def _prepare(workloads) -> None:
    """A process's one-time costs, paid once in the server, on one thread: for each workload's
    dtype and optimizer, a step of a 4→4 linear layer (building the first optimizer of a process
    imports about a second of modules; oneDNN and autograd initialise on their first call). Its
    buffers are a few bytes: the allocator's thresholds stay as they were. One thread, because a
    process forked after OpenMP has run its threads cannot start them again."""
    import torch

    torch.set_num_threads(1)
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


def resolve_isolate(isolate, workloads, dev) -> bool:
    """Whether runs of ``workloads`` on ``dev`` are measured in fresh processes: ``isolate`` True,
    False or None (default: yes on a CPU where ``os.fork`` exists, at one thread). True where they
    cannot be is a ``ValueError`` naming ``--no-isolate``: an accelerator (its allocator lives in
    the process, and a forked process cannot use a device its parent started), no ``os.fork``, or
    more than one thread (OpenMP cannot start its threads in a process forked after it ran them)."""
    threads = max((w.threads for w in workloads), default=1)
    possible = dev.type == "cpu" and fork_available() and threads == 1
    if isolate is None:
        return possible
    if isolate and not possible:
        why = (f"{threads} threads (OpenMP cannot start its threads again in a forked process)" if threads > 1
               else f"a {dev.type} device" if dev.type != "cpu" else "this platform (no os.fork)")
        raise ValueError(f"runs in fresh processes need a CPU, os.fork and one thread, not {why}; use --no-isolate")
    return bool(isolate)


@contextlib.contextmanager
def fresh_server(isolate: bool, workloads, meter):
    """The :class:`FreshProcesses` server runs of ``workloads`` are measured in when ``isolate``
    (:func:`resolve_isolate`), else None (in this process). Make it before anything is measured:
    its workers start from this process's allocator as it is then."""
    server = fresh_processes(workloads, meter) if isolate else None
    try:
        yield server
    finally:
        if server is not None:
            server.close()


__all__ = ["FreshProcesses", "fork_available", "fresh_processes", "fresh_server", "resolve_isolate", "gc_paused"]
