"""The device a cost model measures and predicts: ``cpu``, ``cuda`` or ``cuda:i``.

:func:`resolve_device` checks a device string and returns a :class:`Device`: its ``torch.device``,
a ``synchronize()`` that waits for queued kernels (a no-op on the CPU; ``torch.cuda.synchronize``
on the device on CUDA — every measurement window is synchronised at both edges, so queued work is
counted in the window that launched it), its ``name`` (the CPU model or the GPU's name) and the
default dtypes a calibration measures there (:data:`DEFAULT_DTYPES`). ``cuda`` is the backend
object, ``torch.cuda`` unless a test passes a fake with the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: The dtypes a calibration measures by default (``tf32`` is float32 matmuls in TF32 mode).
DEFAULT_DTYPES: dict[str, tuple[str, ...]] = {"cpu": ("float32", "float64", "bfloat16"),
                                              "cuda": ("float32", "float16", "bfloat16", "tf32")}
#: dtype names a profile may hold → the torch dtype its tensors use.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
                                  "bfloat16": torch.bfloat16, "tf32": torch.float32}


@dataclass
class Device:
    """A resolved device (module doc)."""

    type: str
    index: int | None
    name: str
    cuda: object = field(default=None, repr=False)

    @property
    def torch(self) -> torch.device:
        return torch.device(self.type if self.index is None else f"{self.type}:{self.index}")

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def synchronize(self) -> None:
        if self.type == "cuda":
            self.cuda.synchronize(self.index)

    @property
    def default_dtypes(self) -> tuple[str, ...]:
        return DEFAULT_DTYPES[self.type]

    def tf32(self, on: bool):
        """A context in which float32 matmuls and convolutions run in TF32 (``on``) or not."""
        return _TF32(on) if self.type == "cuda" else _Nothing()


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _TF32:
    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.on
        return self

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
        return False


def resolve_device(device="cpu", cuda=None) -> Device:
    """The :class:`Device` of ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
    ``torch.device``); a device that is not here is a one-line error naming what is."""
    from .fingerprint import cpu_model

    cuda = cuda if cuda is not None else torch.cuda
    text = str(device).strip() if device is not None else "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {text!r}; accepted: cpu, cuda, cuda:<index>") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise ValueError(f"unknown device {text!r}; accepted: cpu, cuda, cuda:<index>")
        return Device("cpu", None, cpu_model())
    if dev.type != "cuda":
        raise ValueError(f"device {text!r} is not supported; accepted: cpu, cuda, cuda:<index>")
    if not cuda.is_available():
        raise ValueError(f"device {text!r}: no CUDA device is available here (torch.cuda.is_available() is "
                         "False); calibrate the CPU with --device cpu")
    count = cuda.device_count()
    index = dev.index if dev.index is not None else cuda.current_device()
    if not 0 <= index < count:
        raise ValueError(f"device {text!r}: this machine has {count} CUDA device(s) (cuda:0 … cuda:{count - 1})")
    return Device("cuda", index, str(cuda.get_device_name(index)), cuda)


def check_dtypes(names, device: Device) -> tuple[str, ...]:
    """``names`` (a comma-separated string or a sequence) as known dtype names for ``device``."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = tuple(dict.fromkeys(names or device.default_dtypes))
    accepted = DTYPES if device.type == "cuda" else {k: v for k, v in DTYPES.items() if k != "tf32"}
    for n in names:
        if n not in accepted:
            raise ValueError(f"unknown dtype {n!r} for {device}; accepted: {', '.join(accepted)}")
    return names


__all__ = ["Device", "resolve_device", "check_dtypes", "DEFAULT_DTYPES", "DTYPES"]
