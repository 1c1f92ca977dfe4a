"""``torch-tos profile MODULE:CALLABLE --input-shape 1,3,224,224 [--mode training] [--dtype
float16] [--device meta] [--format table|csv|json]``: count one step of a model."""

from __future__ import annotations

import importlib

from .errors import CLIError


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` → a tuple of positive ints."""
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise CLIError(f"malformed --input-shape {text!r}; expected positive integers separated by "
                       f"commas, e.g. 1,3,224,224")
    return shape


def load_model(path: str, kwargs_text: str | None = None):
    """``package.module:callable`` → the ``nn.Module`` it builds (or is)."""
    import torch

    if ":" not in path:
        raise CLIError(f"model path {path!r} must be 'module:callable', e.g. torchvision.models:resnet18")
    mod_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's path
        raise CLIError(f"cannot import module {mod_name!r} of model path {path!r}: {e}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {mod_name!r} has no attribute {attr!r}; expected a model class or "
                           f"factory such as torchvision.models:resnet18")
        obj = getattr(obj, part)
    kwargs = {}
    if kwargs_text:
        import json

        try:
            kwargs = json.loads(kwargs_text)
        except json.JSONDecodeError as e:
            raise CLIError(f"--model-kwargs must be a JSON object, e.g. '{{\"num_classes\": 10}}': {e}") from None
    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise CLIError(f"{path!r} is neither an nn.Module nor a callable that builds one")
    try:
        model = obj(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise CLIError(f"building {path!r} failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise CLIError(f"{path!r} returned {type(model).__name__}, not an nn.Module")
    return model


def _cmd_profile(args) -> int:
    import torch

    from ..api import profile
    from ..validation import MODES
    from ..tables import parse_dtype

    if args.mode not in MODES:
        raise CLIError(f"unknown --mode {args.mode!r}; accepted: {', '.join(MODES)}")
    dtype = None
    if args.dtype:
        try:
            dtype = parse_dtype(args.dtype)
        except ValueError as e:
            raise CLIError(f"--dtype: {e}") from None
    shapes = [parse_shape(s) for s in args.input_shape]
    try:
        device = torch.device(args.device) if args.device else None
    except (RuntimeError, TypeError):
        raise CLIError(f"unknown --device {args.device!r}; accepted: cpu, cuda, cuda:N, meta") from None
    model = load_model(args.model, args.model_kwargs)
    if args.eval:
        model.eval()
    on = device if device is not None else torch.device("cpu")
    inputs = tuple(torch.randn(s, device=on) for s in shapes)
    loss_fn = target = optimizer = None
    if args.mode != "inference" and args.loss == "cross_entropy":
        with torch.no_grad():
            out = model.to(on)(*inputs) if on.type == "meta" else None
        loss_fn = torch.nn.CrossEntropyLoss()
        n_classes = out.shape[-1] if out is not None else 1000
        target = torch.zeros(shapes[0][0], dtype=torch.long, device=on) % n_classes
    if args.optimizer:
        opts = {"sgd": lambda p: torch.optim.SGD(p, lr=0.01), "adam": lambda p: torch.optim.Adam(p),
                "adamw": lambda p: torch.optim.AdamW(p)}
        if args.optimizer not in opts:
            raise CLIError(f"unknown --optimizer {args.optimizer!r}; accepted: {', '.join(opts)}")
        optimizer = opts[args.optimizer](model.parameters())
    try:
        report = profile(model, inputs if len(inputs) > 1 else inputs[0], mode=args.mode, dtype=dtype,
                         device=device, loss_fn=loss_fn, target=target, optimizer=optimizer)
    except (ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ""
        if "more than 1 value per channel" in msg:
            hint = " (batch norm in training mode needs a batch of at least 2: use e.g. --input-shape 2,...)"
        raise CLIError(f"the model failed on inputs of shape {', '.join(map(str, shapes))}: {msg}{hint}") from None
    if args.format == "json":
        print(report.to_json())
    elif args.format == "csv":
        print(report.to_dataframe().to_csv(index=False), end="")
    else:
        print(report)
    return 0


def register(sub) -> None:
    p = sub.add_parser("profile", help="count BOs, TOs and FLOPs of one step of a model")
    p.add_argument("model", help="module:callable building the model, e.g. torchvision.models:resnet18")
    p.add_argument("--input-shape", action="append", required=True,
                   help="input tensor shape, e.g. 1,3,224,224 (repeat for several inputs)")
    p.add_argument("--mode", default="inference", help="inference | validation | training")
    p.add_argument("--dtype", default=None, help="price every op as this dtype: float16, bfloat16, float32, float64")
    p.add_argument("--device", default=None, help="cpu, cuda, or meta (count without computing)")
    p.add_argument("--format", default="table", choices=("table", "csv", "json"))
    p.add_argument("--loss", default="sum", choices=("sum", "cross_entropy"),
                   help="loss for validation/training: the output.sum() surrogate or cross-entropy")
    p.add_argument("--optimizer", default=None, help="add one optimizer step: sgd, adam, adamw")
    p.add_argument("--model-kwargs", default=None, help="JSON keyword arguments for the model factory")
    p.add_argument("--eval", action="store_true", help="put the model in eval mode first")
    p.set_defaults(func=_cmd_profile)
