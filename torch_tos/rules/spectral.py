"""Spectral ops: the FFT kernels (``_fft_c2c``, ``_fft_r2c``, ``_fft_c2r``, behind every
``torch.fft`` function and ``torch.stft``) and ``angle``.

**FFT op-count convention** (approximate except for the radix-2 lengths it is exact for): a complex
transform of length N is priced as radix-2 Cooley–Tukey, L = ⌈log2 N⌉ stages of N/2 butterflies;
a butterfly is one complex multiply by the twiddle (4 mul, 1 add, 1 sub) and one complex add and
one complex sub (2 add, 2 sub), so per transform **mul = 2NL, add = ⌈3NL/2⌉, sub = ⌊3NL/2⌋** —
the classic 5N·log2 N real operations. PocketFFT (CPU) and cuFFT use mixed radices and Bluestein's
algorithm for other lengths; their exact counts depend on N's factors, so those lengths are
priced as if padded to the next power of two's stage count. A transform over several dims is one
transform per line along each dim (numel/N_d of them). A **real** transform (``r2c``: real input,
one-sided output; ``c2r``: its inverse) of length N is priced as half the complex one over that
dim (a real sequence of N packs into N/2 complex points; the split/merge pass is not counted), the
other dims as complex transforms of the one-sided half spectrum. Normalisation (``norm="ortho"``
or the 1/N side) scales every output: 2 mul per complex output, 1 per real output.

``angle``: real x → x < 0 ? π : 0 (1 compare); complex → atan2(im, re): 1 div, 1 root, 2 compares
for the quadrant (**approximate**).
"""

from __future__ import annotations

from math import ceil, log2

import torch

from ..bos import BOs
from .registry import numel, register


def _stages(n: int) -> int:
    return ceil(log2(n)) if n > 1 else 0


def complex_fft(n: int, transforms: int) -> BOs:
    """``transforms`` complex transforms of length ``n`` (see the module docstring)."""
    nl = n * _stages(n)
    return BOs(add=-(-3 * nl // 2), sub=3 * nl // 2, mul=2 * nl) * transforms


def real_fft(n: int, transforms: int) -> BOs:
    """``transforms`` real (r2c or c2r) transforms of length ``n``: half a complex one."""
    nl = n * _stages(n)
    return BOs(add=-(-3 * nl // 4), sub=3 * nl // 4, mul=nl) * transforms


def _dims(t: torch.Tensor, dim) -> list[int]:
    return [d % t.dim() for d in dim]


@register("_fft_c2c")
def fft_c2c(out, x, dim, normalization, forward, **kwargs) -> BOs:
    """Complex FFT over ``dim``: per transform of length N (L = ⌈log2 N⌉ stages) mul 2NL,
    add ⌈3NL/2⌉, sub ⌊3NL/2⌋ (radix-2 butterflies; see the module docstring), + 2 mul per output
    with normalisation."""
    total, n = BOs(), numel(x)
    for d in _dims(x, dim):
        N = int(x.shape[d])
        total += complex_fft(N, n // max(N, 1))
    return total + (BOs(mul=2 * numel(out)) if normalization else BOs())


@register("_fft_r2c")
def fft_r2c(out, x, dim, normalization, onesided, **kwargs) -> BOs:
    """Real-to-complex FFT: the last dim of ``dim`` as a real transform (half a complex one), the
    others as complex transforms of the one-sided spectrum; + 2 mul per output with
    normalisation."""
    dims = _dims(x, dim)
    last, N = dims[-1], int(x.shape[dims[-1]])
    total = real_fft(N, numel(x) // max(N, 1))
    half = numel(x) // max(N, 1) * (N // 2 + 1)     # elements of the one-sided spectrum
    for d in dims[:-1]:
        M = int(x.shape[d])
        total += complex_fft(M, half // max(M, 1))
    return total + (BOs(mul=2 * numel(out)) if normalization else BOs())


@register("_fft_c2r")
def fft_c2r(out, x, dim, normalization, last_dim_size, **kwargs) -> BOs:
    """Complex-to-real (inverse) FFT: complex transforms over all dims but the last of ``dim`` on
    the one-sided input, then a real transform of length ``last_dim_size``; + 1 mul per real
    output with normalisation."""
    dims = _dims(x, dim)
    total, n = BOs(), numel(x)
    for d in dims[:-1]:
        M = int(x.shape[d])
        total += complex_fft(M, n // max(M, 1))
    N = int(last_dim_size)
    total += real_fft(N, numel(out) // max(N, 1))
    return total + (BOs(mul=numel(out)) if normalization else BOs())


@register("angle")
def angle(out, x, **kwargs) -> BOs:
    """Real input: 1 compare per element (x < 0 → π); complex: atan2(im, re) — 1 div, 1 root and
    2 quadrant compares per element (approximate)."""
    n = numel(out)
    if isinstance(x, torch.Tensor) and x.is_complex():
        return BOs(sub=2 * n, div=n, root=n)
    return BOs(sub=n)
