"""Sharded calibration: one calibration measured by several hosts of one machine, merged into one law.

``torch-tos calibrate --shard i/n --out law.json`` on each of ``n`` hosts (a SLURM array, torchrun,
or by hand; ``--shard auto`` reads the shard from the launcher's environment, :func:`parse_shard`)
runs :func:`calibrate_shard`:

- **the suite is split by entry**: shard ``i`` measures every ``n``-th entry of the calibration
  suite starting at the ``i``-th (:func:`~.calibrate.suite_workloads`), each entry at both of its
  lengths, so each model's per-step and per-run costs are measured on one host and no configuration
  is measured on two;
- **the machine profile is each host's own**: a profile's costs are one machine's (its dispatch
  floor is subtracted from its own calls), so every shard measures the whole microbenchmark plan on
  its host — the microbenchmarks are not split;
- each shard writes its own files next to ``law.json`` — ``law.shard-I-of-N.bench.jsonl``,
  ``law.shard-I-of-N.runs.csv`` and its options in ``law.shard-I-of-N.setup.json`` — each result as
  it completes, so a shard that is killed resumes where it stopped (a file lock only protects
  processes of one host; shards never share a file).

``torch-tos calibrate --merge --out law.json`` (:func:`merge_shards`), once every shard has
finished, checks that all ``n`` shards are there, finished, measured with the same options and on
one machine (one CPU model or GPU, core count and torch version: two machines' costs are never one
law — calibrate each machine on its own), then merges the shards' profiles into one — each call's
seconds and joules, the dispatch floor and the allocation curve are the median over the shards —,
prices every shard's runs with it and fits the step-level laws (:func:`~.calibrate.fit_cost_model`).
The law records every shard's microbenchmarking machine (``fingerprints.profiles``) and every
host of its runs (``fingerprints.runs``). The merge reports how far each shard's profile lies from
the merged one (the median |log ratio| of its calls, as a percentage): node-to-node differences of
one machine model show there, and in the held-out errors — each configuration is measured on one
host, so the noise floor (runs of one configuration) does not contain them.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .reference import calibration_noise, noise_notes, recorrect

#: Options a shard records and every shard of one calibration must share.
OPTIONS = ("device", "dtypes", "threads", "repeats", "families", "scale", "seed", "reference", "meter", "thin",
           "workloads", "isolate")


def parse_shard(text, env=None) -> tuple[int, int]:
    """``"i/n"`` (1 ≤ i ≤ n) → ``(i, n)``; ``"auto"``: from a SLURM array (``SLURM_ARRAY_TASK_ID``,
    ``SLURM_ARRAY_TASK_MIN``, ``SLURM_ARRAY_TASK_COUNT``) or torchrun (``RANK``, ``WORLD_SIZE``)."""
    from .sweep import parse_shard as parse

    if str(text).strip() != "auto":
        return parse(str(text))
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env:
        try:
            task, low, count = (int(env[k]) for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                                      "SLURM_ARRAY_TASK_COUNT"))
        except (KeyError, ValueError):
            raise ValueError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN or "
                             "SLURM_ARRAY_TASK_COUNT is missing or not a number; give the shard as i/n") from None
        return parse(f"{task - low + 1}/{count}")
    if "RANK" in env and "WORLD_SIZE" in env:
        try:
            return parse(f"{int(env['RANK']) + 1}/{int(env['WORLD_SIZE'])}")
        except ValueError:
            raise ValueError(f"--shard auto: RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} are not a "
                             "rank and a world size; give the shard as i/n") from None
    raise ValueError("--shard auto: neither a SLURM array (SLURM_ARRAY_TASK_ID) nor torchrun (RANK, WORLD_SIZE) "
                     "launched this process; give the shard as i/n")


def shard_paths(law_path, i: int, n: int) -> dict[str, Path]:
    """The files of shard ``i`` of ``n`` next to ``law_path``: ``setup``, ``bench``, ``runs``."""
    p = Path(law_path)
    base = f"{p.stem}.shard-{i}-of-{n}"
    return {"setup": p.with_name(base + ".setup.json"), "bench": p.with_name(base + ".bench.jsonl"),
            "runs": p.with_name(base + ".runs.csv")}


def calibrate_shard(out="law.json", shard="1/1", *, device="cpu", dtypes=None, threads: int = 1, meter="auto",
                    repeats: int = 2, reference=None, families=None, scale: float = 1.0, workloads=None,
                    seed: int = 0, progress: bool = True, callback=None, thin: int = 1,
                    isolate: bool | None = None) -> dict:
    """Measure shard ``shard`` (``"i/n"``, ``(i, n)`` or ``"auto"``) of the calibration of ``out``
    (module doc; options as :func:`~.calibrate.calibrate`); resumable. Returns a summary dict:
    ``shard``, ``paths``, ``points`` (microbenchmarked calls), ``runs``, ``configurations``, ``seconds``."""
    from ..fileio import atomic_write_text
    from .benchfile import measure_profile
    from .calibrate import _reference, isolated_runs, suite_workloads
    from .isolate import fresh_server, resolve_isolate
    from .device import check_dtypes, resolve_device
    from .meters import get_meter
    from .runfile import check_output
    from .runner import run_plan

    t0 = time.perf_counter()
    i, n = shard if isinstance(shard, tuple) else parse_shard(shard)
    law_path = check_output(out, what="--out")
    files = shard_paths(law_path, i, n)
    for p in files.values():
        check_output(p, what="shard file")
    dev = resolve_device(device)
    dtypes = check_dtypes(dtypes, dev)
    for name, v in (("threads", threads), ("repeats", repeats), ("thin", thin)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    suite = suite_workloads(threads=threads, device=str(dev), dtypes=set(dtypes), families=families, scale=scale,
                            shard=(i, n))
    if not suite:
        raise ValueError(f"shard {i}/{n} holds no suite entry (the suite{' of these families' if families else ''} "
                         f"has fewer entries than {n} shards); use fewer shards")
    if workloads is not None and isinstance(workloads[0], str):
        from .benchsuite import get_workloads

        get_workloads(workloads)
    meter = get_meter(meter)
    ref = _reference(reference, dev)
    isolate = resolve_isolate(isolate, suite, dev)
    setup = {"shard": [i, n], "device": str(dev), "dtypes": list(dtypes), "threads": threads, "repeats": repeats,
             "families": sorted(families) if families else None, "scale": float(scale), "seed": seed,
             "reference": ref is not None, "meter": meter.source, "thin": thin, "isolate": isolate,
             "workloads": list(workloads) if workloads and isinstance(workloads[0], str) else None}
    if files["setup"].exists():
        old = _read_setup(files["setup"])
        old.setdefault("isolate", False)  # a shard begun before runs were isolated measured them in-process
        diff = [k for k in setup if old.get(k) != setup[k]]
        if diff:
            raise ValueError(f"{files['setup']} was begun with other options ({', '.join(f'{k} {old.get(k)!r}' for k in diff)}"
                             f"; now {', '.join(f'{setup[k]!r}' for k in diff)}): resume it with the same options, or "
                             "use another --out")
    else:
        atomic_write_text(files["setup"], json.dumps(setup) + "\n")
    with fresh_server(isolate, isolated_runs(suite), meter) as server:
        profile = measure_profile(dev, dtypes, meter, files["bench"], threads=threads, workloads=workloads,
                                  progress=progress, thin=thin, reference=ref)
        run_plan(suite, files["runs"], repeats=repeats, meter=meter, reference=ref, seed=seed, progress=progress,
                 callback=callback, desc=f"step-level runs, shard {i}/{n}", nominal=profile.reference, fresh=server)
    return {"shard": (i, n), "paths": files, "points": len(profile.points), "runs": len(suite) * repeats,
            "configurations": len(suite), "seconds": time.perf_counter() - t0}


def _read_setup(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a shard's setup file ({e}); delete it and rerun that shard") from None
    if not isinstance(data, dict) or not isinstance(data.get("shard"), list) or len(data["shard"]) != 2:
        raise ValueError(f"{path}: not a shard's setup file (no shard); delete it and rerun that shard")
    return data


def find_shards(law_path) -> dict[int, dict]:
    """The shards of ``law_path`` found next to it: shard number → its setup (every shard of one
    shard count present, else a ``ValueError`` naming the missing ones and how to measure them)."""
    p = Path(law_path)
    pattern = re.compile(re.escape(p.stem) + r"\.shard-(\d+)-of-(\d+)\.setup\.json")
    found: dict[int, dict[int, Path]] = {}
    for f in p.parent.glob(f"{p.stem}.shard-*-of-*.setup.json"):
        m = pattern.fullmatch(f.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = f
    if not found:
        raise ValueError(f"no shards of {p} found (files {p.stem}.shard-I-of-N.setup.json next to it); run "
                         f"torch-tos calibrate --shard i/n --out {p} on each host first")
    if len(found) > 1:
        raise ValueError(f"{p.parent} holds shards of {len(found)} shard counts ({', '.join(f'of {n}' for n in sorted(found))}) "
                         f"for {p.name}: keep the files of one count (or use another --out)")
    n, files = next(iter(found.items()))
    missing = [i for i in range(1, n + 1) if i not in files]
    if missing:
        raise ValueError(f"shard(s) {', '.join(f'{i}/{n}' for i in missing)} of {p} are missing: run torch-tos "
                         f"calibrate --shard {missing[0]}/{n} --out {p} on its host (or copy its files here)")
    setups = {i: _read_setup(files[i]) for i in sorted(files)}
    first = setups[1]
    for i, s in setups.items():
        if s.get("shard") != [i, n]:
            raise ValueError(f"{files[i]} says it is shard {s.get('shard')}, not {i}/{n}; delete it and rerun that shard")
        diff = [k for k in OPTIONS if s.get(k) != first.get(k)]
        if diff:
            raise ValueError(f"shards 1/{n} and {i}/{n} of {p} were measured with other options ({diff[0]}: "
                             f"{first.get(diff[0])!r} and {s.get(diff[0])!r}); rerun the shards with one set of options")
    return setups


def merge_shards(out="law.json"):
    """Merge the finished shards of ``out`` into one cost model, save it to ``out`` and return the
    :class:`~.calibrate.Calibration` (module doc); its ``notes`` say how far each shard's profile
    lies from the merged one."""
    from .calibrate import Calibration, _run_counts, fit_cost_model, heldout_errors, suite_workloads
    from .pricing import price_runs
    from .runfile import check_output
    from .runs import read_runs

    t0 = time.perf_counter()
    law_path = check_output(out, what="--out")
    setups = find_shards(law_path)
    n = len(setups)
    s = setups[1]
    families = set(s["families"]) if s.get("families") else None
    profiles, shares = [], {}
    for i in setups:
        files = shard_paths(law_path, i, n)
        share = suite_workloads(threads=s["threads"], device=s["device"], dtypes=set(s["dtypes"]), families=families,
                                scale=s["scale"], shard=(i, n))
        profiles.append(_shard_profile(files["bench"], s, f"shard {i}/{n}", law_path))
        shares[i] = share
    _check_one_machine(profiles, law_path)
    merged, spread = _merge_profiles(profiles, s["dtypes"])
    paths = [shard_paths(law_path, i, n)["runs"] for i in setups]
    for i, p in zip(setups, paths):
        if not p.exists():
            raise ValueError(f"shard {i}/{n} has not begun its runs ({p} is missing): rerun torch-tos calibrate "
                             f"--shard {i}/{n} --out {law_path} on its host (it resumes)")
    table = read_runs(paths, features=("tos", "flops"))
    if s.get("reference"):  # each shard's runs at its own profile's nominal
        table = pd.concat([recorrect(table[table["file"] == str(p)], prof.reference, p)
                           for p, prof in zip(paths, profiles)], ignore_index=True)
    for i, share in shares.items():
        _check_runs_done(table, share, s["repeats"], shard_paths(law_path, i, n)["runs"], f"{i}/{n}", law_path)
    suite = [w for share in shares.values() for w in share]
    priced = price_runs(table, _run_counts(suite, {}), merged)
    fps = [{**p.fingerprint, "shard": f"{i}/{n}"} for i, p in zip(setups, profiles)]
    meta = {"dtypes": list(s["dtypes"]), "threads": s["threads"], "meter": s["meter"], "device": s["device"],
            "repeats": s["repeats"], "shards": n, "isolate": bool(s.get("isolate")),
            **_noise(table, paths, profiles, s)}
    law = fit_cost_model(merged, priced, meta=meta, profile_fingerprint=profiles[0].fingerprint,
                         profile_fingerprints=fps)
    law.save(law_path)
    notes = [f"merged {n} shards: the profile is each call's median over the shards; each shard's profile "
                 "lies from it by (median |log ratio| over its calls) "
                 + ", ".join(f"{i}/{n} {fp.get('host')}: {100 * v:.1f} %" for i, fp, v in
                             zip(setups, fps, spread))]
    every = law_path.with_name(f"{law_path.stem}.shard-*-of-{n}")
    return Calibration(law, priced, law_path, Path(f"{every}.runs.csv"), Path(f"{every}.bench.jsonl"),
                       heldout_errors(priced), time.perf_counter() - t0, notes + noise_notes(meta))


def _noise(table, paths, profiles, setup) -> dict:
    """A merged calibration's :func:`~.reference.calibration_noise`: the run-to-run CV over every
    shard's runs, and the runs' reference state of the shard whose state moved most."""
    out = calibration_noise(table)
    if setup.get("reference"):
        states = [calibration_noise(table[table["file"] == str(p)], prof.reference)["runs_state"]
                  for p, prof in zip(paths, profiles)]
        states = [v for v in states if v]
        out["runs_state"] = max(states, key=lambda v: abs(math.log(v))) if states else None
    return out


def _shard_profile(path: Path, setup: dict, name: str, law_path):
    """The finished machine profile of a shard's microbenchmark file."""
    from .benchfile import BenchFile
    from .benchsuite import get_workloads
    from .machine import MachineProfile
    from .microbench import plan

    again = f"rerun torch-tos calibrate --shard {name.split()[-1]} --out {law_path} on its host (it resumes)"
    if not path.exists():
        raise ValueError(f"{name} has not begun its microbenchmarks ({path} is missing): {again}")
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    try:
        bench_setup = json.loads(first)["setup"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a torch_tos microbenchmark file (no setup line); {again}") from None
    bf = BenchFile(path, bench_setup)
    fp, floor, alloc = bf.get("fingerprint"), bf.get("floor"), bf.get("alloc")
    chosen = get_workloads(setup.get("workloads"))
    todo = {(dt, w.name, json.dumps(list(size) if isinstance(size, (list, tuple)) else [size]))
            for dt, w, size in plan(setup["dtypes"], chosen, setup["thin"])}
    done = todo & bf.done()
    if floor is None or alloc is None or fp is None or len(done) < len(todo):
        raise ValueError(f"{name} has not finished its microbenchmarks ({len(done)} of {len(todo)} sizes measured in "
                         f"{path}): {again}")
    dev = {"type": setup["device"].split(":")[0], "name": bench_setup.get("name"),
           "index": int(setup["device"].split(":")[1]) if ":" in setup["device"] else None,
           "threads": int(setup["threads"]), "meter": setup["meter"]}
    track = bf.track()
    points, floor, alloc = bf.corrected(track)
    profile = MachineProfile(points, floor, alloc, dev, setup["dtypes"], fingerprint=fp)
    profile.reference = None if track is None else track.nominal
    return profile


def _check_one_machine(profiles, law_path) -> None:
    from .fingerprint import MATCH

    def ident(fp):
        return tuple(fp.get(k) for k in MATCH)

    kinds: dict = {}
    for i, p in enumerate(profiles, 1):
        kinds.setdefault(ident(p.fingerprint), []).append(f"{i}/{len(profiles)} ({p.fingerprint.get('host')})")
    if len(kinds) > 1:
        listed = "; ".join(f"{', '.join(shards)} on {k[3] or k[0]} ({k[1]} cores, torch {k[4]})"
                           for k, shards in kinds.items())
        raise ValueError(f"the shards of {law_path} were measured on {len(kinds)} machines — {listed}: a cost model is "
                         "one machine's; calibrate each machine with its own --out (and its own shards)")


def _merge_profiles(profiles, dtypes):
    """One profile from the shards': each call's seconds and joules, the floor and the allocation
    curve the median over the shards that measured them; and each shard's median |log ratio| to it."""
    from .machine import MachineProfile

    def key(p):
        return (p["class"], p["op"], p["dtype"], json.dumps(p["attrs"]), float(p["flops"]), float(p["bytes_in"]),
                float(p["bytes_out"]))

    by_key: dict = {}
    for s, prof in enumerate(profiles):
        for p in prof.points:
            by_key.setdefault(key(p), []).append((s, p))
    points = []
    for found in by_key.values():
        point = dict(found[0][1])
        for q in ("seconds", "joules"):
            point[q] = float(np.median([p[q] for _, p in found]))
        points.append(point)
    floor = {q: float(np.median([p.floor[q] for p in profiles])) for q in ("seconds", "joules")}
    sizes: dict = {}
    for prof in profiles:
        for b, sec, j in prof.alloc:
            sizes.setdefault(b, []).append((sec, j))
    alloc = [[b, float(np.median([v[0] for v in vs])), float(np.median([v[1] for v in vs]))] for b, vs in sizes.items()]
    merged = {key(p): p for p in points}
    spread = []
    for prof in profiles:
        logs = [abs(math.log(p["seconds"] / merged[key(p)]["seconds"])) for p in prof.points
                if p["seconds"] > 0 and merged[key(p)]["seconds"] > 0]
        spread.append(float(np.median(logs)) if logs else 0.0)
    first = profiles[0]
    return MachineProfile(points, floor, alloc, first.device, dtypes, fingerprint=first.fingerprint), spread


def _check_runs_done(table, share, repeats: int, path: Path, shard: str, law_path) -> None:
    from .calibrate import workload_key
    from .runs import config_keys

    counts = config_keys(table).value_counts()
    done = sum(min(int(counts.get(workload_key(w, len(w.data()[0])), 0)), repeats) for w in share)
    if done < len(share) * repeats:
        raise ValueError(f"shard {shard} has not finished its runs ({done} of {len(share) * repeats} in {path}): "
                         f"rerun torch-tos calibrate --shard {shard} --out {law_path} on its host (it resumes)")


__all__ = ["calibrate_shard", "merge_shards", "find_shards", "shard_paths", "parse_shard", "OPTIONS"]
