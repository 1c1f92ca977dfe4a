"""Complex arithmetic: the real operations behind an op on complex tensors.

A rule counts an op's arithmetic element by element as if the elements were real; for an op that
computes in a complex format (complex32/64/128, or with a complex output) the engine turns each
counted operation into the real operations it takes on (re, im) pairs, priced in the component
format (complex64 → float32; docs/conventions.md §4). With z = a + bi, w = c + di:

* add / sub: (a ± c) + (b ± d)i → 2 add / 2 sub (with a real operand: 1);
* mul: (ac − bd) + (ad + bc)i → 4 mul, 1 sub, 1 add (a complex × real operand: 2 mul);
* div: ((ac + bd) + (bc − ad)i) / (c² + d²) → 6 mul, 2 add, 1 sub, 2 div (complex ÷ real: 2 div);
* root (exp, log, sqrt, tanh's exponential …): **approximate**, exp's form e^a(cos b + i sin b)
  → 3 root, 2 mul;
* ``abs`` |z| = √(a² + b²) → 2 mul, 1 add, 1 root per element (not a compare);
* ``angle`` is priced by its own rule (atan2), complex-aware already.

So a complex matmul with inner size K costs, per output, 4K mul, K sub and K + 2(K − 1) add, and
a complex FFT is priced from its butterflies (see :mod:`.spectral`), not through this map.
"""

from __future__ import annotations

import torch

from ..bos import BOs

COMPLEX_DTYPES = frozenset({torch.complex32, torch.complex64, torch.complex128})

#: real BOs of one complex add, sub, mul, div, root
ADD, SUB = BOs(add=2), BOs(sub=2)
MUL = BOs(add=1, sub=1, mul=4)
DIV = BOs(add=2, sub=1, mul=6, div=2)
ROOT = BOs(mul=2, root=3)
_MAP = (ADD, SUB, MUL, DIV, ROOT)

#: ops whose rules already count real operations on complex inputs
COMPLEX_AWARE = {"aten.angle", "aten._fft_c2c", "aten._fft_r2c", "aten._fft_c2r",
                 "aten.view_as_real", "aten.view_as_complex", "aten.real", "aten.imag"}


_BINARY = frozenset({"aten.add", "aten.sub", "aten.mul", "aten.div"})


def _is_complex(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_complex()


def complex_bos(name: str, bos, args) -> BOs:
    """The real BOs of an op (``"aten.mul"``) whose rule counted ``bos`` on complex elements."""
    if name in COMPLEX_AWARE:
        return BOs(*bos)
    add, sub, mul, div, root = bos
    if name == "aten.abs":             # |z| = sqrt(a² + b²): the rule counted 1 compare each
        return BOs(add=sub, mul=2 * sub, root=sub)
    if name in _BINARY and len(args) >= 2 and not (_is_complex(args[0]) and _is_complex(args[1])):
        # complex with a real operand (tensor or number): ± touches the real part only, × and ÷
        # scale both components
        return BOs(add=add, sub=sub, mul=2 * mul, div=2 * div) + ROOT * root
    return ADD * add + SUB * sub + MUL * mul + DIV * div + ROOT * root
