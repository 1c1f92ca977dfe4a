"""The inputs of ``torch-tos profile``: shapes, dtypes and the device, checked before anything is
allocated.

``--input-shape 1,3,224,224`` (repeatable) gives one tensor per shape. Floating-point inputs are
``torch.randn``; integer inputs (``--input-dtype int64``, e.g. token ids for ``nn.Embedding``) are
``torch.randint(low, high)`` with ``low = --input-low`` (default 0) and ``high = --input-high``
(default: the smallest ``num_embeddings`` of the model's ``nn.Embedding``/``nn.EmbeddingBag``
layers, or 2 when it has none); ``bool`` inputs are random ``True``/``False``. Before allocating,
the inputs' bytes are compared with the memory available on the device, so an impossible size is
one clear error instead of an allocator failure.
"""

from __future__ import annotations

import os

import torch

from ..validation import DEVICES_ACCEPTED
from .errors import CLIError

#: dtypes an input tensor may have (``--input-dtype``)
INPUT_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                "uint8", "bool")
_INT64_MAX = 2 ** 63 - 1


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` → a tuple of positive ints."""
    try:
        shape = tuple(int(p) for p in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise CLIError(f"malformed --input-shape {text!r}; expected positive integers separated by "
                       f"commas, e.g. 1,3,224,224")
    numel = 1
    for s in shape:
        numel *= s
    if numel > _INT64_MAX:
        raise CLIError(f"--input-shape {text} has {numel:.3g} elements, more than a tensor can hold "
                       f"(2**63 - 1); use a smaller shape")
    return shape


def parse_input_dtypes(texts: list[str] | None, n_inputs: int) -> list[torch.dtype]:
    """One dtype per input: ``--input-dtype`` given once applies to every input, else once per
    ``--input-shape``; default float32."""
    texts = texts or ["float32"]
    dtypes = []
    for text in texts:
        name = text.strip().lower().replace("torch.", "")
        dtype = getattr(torch, name, None) if name in INPUT_DTYPES else None
        if not isinstance(dtype, torch.dtype):
            raise CLIError(f"unknown --input-dtype {text!r}; accepted: {', '.join(INPUT_DTYPES)}")
        dtypes.append(dtype)
    if len(dtypes) == 1:
        return dtypes * n_inputs
    if len(dtypes) != n_inputs:
        raise CLIError(f"{len(dtypes)} --input-dtype values for {n_inputs} --input-shape values; "
                       f"give one (for every input) or one per input")
    return dtypes


def check_device(text: str | None) -> torch.device | None:
    """``--device``: a device this machine has (or ``meta``), else a one-line error."""
    if text is None:
        return None
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise CLIError(f"unknown --device {text!r}; accepted: {DEVICES_ACCEPTED}") from None
    here = "use --device cpu, or --device meta to count without computing"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {text}: no CUDA GPU is available on this machine "
                           f"(torch.cuda.is_available() is False); {here}")
        n = torch.cuda.device_count()
        if device.index is not None and device.index >= n:
            raise CLIError(f"--device {text}: this machine has {n} CUDA device(s), "
                           f"cuda:0 to cuda:{n - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CLIError(f"--device {text}: MPS is not available on this machine; {here}")
    elif device.type not in ("cpu", "meta"):
        try:
            torch.empty(0, device=device)
        except Exception as e:  # noqa: BLE001 - any backend failure means "not usable here"
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CLIError(f"--device {text} is not usable on this machine ({msg}); {here}") from None
    return device


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when unknown: no check is made then)."""
    if device.type == "cuda":
        try:
            return torch.cuda.mem_get_info(device)[0]
        except Exception:  # noqa: BLE001
            return None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover - the loop always returns


def check_memory(shapes, dtypes, device: torch.device) -> None:
    """A one-line error when the inputs alone do not fit in the device's free memory."""
    need = 0
    for shape, dtype in zip(shapes, dtypes):
        numel = 1
        for s in shape:
            numel *= s
        need += numel * (torch.finfo(dtype).bits if dtype.is_floating_point else
                         (8 if dtype == torch.bool else torch.iinfo(dtype).bits)) // 8
    free = available_bytes(device)
    if free is not None and need > free:
        shown = " and ".join(",".join(map(str, s)) for s in shapes)
        raise CLIError(f"--input-shape {shown} needs {_size(need)} for the inputs alone, but only "
                       f"{_size(free)} is free on {device}; use a smaller shape, or --device meta to "
                       f"count without allocating")


def default_high(model: torch.nn.Module) -> int:
    """The exclusive upper bound of integer inputs when ``--input-high`` is not given."""
    sizes = [m.num_embeddings for m in model.modules()
             if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))]
    return min(sizes) if sizes else 2


def make_inputs(shapes, dtypes, device: torch.device, low: int = 0, high: int | None = None,
                model: torch.nn.Module | None = None) -> tuple[torch.Tensor, ...]:
    """Random inputs of the given shapes and dtypes on ``device`` (see the module docstring)."""
    check_memory(shapes, dtypes, device)
    if any(not d.is_floating_point and d != torch.bool for d in dtypes):
        if high is None:
            high = default_high(model) if model is not None else 2
        if high <= low:
            raise CLIError(f"--input-high ({high}) must be greater than --input-low ({low})")
    out = []
    try:
        for shape, dtype in zip(shapes, dtypes):
            if dtype.is_floating_point:
                out.append(torch.randn(shape, dtype=dtype, device=device))
            elif dtype == torch.bool:
                out.append(torch.randint(0, 2, shape, device=device).bool())
            else:
                info = torch.iinfo(dtype)
                if low < info.min or high - 1 > info.max:
                    raise CLIError(f"--input-low {low} / --input-high {high} do not fit {dtype}; "
                                   f"accepted: {info.min} to {info.max + 1}")
                out.append(torch.randint(low, high, shape, dtype=dtype, device=device))
    except (RuntimeError, MemoryError) as e:  # the allocator's own refusal, after the estimate
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"cannot allocate the inputs on {device} ({msg}); use a smaller --input-shape, "
                       f"or --device meta to count without allocating") from None
    return tuple(out)
