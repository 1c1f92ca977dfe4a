"""``torch-tos profile MODULE:CALLABLE --input-shape 1,3,224,224 [--input-dtype int64] [--mode
training] [--dtype float16] [--device meta] [--format table|csv|json|html] [--out FILE] [--depth N]
[--full] [--exact] [--all-rows] [--plot FILE]``, or ``torch-tos profile --hf-config config.json |
--hf-model-type llama [--hf-override k=v,...] [--batch-size B] [--seq-len T] ...``: count one step of a model
(docs/cli.md lists every option). Inputs are built by :mod:`.inputs`, models by :mod:`.models`
and :mod:`.hf`, outputs checked and written by :mod:`.outputs`.

Every error the user can cause — a bad option, a device this machine lacks, inputs that cannot fit
in memory, an exception raised by the model itself — is one line on stderr and exit code 2; an
exception from the model names its type, the layer that was running and the source line.
"""

from __future__ import annotations

import sys

from .errors import CLIError, describe_failure, first_line, raised_in_torch_tos
from .hf import add_hf_arguments
from .inputs import INPUT_DTYPES, check_device, make_inputs, parse_input_dtypes, parse_shape
from .models import load_model
from .outputs import check_output, check_plot, save_plot, write_text

__all__ = ["load_model", "parse_shape", "register", "run_guarded"]  # load_model, parse_shape: used by predict

OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "adamw")
FORMATS = ("table", "csv", "json", "html")

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
    if name in ("sgd", "sgd_momentum"):
        return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9 if name == "sgd_momentum" else 0.0)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](model.parameters())


def _model_and_inputs(args, device):
    """``(model, inputs, loss_fn, target, shapes shown in errors)`` from MODULE:CALLABLE and
    --input-shape, or from a Hugging Face config."""
    import torch

    from .hf import hf_source

    hf = hf_source(args)
    if hf:
        from .hf import build_hf

        model, inputs, loss_fn = build_hf(hf, args.hf_override, device, args.batch_size, args.seq_len, args.mode)
        if args.eval:
            model.eval()
        return model, inputs, loss_fn, None, f"batch size {args.batch_size}, sequence length {args.seq_len}"
    if not args.model:
        raise CLIError("no model given: a MODULE:CALLABLE path (e.g. torchvision.models:resnet18 "
                       "--input-shape 1,3,224,224), --hf-config config.json or --hf-model-type llama")
    if not args.input_shape:
        raise CLIError("--input-shape is required with a MODULE:CALLABLE model, e.g. --input-shape 1,3,224,224")
    shapes = [parse_shape(s) for s in args.input_shape]
    input_dtypes = parse_input_dtypes(args.input_dtype, len(shapes))
    model = load_model(args.model, args.model_kwargs)
    if args.eval:
        model.eval()
    on = device if device is not None else torch.device("cpu")
    inputs = make_inputs(shapes, input_dtypes, on, low=args.input_low, high=args.input_high, model=model)
    loss_fn = target = None
    if args.mode != "inference" and args.loss == "cross_entropy":
        loss_fn = torch.nn.CrossEntropyLoss()
        target = torch.zeros(shapes[0][0], dtype=torch.long, device=on)  # every sample of class 0
    inputs = inputs if len(inputs) > 1 else inputs[0]
    return model, inputs, loss_fn, target, "inputs of shape " + ", ".join(map(str, shapes))


def _check_views(args):
    if args.depth is not None and args.depth < 0:
        raise CLIError(f"--depth must be 0 (the whole model) or more, got {args.depth}")
    if args.top < 1:
        raise CLIError(f"--top must be a positive number of layers, got {args.top}")
    out = check_output(args.out, "--out") if args.out else None
    plot = check_plot(args.plot) if args.plot else None
    if out is not None and plot is not None and out.resolve() == plot.resolve():
        raise CLIError(f"--out and --plot are the same file {args.out!r}; give two files")
    return out, plot


#: The table's footer names these flags (torch_tos.display.SPELLING).
CLI_SPELLING = {"every": "--depth 0", "full": "--full", "exact": "--exact", "all_rows": "--all-rows"}


def _cmd_profile(args) -> int:
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
    device = check_device(args.device)
    out, plot = _check_views(args)
    model, inputs, loss_fn, target, shown = _model_and_inputs(args, device)
    optimizer = _optimizer(args.optimizer, model)
    report = run_guarded(lambda: profile(model, inputs, mode=args.mode, dtype=dtype, device=device,
                                         loss_fn=loss_fn, target=target, optimizer=optimizer),
                         f"the model failed on {shown}")
    depth = args.depth or None  # 0: every layer
    shown = "auto" if args.depth is None else depth  # the views people read fold by default
    if args.format == "json":
        text = report.to_json()
    elif args.format == "csv":
        text = report.to_dataframe(depth).to_csv(index=False)
    elif args.format == "html":
        text = run_guarded(lambda: report.to_html(depth=shown, all_rows=args.all_rows, top=args.top,
                                                  exact=args.exact), "the HTML report failed")
    else:
        from ..display import render_table

        text = render_table(report, shown, full=args.full, exact=args.exact, all_rows=args.all_rows,
                            spelling=CLI_SPELLING)
    write_text(text, out)
    if plot is not None:
        save_plot(report, plot, depth=shown, top=args.top)
    if out is not None or plot is not None:
        print("written: " + ", ".join(str(p) for p in (out, plot) if p is not None), file=sys.stderr)
    return 0


def register(sub) -> None:
    p = sub.add_parser("profile", help="count BOs, TOs and FLOPs of one step of a model",
                       description="Count the BOs, TOs and FLOPs of one inference, validation or "
                       "training step of a model built by MODULE:CALLABLE on random inputs, or of a "
                       "Hugging Face model built from its config (no weights, no network).")
    p.add_argument("model", nargs="?", help="module:callable building the model (a class, a factory or an "
                   "nn.Module), e.g. torchvision.models:resnet18, or mymodel:build for ./mymodel.py")
    p.add_argument("--input-shape", action="append", metavar="SHAPE",
                   help="input tensor shape, e.g. 1,3,224,224 (repeat for several inputs)")
    p.add_argument("--input-dtype", action="append", metavar="DTYPE",
                   help=f"dtype of the inputs, once for all or once per --input-shape: {', '.join(INPUT_DTYPES)}; "
                   "floating-point inputs are randn, integer ones randint(--input-low, --input-high) "
                   "(default float32)")
    p.add_argument("--input-low", type=int, default=0, metavar="N", help="smallest value of integer inputs")
    p.add_argument("--input-high", type=int, default=None, metavar="N",
                   help="exclusive upper bound of integer inputs (default: the smallest num_embeddings "
                   "of the model's Embedding layers, 2 without any)")
    add_hf_arguments(p)
    p.add_argument("--mode", default="inference", metavar="MODE",
                   help="inference (forward), validation (+ loss) or training (+ backward, + one optimizer "
                   "step with --optimizer)")
    p.add_argument("--dtype", default=None, help="price every op as this dtype: float16, bfloat16, float32, "
                   "float64 (default: each op in its own dtype)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps, or meta (count without computing) "
                   "(default: cpu for a MODULE:CALLABLE model, meta for a Hugging Face config)")
    p.add_argument("--loss", default="sum", choices=("sum", "cross_entropy"),
                   help="loss for validation/training of a MODULE:CALLABLE model: the output.sum() surrogate, "
                   "or cross-entropy against class 0 (Hugging Face models use their own loss on labels)")
    p.add_argument("--optimizer", default=None, metavar="NAME", help=f"add one optimizer step: {', '.join(OPTIMIZERS)} "
                   "(default: none)")
    p.add_argument("--model-kwargs", default=None, metavar="JSON", help="JSON keyword arguments for the model "
                   "factory, e.g. '{\"num_classes\": 10}' (default: none)")
    p.add_argument("--eval", action="store_true", help="put the model in eval mode first (dropout off, "
                   "batch norm with running statistics); a new model is in train mode")
    out = p.add_argument_group("output")
    out.add_argument("--format", default="table", choices=FORMATS, help="table (text), csv, json, or html (one "
                     "self-contained page: totals, the table and the figure)")
    out.add_argument("--out", metavar="FILE", help="write the output to FILE (default: standard output)")
    out.add_argument("--depth", type=int, default=None, metavar="N",
                     help="fold submodules deeper than N into their ancestor (1: top-level modules only; 0: "
                     "every layer) in the table, csv, html and plot (default: a depth that keeps the table, "
                     "html and figure short; csv: every layer)")
    out.add_argument("--full", action="store_true", help="table: one row per layer, phase and dtype")
    out.add_argument("--exact", action="store_true", help="table and html: exact counts instead of SI prefixes")
    out.add_argument("--all-rows", action="store_true", help="also list the rows the table folds (zero-cost "
                     "layers, integer bookkeeping rows, the layers beyond the row limit)")
    out.add_argument("--plot", metavar="FILE", help="save the figure of where the TOs go (per layer, by BO "
                     "kind and by phase) to FILE: .png, .svg, .pdf, ... (needs matplotlib)")
    out.add_argument("--top", type=int, default=15, metavar="N", help="layers shown in the figure; the "
                     "rest are folded into one bar")
    p.set_defaults(func=_cmd_profile)
