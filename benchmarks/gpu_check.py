"""The cost model's GPU path end to end, on one NVIDIA GPU, in under 8 minutes: calibrate the
device with the NVML meter, print the model and Table V, predict a training run and an inference
run of two models outside the calibration, measure both and print predicted vs measured.

    python benchmarks/gpu_check.py                   # cuda:0, float32 + bfloat16, NVML meter
    python benchmarks/gpu_check.py --device cuda:1 --dtypes float32,float16,bfloat16,tf32 --out gpu-check

Prepared for a machine with an NVIDIA GPU (``nvidia-ml-py`` installed); its figures go to
benchmarks/README.md. The microbenchmark sweep is thinned (every 3rd size of each workload, NVML
windows of 0.2 s need fewer, longer measurements) and the suite's runs lengthened (``--scale``)
so each run spans several NVML updates; the CUDA device is synchronised at every window edge.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import torch


def measure(law, name, build, batch, side, steps, mode, meter, device, repeats=3):
    from torch_tos.energy.families.micro import Classifier
    from torch_tos.energy.runner import Workload, run_workload

    fam = Classifier(name, build, batch_size=batch, input_size=side, n_batches=1)
    w = Workload(fam, fam.configs()[0], steps, fam.default_lr, 1, mode, None, device,
                 "sgd_momentum" if mode == "training" else None)
    X, y = w.data()
    model = w.build()
    opt = w.make_optimizer(model.parameters()) if mode == "training" else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = law.predict(model, X, mode=mode, steps=steps, target=y, loss_fn=fam.loss_fn(), optimizer=opt)
    run_workload(w, w.build(), X, y, max_steps=2)  # warm-up: kernel selection, allocator
    joules, seconds = [], []
    for r in range(repeats):
        torch.manual_seed(r)
        m = w.build()
        with meter.measure() as res:
            run_workload(w, m, X, y)
        joules.append(res.joules)
        seconds.append(res.seconds)
    mj, ms = sum(joules) / repeats, sum(seconds) / repeats
    print(f"{name} ({mode}, {steps} steps, batch {batch}, {side}²): predicted {pred.joules:.4g} J "
          f"[{pred.joules_low:.4g}, {pred.joules_high:.4g}], {pred.seconds:.4g} s; measured {mj:.4g} J, {ms:.4g} s "
          f"(mean of {repeats}); error joules {100 * (pred.joules - mj) / mj:+.1f} %, seconds "
          f"{100 * (pred.seconds - ms) / ms:+.1f} %")
    for c in caught:
        print(f"  note: {str(c.message).splitlines()[0]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 allow_abbrev=False)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--meter", default="nvml")
    ap.add_argument("--out", default="gpu-check")
    ap.add_argument("--thin", type=int, default=3)
    ap.add_argument("--scale", type=float, default=4.0)
    args = ap.parse_args(argv)
    import torchvision

    from torch_tos.energy import get_meter
    from torch_tos.energy.calibrate import calibrate
    from torch_tos.energy.evaluate import format_evaluation

    if not torch.cuda.is_available():
        print("no CUDA device here: this check needs one NVIDIA GPU")
        return 1
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    meter = get_meter(args.meter)
    print(f"device {args.device} ({torch.cuda.get_device_name(torch.device(args.device))}), meter {meter.describe()}")
    cal = calibrate(os.path.join(args.out, "law.json"), device=args.device, dtypes=args.dtypes.split(","),
                    meter=meter, repeats=2, scale=args.scale, thin=args.thin, progress=True)
    print(f"calibration: {time.perf_counter() - t0:.0f} s")
    print(cal.law)
    for mode in dict.fromkeys(cal.errors["mode"]):
        print(f"\nTable V, {mode} runs held out:")
        print(format_evaluation(cal.errors[cal.errors["mode"] == mode].drop(columns="mode")))
    print()
    measure(cal.law, "mnasnet0_5", lambda: torchvision.models.mnasnet0_5(num_classes=10), 32, 96, 60, "training",
            meter, args.device)
    measure(cal.law, "googlenet", lambda: torchvision.models.googlenet(num_classes=10, aux_logits=False,
                                                                        init_weights=True), 32, 96, 60,
            "inference", meter, args.device)
    print(f"\ngpu_check finished in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(main())
