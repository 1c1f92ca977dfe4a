"""Transistor operations: the paper's translator ``T(b, p)`` (Eq. 6, Alg. 2, Sec. II-B).

Circuit model (docs/conventions.md §5, from the paper and its references [18], [53]):

* n-bit adder ``ADDER(n) = (n-1)·FA + HA`` (ripple carry: n-1 full adders and one half adder);
* n-bit multiplier ``MULT(n) = M64·(n/64)²`` and divider ``DIVR(n) = D64·(n/64)²``, scaled
  quadratically from the 64-bit Booth-Wallace multiplier (M64 = 90,000 transistors) and SRT divider
  (D64 = 110,000);
* a float with mantissa m (hidden bit included) and exponent e: ``add = sub = ADDER(m)``;
  ``mul = XOR + MULT(m) + ADDER(e)`` (sign, mantissa product, exponent sum);
  ``div = XOR + DIVR(m) + ADDER(e)``; ``root = k·(div + add + mul)`` with
  ``k = max(1, ⌈log2(m / seed_bits)⌉)`` Newton-Raphson steps from a ``seed_bits``-bit seed.

All constants are configurable on :class:`TransistorTable`; the defaults reproduce docs/conventions.md §5 exactly.
Costs are kept as :class:`fractions.Fraction` (they are exact binary fractions) and only turned into
floats at the edge, so totals are exact before the final conversion.

Beyond the paper (documented extensions, docs/conventions.md §4): integer, boolean and quantized
(``quint8``, ``qint8``, ``qint32``) tensors are priced as an n-bit integer ALU (no exponent, no sign
XOR: ``add = ADDER(n)``, ``mul = MULT(n)``, ``div = DIVR(n)``), the 8-bit float formats use their own
mantissa/exponent widths, and complex tensors are priced in their real component format — the
engine has already turned each complex operation into the real operations it takes (a complex
multiply is 4 mul, 1 add, 1 sub; see :mod:`torch_tos.rules.complex`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch

from .bos import BO_NAMES, BOs

#: (mantissa bits with the hidden bit, exponent bits) of each floating-point format.
FLOAT_FORMATS: dict[torch.dtype, tuple[int, int]] = {
    torch.float16: (11, 5),
    torch.bfloat16: (8, 8),
    torch.float32: (24, 8),
    torch.float64: (53, 11),
}
for _name, _fmt in (("float8_e4m3fn", (4, 4)), ("float8_e5m2", (3, 5)),
                    ("float8_e4m3fnuz", (4, 4)), ("float8_e5m2fnuz", (3, 5))):
    if hasattr(torch, _name):
        FLOAT_FORMATS[getattr(torch, _name)] = _fmt

#: Bit width of each integer format (priced as an integer ALU, see module docstring).
INT_FORMATS: dict[torch.dtype, int] = {
    torch.bool: 1, torch.uint8: 8, torch.int8: 8, torch.int16: 16, torch.int32: 32, torch.int64: 64,
}
#: quantized formats: their integer storage width (an n-bit integer ALU, as the integer formats)
for _name, _bits in (("quint8", 8), ("qint8", 8), ("qint32", 32), ("quint4x2", 4), ("quint2x4", 2),
                     ("uint16", 16), ("uint32", 32), ("uint64", 64)):
    if hasattr(torch, _name):
        INT_FORMATS.setdefault(getattr(torch, _name), _bits)

COMPLEX_COMPONENT = {torch.complex64: torch.float32, torch.complex128: torch.float64,
                     torch.complex32: torch.float16}

_DTYPE_NAMES = {str(d).replace("torch.", ""): d for d in (*FLOAT_FORMATS, *INT_FORMATS, *COMPLEX_COMPONENT)}
_DTYPE_NAMES.update({"fp16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16,
                     "fp32": torch.float32, "float": torch.float32, "fp64": torch.float64,
                     "double": torch.float64})


def parse_dtype(value) -> torch.dtype:
    """Accept a ``torch.dtype`` or a name such as ``"float16"``, ``"fp16"``, ``"bf16"``."""
    if isinstance(value, torch.dtype):
        if value in FLOAT_FORMATS or value in INT_FORMATS or value in COMPLEX_COMPONENT:
            return value
    elif isinstance(value, str) and value.strip().lower().replace("torch.", "") in _DTYPE_NAMES:
        return _DTYPE_NAMES[value.strip().lower().replace("torch.", "")]
    raise ValueError(f"unknown dtype {value!r}; accepted: float16, bfloat16, float32, float64 "
                     f"(also fp16, bf16, fp32, fp64, int8/16/32/64, uint8, bool, quint8, qint8, qint32, "
                     f"complex64, complex128)")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class TransistorTable:
    """Transistor counts of the circuits behind each basic operation (docs/conventions.md §5).

    >>> t = TransistorTable()
    >>> [float(c) for c in t.costs(torch.float32)]
    [236.0, 236.0, 12736.25, 15548.75, 57042.0]
    """

    full_adder: int = 10          # 10T XOR-XNOR full adder cell (paper ref. [53])
    xor: int = 4                  # sign XOR of mul/div
    half_adder: int = 6           # last stage of the ripple-carry adder
    multiplier_64: int = 90_000   # 64-bit Booth-Wallace multiplier (paper ref. [18])
    divider_64: int = 110_000     # 64-bit SRT divider (paper ref. [18])
    nr_seed_bits: int = 8         # Newton-Raphson seed precision for root
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    # -- circuits -------------------------------------------------------------------------
    def adder(self, n: int) -> Fraction:
        return Fraction((n - 1) * self.full_adder + self.half_adder)

    def multiplier(self, n: int) -> Fraction:
        return Fraction(self.multiplier_64 * n * n, 64 * 64)

    def divider(self, n: int) -> Fraction:
        return Fraction(self.divider_64 * n * n, 64 * 64)

    def newton_raphson_steps(self, mantissa: int) -> int:
        return max(1, math.ceil(math.log2(mantissa / self.nr_seed_bits))) if mantissa > self.nr_seed_bits else 1

    # -- per-dtype costs ------------------------------------------------------------------
    def costs(self, dtype) -> tuple[Fraction, Fraction, Fraction, Fraction, Fraction]:
        """TOs of one add, sub, mul, div and root in ``dtype`` (exact fractions)."""
        dtype = parse_dtype(dtype)
        hit = self._cache.get(dtype)
        if hit is not None:
            return hit
        d = COMPLEX_COMPONENT.get(dtype, dtype)
        if d in FLOAT_FORMATS:
            m, e = FLOAT_FORMATS[d]
            add = self.adder(m)
            mul = self.xor + self.multiplier(m) + self.adder(e)
            div = self.xor + self.divider(m) + self.adder(e)
        else:
            m = INT_FORMATS[d]
            add = self.adder(m) if m > 1 else Fraction(self.half_adder)
            mul = self.multiplier(m)
            div = self.divider(m)
        root = self.newton_raphson_steps(m) * (div + add + mul)
        out = (add, add, mul, div, root)
        self._cache[dtype] = out
        return out

    def tos_exact(self, bos, dtype) -> Fraction:
        """``T(b, p)`` as an exact fraction."""
        c = self.costs(dtype)
        return sum((Fraction(int(n)) * k for n, k in zip(bos, c)), Fraction(0))

    def tos(self, bos, dtype) -> float:
        """``T(b, p)`` (paper Eq. 6): TOs of the basic operations ``bos`` in data type ``dtype``."""
        return float(self.tos_exact(bos, dtype))

    def as_dict(self) -> dict:
        """The constants, for report metadata."""
        d = asdict(self)
        d.pop("_cache", None)
        return d

    def per_op_table(self, dtypes=(torch.float16, torch.bfloat16, torch.float32, torch.float64)) -> dict:
        """``{dtype name: {add: TOs, ...}}`` — the table of docs/conventions.md §5."""
        return {dtype_name(d): dict(zip(BO_NAMES, (float(c) for c in self.costs(d)))) for d in dtypes}


DEFAULT_TABLE = TransistorTable()


def tos(bos: BOs, dtype=torch.float32, table: TransistorTable | None = None) -> float:
    """``T(b, p)``: transistor operations of ``bos`` executed in data type ``dtype``.

    >>> tos(BOs(add=1, sub=1, div=1, root=1), "float32")   # one FP32 sigmoid
    73062.75
    """
    return (table or DEFAULT_TABLE).tos(bos, dtype)
