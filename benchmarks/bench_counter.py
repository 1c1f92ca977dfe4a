"""TOsCounter overhead: step time of an ordinary training loop with and without the counter.

Side by side in one process: identical models (same weights, own optimizers), one per variant,
stepped in turn — one step of each, in a random order every step — so that all variants see the
same machine at the same moments (the figures stay comparable on a loaded machine). Each step is
timed on its own, wall and process CPU time; a round is ``--steps`` steps (default 50) per
variant; figures are medians over rounds, as ratios to ``plain``:

* ``plain``     — the loop alone;
* ``hooks``     — the loop with hooks that do nothing, of the kinds the counter registers (the
  model's forward pre-hook and forward hook, the optimizer's step pre- and post-hook): what being
  called at those points costs by itself, whatever the counter does there;
* ``reads``     — hooks of the same kinds that only *read* what a replayed step compares (modes,
  trace/profile/exception state, the input's and the target's signature, each parameter's dtype,
  ``requires_grad`` and gradient before the forward and its gradient after the backward, the
  optimizer's state sizes and groups, the loop's frame locals, the loss module's dict and hooks)
  and compare nothing: the least a step-by-step check of those values can cost;
* ``floor``     — the loop with a ``TorchFunctionMode`` that does nothing, on the stack over the
  stretch the counter's tracer watches (from the model's forward returning to the optimizer's
  step pre-hook): what seeing the calls outside the model costs by itself, whatever the counter
  does with them;
* ``cached``    — inside a ``TOsCounter(model, opt)`` (``cache=True``) entered at the start of the
  round, so its first step (counted op by op) is one of the 50;
* ``steady``    — inside a ``TOsCounter`` whose cache is already warm: the cost on every later step;
* ``uncached``  — ``TOsCounter(model, opt, cache=False)``: every step intercepted op by op;
* with ``--baseline DIR`` (another checkout, e.g. a worktree of ``main``): ``cached@base`` and
  ``steady@base``, the same two with that checkout's ``torch_tos`` — before and after, in one run.

Cases: the paper's FFN on Banknote (4 → 18 → 18 → 18 → 1, sigmoid, MSE, SGD, batch 64; the
bundled data through ``torch_tos.data.load_banknote()``, random data of that shape if the loader
is missing) and torchvision ``resnet18`` (batch 32, 3×64×64, CPU). Each step is
``opt.zero_grad(set_to_none=True); loss_fn(model(x), y).backward(); opt.step()``, or with
``--loop zero-grad-before-backward`` ``loss = loss_fn(model(x), y); opt.zero_grad();
loss.backward(); opt.step()``, or with ``--loop lr-scheduler`` the first loop followed by the
``step()`` of a ``CosineAnnealingLR`` (which wraps ``opt.step`` on the instance), or with ``--loop
clip-grad-norm`` the first loop with ``torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)``
before ``opt.step()``.

    python benchmarks/bench_counter.py                # both cases (resnet18: minutes)
    python benchmarks/bench_counter.py --only ffn     # seconds
    python benchmarks/bench_counter.py --only ffn --baseline ../main   # before/after
    python benchmarks/bench_counter.py --only ffn --loop zero-grad-before-backward
    python benchmarks/bench_counter.py --quick        # fewer rounds, resnet18 batch 8
    python benchmarks/bench_counter.py --threads 2    # default: 1 thread, as the paper's runs
    python benchmarks/bench_counter.py --memory       # RSS growth over 10,000 FFN steps, both modes

The script times the ``torch_tos`` of the checkout it lives in (not whichever one is installed).

Memory (``--memory``): the FFN trained for 10,000 steps inside ``TOsCounter(cache=True)`` and
``TOsCounter(cache=False)``; the resident set size is read from ``/proc/self/statm`` after 500
warm-up steps and after the 10,000 (goal: growth <= 5 MB in both modes).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

import torch_tos  # noqa: E402


def ffn(width: int = 18, depth: int = 3) -> nn.Module:
    layers, d = [], 4
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.Sigmoid()]
        d = width
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


def banknote_batches(batch: int = 64):
    try:
        from torch_tos.data import load_banknote

        X, y = load_banknote()
        X, y = torch.from_numpy(X), torch.from_numpy(y)
        source = "bundled Banknote"
    except ImportError:  # the bundled loader is not there yet: random data of the same shape
        g = torch.Generator().manual_seed(0)
        X, y = torch.randn(1372, 4, generator=g), torch.randint(0, 2, (1372, 1), generator=g).float()
        source = "random, Banknote-shaped"
    n = len(X) // batch * batch
    return [(X[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)], source


def cases(quick: bool):
    torch.manual_seed(0)
    batches, source = banknote_batches()
    yield (f"FFN 4-18-18-18-1 sigmoid, batch 64 ({source})", ffn,
           lambda m: torch.optim.SGD(m.parameters(), lr=0.01), nn.MSELoss(), batches)
    import torchvision

    b = 8 if quick else 32
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(b, 3, 64, 64, generator=g), torch.randint(0, 10, (b,), generator=g))
            for _ in range(4)]
    yield (f"resnet18 batch {b}, 3x64x64", lambda: torchvision.models.resnet18(num_classes=10),
           lambda m: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), nn.CrossEntropyLoss(), data)


class _Watching(TorchFunctionMode):
    """A mode that does nothing: the ``floor`` variant's observer."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def watch_outside_the_model(model, opt) -> list:
    """Hooks that keep a :class:`_Watching` mode on the stack from the model's forward returning
    to the optimizer's step pre-hook, as the counter's tracer is; returns their handles."""
    mode = _Watching()
    from torch_tos._compat import pop_torch_function_mode as pop, push_torch_function_mode as push

    def on(*_):
        push(mode)

    def off(*_):
        pop()

    return [model.register_forward_hook(on), opt.register_step_pre_hook(off)]


def hooks_that_do_nothing(model, opt) -> list:
    """Hooks of the counter's kinds, at its places, doing nothing (the ``hooks`` variant); returns
    their handles."""
    def nothing(*_):
        return None

    return [model.register_forward_pre_hook(nothing, with_kwargs=True, prepend=True),
            model.register_forward_hook(nothing, prepend=True, always_call=True),
            opt.register_step_pre_hook(nothing), opt.register_step_post_hook(nothing)]


def hooks_that_only_read(model, opt) -> list:
    """The ``reads`` variant's hooks (module doc): they read, from the model's call in
    :func:`one_step`, what a replayed step compares, and keep the values until the next step."""
    import operator
    import threading

    from torch_tos._compat import is_any_autocast_enabled, torch_function_stack_len

    params, thread, kept = list(model.parameters()), threading.get_ident(), []
    every = operator.attrgetter("dtype", "requires_grad", "grad")
    sig = operator.attrgetter("shape", "dtype", "requires_grad", "device", "layout")
    frame_of_the_call = 3  # read_before_the_forward <- inner <- _call_impl <- _wrapped_call_impl

    def read_before_the_forward(module, args, kwargs):
        if threading.get_ident() != thread or torch.compiler.is_compiling():
            return None
        modes = (torch.is_grad_enabled(), torch.is_inference_mode_enabled(), is_any_autocast_enabled(),
                 sys.gettrace(), sys.getprofile(), sys.exc_info()[0], torch_function_stack_len())
        state = opt.state
        frame = sys._getframe(frame_of_the_call).f_back
        where = (frame.f_code, frame.f_lasti, frame.f_back, frame.f_back.f_lasti)
        names = frame.f_locals
        loss_fn, target = names["loss_fn"], names["y"]
        names.clear()
        d = loss_fn.__dict__
        loss = (d["_forward_hooks"] or d["_forward_pre_hooks"] or d["_backward_hooks"] or
                d["_backward_pre_hooks"] or d["_parameters"] or d["_buffers"], tuple(d.values()),
                type(loss_fn).forward, torch.nn.Module._call_impl, torch.Tensor.backward)
        kept[:] = [modes, sig(args[0]), tuple(map(every, params)), len(state),
                   sum(map(len, state.values())), where, loss, sig(target)]
        return None

    def read_before_the_step(optimizer, args, kwargs):
        if threading.get_ident() != thread:
            return None
        state = optimizer.state
        kept.append((sys._getframe(1).f_back.f_lasti, len(state), sum(map(len, state.values())),
                     tuple([(tuple(g.values()), tuple([p.grad is None for p in g["params"]]))
                            for g in optimizer.param_groups])))
        return None

    def nothing(*_):
        return None

    return [model.register_forward_pre_hook(read_before_the_forward, with_kwargs=True, prepend=True),
            model.register_forward_hook(nothing, prepend=True, always_call=True),
            opt.register_step_pre_hook(read_before_the_step), opt.register_step_post_hook(nothing)]


def load_baseline(folder: str):
    """The ``torch_tos`` package of another checkout, imported as ``torch_tos_baseline`` (a copy
    under that name: its imports are relative)."""
    src = os.path.join(folder, "torch_tos")
    if not os.path.isdir(src):
        raise SystemExit(f"--baseline: {folder} has no torch_tos package")
    tmp = tempfile.mkdtemp(prefix="torch_tos_baseline_")
    shutil.copytree(src, os.path.join(tmp, "torch_tos_baseline"))
    sys.path.insert(0, tmp)
    return importlib.import_module("torch_tos_baseline")


def zero_grad_first(model, opt, loss_fn, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()


def zero_grad_before_backward(model, opt, loss_fn, x, y) -> None:
    loss = loss_fn(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


_SCHEDULERS: dict = {}  # id(optimizer) -> its scheduler (the optimizers live as long as the run)


def with_lr_scheduler(model, opt, loss_fn, x, y) -> None:
    sched = _SCHEDULERS.get(id(opt))
    if sched is None:  # set up on the optimizer's first step (the warm-up's): wraps opt.step
        sched = _SCHEDULERS[id(opt)] = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10 ** 6)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    sched.step()


def with_clipping(model, opt, loss_fn, x, y) -> None:
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


#: ``--loop``: the step every variant runs.
LOOPS = {"zero-grad-first": zero_grad_first, "zero-grad-before-backward": zero_grad_before_backward,
         "lr-scheduler": with_lr_scheduler, "clip-grad-norm": with_clipping}
one_step = zero_grad_first


def bench(label, make_model, make_opt, loss_fn, batches, steps, rounds, baseline=None):
    """Identical models (same weights), one per variant, stepped in turn (one step of each, in a
    random order every step) so that every variant sees the same machine at the same moments;
    each step is timed on its own (wall and process CPU time)."""
    variants = ["plain", "hooks", "reads", "floor", "cached", "steady", "uncached"]
    libs = {"cached": torch_tos, "steady": torch_tos}
    if baseline is not None:
        variants += ["cached@base", "steady@base"]
        libs.update({"cached@base": baseline, "steady@base": baseline})
    models = {v: make_model() for v in variants}
    state = models["plain"].state_dict()
    for m in models.values():
        m.load_state_dict(state)
    opts = {v: make_opt(m) for v, m in models.items()}
    for v in variants:  # warm-up: allocator, kernels, lazy imports
        for x, y in batches[:3]:
            one_step(models[v], opts[v], loss_fn, x, y)
    handles = watch_outside_the_model(models["floor"], opts["floor"])
    handles += hooks_that_do_nothing(models["hooks"], opts["hooks"])
    handles += hooks_that_only_read(models["reads"], opts["reads"])
    counters = {}
    for v in variants:
        if v.startswith("steady"):
            counters[v] = libs[v].TOsCounter(models[v], opts[v], history=None).__enter__()
            one_step(models[v], opts[v], loss_fn, *batches[0])  # the one counted step
    uncached = torch_tos.TOsCounter(models["uncached"], opts["uncached"], cache=False).__enter__()
    wall = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    rng = random.Random(0)
    try:
        for r in range(rounds):
            # a fresh counter every round: its first step is counted op by op, inside the 50
            fresh = {v: libs[v].TOsCounter(models[v], opts[v]).__enter__()
                     for v in variants if v.startswith("cached")}
            w = dict.fromkeys(variants, 0.0)
            c = dict.fromkeys(variants, 0.0)
            for i in range(steps):
                x, y = batches[i % len(batches)]
                order = list(variants)
                rng.shuffle(order)  # a random order every step: no variant always follows another
                for v in order:
                    c0, t0 = time.process_time(), time.perf_counter()
                    one_step(models[v], opts[v], loss_fn, x, y)
                    w[v] += time.perf_counter() - t0
                    c[v] += time.process_time() - c0
            for v, counter in fresh.items():
                counter.__exit__(None, None, None)
                misses = [(rec.cache, rec.recount) for rec in counter.steps if rec.cache != "hit"]
                assert misses == [("miss", "first step")], (v, misses)
            for v in variants:
                wall[v].append(w[v])
                cpu[v].append(c[v])
    finally:
        for counter in counters.values():
            counter.__exit__(None, None, None)
        uncached.__exit__(None, None, None)
        for h in handles:
            h.remove()
    for v, counter in counters.items():
        assert sum(rec.cache == "miss" for rec in counter.steps) == 1, f"{v}: the counter re-counted a step"
        replay = getattr(counter._tracker, "replay", None)
        if replay is not None:
            identical = getattr(replay, "identical", None)
            seen = f" ({identical} with the loop's values seen by identity)" if identical is not None else ""
            print(f"  {v}: {replay.replayed} of {counter.total.steps} steps replayed{seen}")
    out = {}
    print(f"\n{label}: {rounds} rounds x {steps} steps per variant")
    print(f"  {'variant':<12}{'wall ms/step':>14}{'ratio':>8}{'CPU ms/step':>13}{'ratio':>8}"
          f"{'CPU ratio per round: median (min..max)':>41}")
    for v in variants:
        mw, mc = statistics.median(wall[v]), statistics.median(cpu[v])
        pw, pc = statistics.median(wall["plain"]), statistics.median(cpu["plain"])
        per_round = [a / b for a, b in zip(cpu[v], cpu["plain"])]
        out[v] = (mw / pw, mc / pc, statistics.median(per_round))
        print(f"  {v:<12}{mw / steps * 1e3:>14.3f}{mw / pw:>8.3f}{mc / steps * 1e3:>13.3f}{mc / pc:>8.3f}"
              f"{statistics.median(per_round):>20.3f} ({min(per_round):.3f}..{max(per_round):.3f})")
    return out


def rss_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def memory(steps: int = 10_000, warmup: int = 500) -> dict:
    import gc

    _, make_model, make_opt, loss_fn, batches = next(cases(quick=True))
    out = {}
    for cache in (True, False):
        model = make_model()
        opt = make_opt(model)
        with torch_tos.TOsCounter(model, opt, cache=cache) as counter:
            for i in range(warmup):
                one_step(model, opt, loss_fn, *batches[i % len(batches)])
            gc.collect()
            before = rss_mb()
            for i in range(steps):
                one_step(model, opt, loss_fn, *batches[i % len(batches)])
            gc.collect()
            after = rss_mb()
        assert counter.total.steps == steps + warmup
        out[cache] = after - before
        print(f"  cache={cache!s:<5}  RSS {before:8.1f} MB -> {after:8.1f} MB over {steps} steps: "
              f"growth {after - before:+.2f} MB")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=None, help="default: 20 FFN, 3 resnet18 (quick: 5, 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("ffn", "resnet18"), default=None)
    ap.add_argument("--memory", action="store_true", help="only the RSS growth benchmark")
    ap.add_argument("--loop", choices=tuple(LOOPS), default="zero-grad-first",
                    help="the loop: zero_grad() first (default), zero_grad() between the loss and its backward, "
                         "the first with an LR scheduler's step() after the optimizer's, or with "
                         "clip_grad_norm_ before it")
    ap.add_argument("--baseline", metavar="DIR", default=None,
                    help="another checkout whose torch_tos is timed beside this one (before/after)")
    args = ap.parse_args(argv)
    global one_step
    one_step = LOOPS[args.loop]
    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline) if args.baseline else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} thread(s), python {platform.python_version()}, load average {load:.2f}, loop {args.loop}"
          + (f", baseline {args.baseline}" if baseline else ""))
    if args.memory:
        print("\nFFN, TOsCounter memory:")
        memory()
        return
    for i, (label, make_model, make_opt, loss_fn, batches) in enumerate(cases(args.quick)):
        if args.only and (i == 0) != (args.only == "ffn"):
            continue
        rounds = args.rounds or ((5 if args.quick else 20) if i == 0 else (1 if args.quick else 3))
        bench(label, make_model, make_opt, loss_fn, batches, args.steps, rounds, baseline)
    if hasattr(os, "getloadavg"):
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
