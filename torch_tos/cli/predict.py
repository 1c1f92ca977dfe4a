"""``torch-tos predict``: the joules and seconds of training or inference steps of a model that was
never measured, from a calibrated cost model.

Counts the first step and a steady step of the model (``--mode training``: forward, loss,
backward, optimizer step; ``--mode inference``: a forward pass under ``no_grad``) on the meta
device (nothing computed or allocated: a 70B model predicts without its memory; models with fast
paths on real devices count there, :func:`~torch_tos.energy.stepcount.counting_device`), prices
them with the saved cost model (:func:`torch_tos.energy.load_law`) and prints the joules and
seconds with their prediction intervals, the joules per layer, and warnings where the law
extrapolates or the machine differs from the calibration's.
"""

from __future__ import annotations

import warnings

from .errors import CLIError, check_input_file
from .hf import add_hf_arguments, build_hf, hf_source
from .inputs import INPUT_DTYPES, parse_input_dtypes
from .profile import OPTIMIZERS, load_model, parse_shape
from .profile import _optimizer as build_optimizer

MODES = ("training", "inference")
LOSSES = ("sum", "cross_entropy")
#: how to get a law file, said wherever one is missing
MAKE_A_LAW = ("make one on this machine with torch-tos calibrate --out law.json (measures a built-in "
              "suite, a few minutes); torch-tos fit runs.csv --profile law.json --save refit.json refits its "
              "step terms on your own runs")


def _module_model(args):
    """``(model, inputs, loss_fn, what the inputs are)`` of a MODULE:CALLABLE model, inputs on meta
    (on the CPU for a model whose layers run other kernels there:
    :func:`~torch_tos.energy.stepcount.counting_device`)."""
    import torch

    if not args.model:
        raise CLIError("no model given: a MODULE:CALLABLE path (e.g. torchvision.models:resnet18 "
                       "--input-shape 32,3,64,64), --hf-config config.json or --hf-model-type llama")
    if not args.input_shape:
        raise CLIError("--input-shape is required with a MODULE:CALLABLE model, e.g. --input-shape 32,3,64,64")
    from ..energy.stepcount import counting_device

    shapes = [parse_shape(s) for s in args.input_shape]
    dtypes = parse_input_dtypes(args.input_dtype, len(shapes))
    model = load_model(args.model, args.model_kwargs)
    if args.mode == "inference":
        model.eval()
    device = torch.device(counting_device(model, args.mode))  # meta, or the CPU for layers with fast paths
    inputs = tuple(torch.zeros(s, dtype=d, device=device) for s, d in zip(shapes, dtypes))
    loss_fn = None
    if args.loss == "cross_entropy":
        def loss_fn(out):  # class 0 for every sample: the counts do not depend on the labels
            out = out.reshape(-1, out.shape[-1])
            return torch.nn.functional.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long,
                                                                       device=out.device))
    return model, inputs, loss_fn, f"shape {', '.join(map(str, shapes))}"


def _cmd_predict(args) -> int:
    import torch

    from ..energy.law import load_law
    from ..units import duration

    if args.mode not in MODES:
        raise CLIError(f"unknown --mode {args.mode!r}; accepted: {', '.join(MODES)}")
    if args.steps < 1:
        raise CLIError(f"--steps must be a positive number of steps, got {args.steps}")
    if args.optimizer not in OPTIMIZERS:
        raise CLIError(f"unknown --optimizer {args.optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
    if args.loss not in LOSSES:
        raise CLIError(f"unknown --loss {args.loss!r}; accepted: {', '.join(LOSSES)}")
    if not 0 < args.coverage < 1:
        raise CLIError(f"--coverage must be between 0 and 1, got {args.coverage}")
    if args.law is None:
        raise CLIError(f"--law LAW.json is required: this machine's cost model; {MAKE_A_LAW}")
    check_input_file(args.law, "--law", MAKE_A_LAW)
    try:
        law = load_law(args.law)
    except (FileNotFoundError, ValueError) as e:
        raise CLIError(str(e)) from None
    if not callable(getattr(law, "predict", None)) or not hasattr(law, "profile"):
        raise CLIError(f"{args.law} holds the paper's law E = f(TOs) of measured runs, which cannot predict a model's "
                       "steps; make a cost model with torch-tos calibrate --out law.json")
    meta = torch.device("meta")
    hf = hf_source(args)
    if hf:
        if args.loss != "sum":
            raise CLIError("--loss applies to MODULE:CALLABLE models; a Hugging Face model is trained on its own "
                           "loss (labels from the inputs)")
        model, inputs, loss_fn = build_hf(hf, args.hf_override, meta, args.batch_size, args.seq_len, args.mode)
        if args.mode == "inference":
            model.eval()
        inputs, what = (inputs,), f"batch size {args.batch_size}, sequence length {args.seq_len}"
    else:
        model, inputs, loss_fn, what = _module_model(args)
    if args.now and not law.meta.get("reference_joules"):
        raise CLIError(f"--now: {args.law} was calibrated without the drift reference, so the machine's state cannot "
                       "be compared with the calibration's; calibrate again (on a CPU the reference is on by default)")
    opt = build_optimizer(args.optimizer, model) if args.mode == "training" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Prediction lists its warnings; printed below
        try:
            pred = law.predict(model, inputs if len(inputs) > 1 else inputs[0], mode=args.mode, loss_fn=loss_fn,
                               optimizer=opt, steps=args.steps, coverage=args.coverage)
        except (RuntimeError, ValueError, TypeError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CLIError(f"the model failed on inputs of {what}: {msg}") from None
    if args.now:
        pred = pred.rescaled(law.machine_state())
    if args.format == "csv":
        print(pred.per_layer.to_csv(index=False), end="")
    else:
        fp = law.fingerprints.get("profile") or {}
        dev = law.profile.device
        print(f"law: {args.law} (cost model of {dev.get('name', '?')}, {law.meta.get('threads', '?')} thread(s), "
              f"meter {law.meta.get('meter', '?')}, {fp.get('date', '?')})")
        print(pred)
        if args.steps > 1:
            print(f"per step: {duration(pred.seconds / args.steps)}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict the joules and seconds of training or inference steps of a model",
                       description="Count a model's steps on the meta device and predict the joules and seconds of "
                       "--steps steps with a cost model saved by torch-tos calibrate.")
    p.add_argument("model", nargs="?", help="module:callable building the model, e.g. "
                   "torchvision.models:resnet18 (or a Hugging Face config: --hf-config / --hf-model-type)")
    p.add_argument("--input-shape", action="append",
                   help="input tensor shape, e.g. 32,3,64,64 (repeat for several inputs)")
    p.add_argument("--law", metavar="LAW.json", help="the cost model's JSON file (required): torch-tos calibrate "
                   "--out law.json")
    p.add_argument("--mode", default="training", help="training (forward, loss, backward, optimizer step) or "
                   "inference (forward under no_grad)")
    p.add_argument("--steps", type=int, default=1, help="steps to predict")
    p.add_argument("--optimizer", default="sgd", help=f"optimizer of each training step: {', '.join(OPTIMIZERS)}")
    p.add_argument("--loss", default="sum", help="loss: sum (output.sum() surrogate) or cross_entropy")
    p.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help=f"dtype of the inputs, once for all or once per --input-shape: {', '.join(INPUT_DTYPES)} "
                   "(int64 for token ids; default float32)")
    p.add_argument("--coverage", type=float, default=0.9, help="coverage of the prediction interval")
    p.add_argument("--now", action="store_true", help="predict the joules at the machine's state now: reads the "
                   "calibration's drift reference and rescales by its cost now over its cost at calibration")
    p.add_argument("--format", default="table", choices=("table", "csv"), help="table, or csv of joules per layer")
    p.add_argument("--model-kwargs", default=None, help="JSON keyword arguments for the model factory")
    add_hf_arguments(p)
    p.set_defaults(func=_cmd_predict)
