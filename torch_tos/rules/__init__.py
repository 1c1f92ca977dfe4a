"""aten op → BOs rules, grouped by family. Importing this package registers them all."""

from .registry import RULES, ZERO_OPS, is_supported, lookup, register, register_zero  # noqa: F401
from . import memory, linalg, conv, elementwise, activations, reductions, norms, pooling, losses, optimizer, indexing, interpolate, attention, recurrent, embedding, quantized, spectral, detection, ctc  # noqa: F401,E402
