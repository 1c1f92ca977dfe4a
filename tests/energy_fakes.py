"""Synthetic machine profiles and cost models for the energy tests (no measuring)."""

import torch

from torch_tos.energy.costmodel import CostModel
from torch_tos.energy.machine import MachineProfile
from torch_tos.energy.opclasses import AXES, CLASSES
from torch_tos.energy.steplaw import StepLaw

#: attrs of the convolution points: every kind measured with oneDNN and the im2col path
_CONV_KINDS = [[k, 9, 1, b, 16] for k in ("dense", "grouped", "depthwise") for b in ("Mkldnn", "Slow2d")]


def synthetic_profile(dtypes=("float32", "float64")) -> MachineProfile:
    """Points for every class and dtype: cost = 1 µs + work / rate (float64 twice float32's cost)."""
    points = []
    for d, dtype in enumerate(dtypes):
        slow = 1 + d
        for cls in CLASSES:
            if cls in ("views", "collective"):
                continue
            axes = AXES.get(cls, ("bytes",))
            conv = cls in ("conv", "conv_backward", "dwconv", "dwconv_backward")
            if conv:
                kinds = [k for k in _CONV_KINDS if (k[0] == "depthwise") == cls.startswith("dw")]
            else:
                kinds = [[3, 16, True] if "statistics" in axes else None]
            for attrs in kinds:
                for size in (1e2, 1e4, 1e6, 1e8):
                    flops = size * 10 if axes[0] == "flops" else 0.0
                    macs_attrs = [size] if axes[0] in ("macs", "tensors") else attrs
                    seconds = slow * (1e-6 + size / 1e10 + flops / 1e11)
                    points.append({"class": cls, "op": f"aten.{cls}", "dtype": dtype, "attrs": macs_attrs,
                                   "flops": flops, "bytes_in": size / 2, "bytes_out": size / 2,
                                   "seconds": seconds, "joules": 10 * seconds})
    return MachineProfile(points, {"seconds": 2e-7, "joules": 2e-6}, [[1e3, 1e-7, 1e-6], [1e8, 1e-3, 1e-2]],
                          {"type": "cpu", "name": "synthetic", "index": None, "threads": 1, "meter": "fake"}, dtypes)


def synthetic_law(modes=("training", "inference"), dtypes=("float32", "float64")) -> CostModel:
    """A cost model of :func:`synthetic_profile` with step-level laws of known coefficients."""
    coef = {"training": {"alpha": 1.2, "beta_forward": 2e-5, "beta_backward": 1e-5, "beta_optimizer": 3e-5,
                         "beta_memory": 2e-10, "e_step": 1e-3, "e_run": 0.05},
            "inference": {"alpha": 0.8, "beta_forward": 1e-5, "e_step": 2e-4, "e_run": 0.02}}
    laws = {}
    for mode in modes:
        for q in ("joules", "seconds"):
            law = StepLaw(mode, q)
            law.coef_ = {k: (v if q == "joules" else v / 10) for k, v in coef[mode].items()}
            law.ranges_ = {"steps": (5.0, 100.0), "cost_joules": (1e-6, 10.0), "ops_forward": (10.0, 1e5),
                           "ops_backward": (0.0, 1e5), "ops_optimizer": (0.0, 1e5)}
            law.ratios_ = torch.linspace(0.8, 1.25, 21).numpy()
            law.interval_source_ = "leave-one-family-out"
            law.n_train_ = 40
            laws[(mode, q)] = law
    fp = {"host": "h", "cpu": "synthetic", "threads": 1, "torch": torch.__version__}
    return CostModel(synthetic_profile(dtypes), laws, fingerprints={"profile": {}, "runs": [fp]},
                     meta={"threads": None, "meter": "fake", "dtypes": list(dtypes)})


def write_bench(path, dtypes=("float32",), threads=1, meter="cputime", reference=0.8):
    """A finished microbenchmark file of :func:`synthetic_profile` for this machine's setup: a
    calibration that finds it measures no microbenchmark (it resumes) and goes on to its suite.
    ``reference``: nominal reference joules — the file begun with the built-in drift reference (as a
    CPU calibration is by default), its track reading the nominal throughout (the profile as
    synthesised); None: a file measured without it."""
    import json

    from torch_tos.energy.benchsuite import WORKLOADS
    from torch_tos.energy.device import resolve_device
    from torch_tos.energy.microbench import plan

    dev = resolve_device("cpu")
    prof = synthetic_profile(dtypes)
    setup = {"device": "cpu", "name": dev.name, "threads": threads, "meter": meter}
    lines = [{"setup": setup}, {"floor": dict(prof.floor)}, {"alloc": prof.alloc}]
    if reference is not None:
        from torch_tos.energy.calibrate import REFERENCE_STEPS
        from torch_tos.energy.reference import Reference

        setup["reference"] = Reference(REFERENCE_STEPS).describe()
        lines[1:1] = [{"reference": {"nominal": reference, "workload": setup["reference"]}},
                      {"ref": [0.0, reference]}, {"ref": [1e10, reference]}]
    first = True
    for dt, w, size in plan(dtypes, WORKLOADS):
        pts = [p for p in prof.points if p["dtype"] == dt] if first else []
        first = False
        lines.append({"dtype": dt, "workload": w.name, "size": list(size) if isinstance(size, tuple) else [size],
                      "points": pts})
    with open(path, "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in lines)
