"""``torch-tos profile MODULE:CALLABLE --input-shape 1,3,224,224 [--mode training] [--dtype
float16] [--device meta] [--format table|csv|json]``: count one step of a model.

Every error the user can cause — a bad option, a device this machine lacks, inputs that cannot fit
in memory, an exception raised by the model itself — is one line on stderr and exit code 2; an
exception from the model names its type, the layer that was running and the source line.
"""

from __future__ import annotations

from .errors import CLIError, describe_failure, first_line, raised_in_torch_tos
from .inputs import INPUT_DTYPES, check_device, make_inputs, parse_input_dtypes, parse_shape
from .models import load_model

OPTIMIZERS = ("sgd", "adam", "adamw")
FORMATS = ("table", "csv", "json")

_BATCH_NORM_HINT = (" (batch norm in training mode needs a batch of at least 2: use e.g. "
                    "--input-shape 2,..., or --eval to use its running statistics)")
_MEMORY_HINT = " (out of memory: use a smaller --input-shape, or --device meta to count without computing)"


def _hint(exc: BaseException, text: str) -> str:
    import torch

    if "more than 1 value per channel" in text:
        return _BATCH_NORM_HINT
    if "argument #1 'indices'" in text:
        return " (embedding inputs are integer indices: add --input-dtype int64)"
    if isinstance(exc, IndexError) and "(Embedding" in text:
        return " (integer inputs must be below the Embedding's num_embeddings: lower --input-high)"
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text \
            or "out of memory" in text.lower():
        return _MEMORY_HINT
    return ""


def run_guarded(fn, what: str):
    """``fn()``, with any exception it raises turned into a one-line :class:`CLIError`:
    torch_tos's own input checks keep their message; anything else names the exception and where
    it was raised (``what`` says what was running)."""
    try:
        return fn()
    except (CLIError, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - every exception of the user's model is reported
        if isinstance(e, (ValueError, TypeError)) and raised_in_torch_tos(e):
            raise CLIError(first_line(e)) from None
        text = describe_failure(e)
        raise CLIError(f"{what}: {text}{_hint(e, text)}") from None


def _optimizer(name, model):
    import torch

    if name is None:
        return None
    if name not in OPTIMIZERS:
        raise CLIError(f"unknown --optimizer {name!r}; accepted: {', '.join(OPTIMIZERS)}")
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.01)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](model.parameters())


def _cmd_profile(args) -> int:
    import torch

    from ..api import profile
    from ..tables import parse_dtype
    from ..validation import MODES

    if args.mode not in MODES:
        raise CLIError(f"unknown --mode {args.mode!r}; accepted: {', '.join(MODES)}")
    dtype = None
    if args.dtype:
        try:
            dtype = parse_dtype(args.dtype)
        except ValueError as e:
            raise CLIError(f"--dtype: {e}") from None
    shapes = [parse_shape(s) for s in args.input_shape]
    input_dtypes = parse_input_dtypes(args.input_dtype, len(shapes))
    device = check_device(args.device)
    model = load_model(args.model, args.model_kwargs)
    if args.eval:
        model.eval()
    on = device if device is not None else torch.device("cpu")
    inputs = make_inputs(shapes, input_dtypes, on, low=args.input_low, high=args.input_high, model=model)
    loss_fn = target = None
    if args.mode != "inference" and args.loss == "cross_entropy":
        loss_fn = torch.nn.CrossEntropyLoss()
        target = torch.zeros(shapes[0][0], dtype=torch.long, device=on)  # every sample of class 0
    optimizer = _optimizer(args.optimizer, model)
    shown = ", ".join(map(str, shapes))
    report = run_guarded(lambda: profile(model, inputs if len(inputs) > 1 else inputs[0], mode=args.mode,
                                         dtype=dtype, device=device, loss_fn=loss_fn, target=target,
                                         optimizer=optimizer),
                         f"the model failed on inputs of shape {shown}")
    if args.format == "json":
        print(report.to_json())
    elif args.format == "csv":
        print(report.to_dataframe().to_csv(index=False), end="")
    else:
        print(report)
    return 0


def register(sub) -> None:
    p = sub.add_parser("profile", help="count BOs, TOs and FLOPs of one step of a model",
                       description="Count the BOs, TOs and FLOPs of one inference, validation or "
                       "training step of a model built by MODULE:CALLABLE on random inputs.")
    p.add_argument("model", help="module:callable building the model (a class, a factory or an nn.Module), "
                   "e.g. torchvision.models:resnet18, or mymodel:build for ./mymodel.py")
    p.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                   help="input tensor shape, e.g. 1,3,224,224 (repeat for several inputs)")
    p.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help=f"dtype of the inputs, once for all or once per --input-shape: {', '.join(INPUT_DTYPES)}; "
                   "floating-point inputs are randn, integer ones randint(--input-low, --input-high) "
                   "(default float32)")
    p.add_argument("--input-low", type=int, default=0, metavar="N", help="smallest value of integer inputs")
    p.add_argument("--input-high", type=int, default=None, metavar="N",
                   help="exclusive upper bound of integer inputs (default: the smallest num_embeddings "
                   "of the model's Embedding layers, 2 without any)")
    p.add_argument("--mode", default="inference", metavar="MODE",
                   help="inference (forward), validation (+ loss) or training (+ backward, + one optimizer "
                   "step with --optimizer)")
    p.add_argument("--dtype", default=None, help="price every op as this dtype: float16, bfloat16, float32, "
                   "float64 (default: each op in its own dtype)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps, or meta (count without computing) "
                   "(default: where the model's parameters are, cpu for a new model)")
    p.add_argument("--format", default="table", choices=FORMATS, help="output format")
    p.add_argument("--loss", default="sum", choices=("sum", "cross_entropy"),
                   help="loss for validation/training: the output.sum() surrogate, or cross-entropy "
                   "against class 0")
    p.add_argument("--optimizer", default=None, metavar="NAME", help=f"add one optimizer step: {', '.join(OPTIMIZERS)} "
                   "(default: none)")
    p.add_argument("--model-kwargs", default=None, metavar="JSON", help="JSON keyword arguments for the model factory, "
                   "e.g. '{\"num_classes\": 10}' (default: none)")
    p.add_argument("--eval", action="store_true", help="put the model in eval mode first (dropout off, "
                   "batch norm with running statistics); a new model is in train mode")
    p.set_defaults(func=_cmd_profile)
