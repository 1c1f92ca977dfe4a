"""Resampling: ``F.interpolate`` (``upsample_*`` kernels, forward and backward), antialiased
resizing, ``grid_sample`` and ``affine_grid``.

Notation: d interpolated dims, output sizes O_k, input sizes I_k, P = N·C planes, E = numel(output).

**nearest / nearest-exact** (``upsample_nearest{1,2,3}d``, ``_upsample_nearest_exact{1,2,3}d``):
a gather — each output copies one input; the source index ⌊i·s⌋ (⌊(i+½)·s⌋) is address
arithmetic, like every indexing op: 0 BOs. Backward: each output gradient is added into its source
(``grad_input[src] += g``): numel(grad_output) adds.

**linear family** (``upsample_linear1d``, ``upsample_bilinear2d``, ``upsample_trilinear3d``): the
kernel interpolates dim by dim, ``t0·w0 + t1·w1`` at every level of the recursion, so each output
costs 2^(d+1) − 2 mul and 2^d − 1 add (bilinear: 6 mul, 3 add; 1-d: 2 mul, 1 add; 3-d: 14 mul,
7 add). Weights, once per output coordinate of every dim whose size changes (the kernels
precompute them; for O_k = I_k they are the constants 1, 0): source index s·(i+½) − ½ and its clamp
at 0 (1 add, 1 mul, 2 sub) — with ``align_corners`` just s·i (1 mul) — then λ₁ = src − ⌊src⌋ clamped
to [0, 1] (3 sub; ``guard_index_and_lambda``) and λ₀ = 1 − λ₁ (1 sub): W_lin = [1, 6, 1, 0, 0]
(align_corners: [0, 4, 1, 0, 0]).
Backward: every output gradient is spread onto its 2^d taps, ``grad_in[tap] += λ…λ·g``: per
output gradient d·2^d mul and 2^d add (bilinear: 8 mul, 4 add), plus the same weights. (The
backward kernels recompute the weights inside their loops; that repetition is not counted.)

**bicubic** (``upsample_bicubic2d``): 4 taps per dim, interpolated dim by dim: 4 rows of 4 mul +
3 add, then 4 mul + 3 add → 20 mul, 15 add per output. Weights per output coordinate of each dim
(always computed): source index (1 add, 1 mul, 1 sub; ``align_corners``: 1 mul), t = src − ⌊src⌋
clamped (3 sub), the four Keys coefficients with A = −0.75: t+1, 1−t, (1−t)+1 (2 add, 1 sub), two
``((A+2)x − (A+3))x·x + 1`` (3 mul, 1 sub, 1 add each) and two ``((Ax − 5A)x + 8A)x − 4A`` (3 mul,
2 sub, 1 add each) → W_cub = [7, 11, 13, 0, 0] (align_corners: [6, 10, 13, 0, 0]). Backward: each
output gradient goes to 16 taps as ``g·wy·wx`` (2 mul, 1 add each): 32 mul, 16 add per output
gradient, plus the weights.

**antialias** (``_upsample_{bilinear,bicubic}2d_aa``): separable passes, width first, then height,
each only when that size changes; output i of a pass along a dim reads the taps
[xmin, xmin + xsize) of the kernel's support window (support = (2 or 4)/2 · max(scale, 1), centre
s·(i+½); xmin/xsize exactly as the kernel computes them, in double precision): per output of the
pass xsize mul and xsize − 1 add. Backward: per output gradient ysize·xsize taps of ``wx·wy·g``
(2 mul, 1 add). The filter weights are **approximate**: per output coordinate [3, 1, 1, 0, 0]
(centre and window bounds), per tap [2, 4, 1, 1, 0] (linear filter: offset, |·|, compare, 1−x,
running sum, normalising division) or [3, 5, 4, 1, 0] (cubic filter).

**grid_sample** (``grid_sampler_2d``/``3d``), **approximate** (the kernels' branches depend on the
data): per output location and grid coordinate, unnormalise ((x+1)·(S−1)/2, or ((x+1)·S − 1)/2
without align_corners: 1 add, 1 mul, 1 div, +1 sub) and, for padding 'border'/'reflection', a clamp
(2 sub). Bilinear/trilinear: per location 2^d corner weights, each a product of d distances
(d sub, d−1 mul); per channel 2^d mul and 2^d − 1 add. Nearest: a copy (0). Bicubic (2-d): the Keys
weights of both coordinates per location (2·W_cub) and 20 mul, 15 add per channel. Backward: the
same coordinate and weight work, 2d mul per location for the unnormalisation's chain rule; per
location and channel, grad_input gets 2^d taps of w·g (2^d mul, 2^d add) and the grid gradient
d·2^d mul and d·2^d add (bicubic: 64 mul, 48 add per channel).

**affine_grid** (``affine_grid_generator``): the base grid is a fill; each output coordinate is a
dot product of length d+1 with θ (d+1 mul, d add): 2-d: per location 6 mul, 4 add.
"""

from __future__ import annotations

from math import ceil, prod

from ..bos import BOs
from .registry import numel, register

W_LIN = BOs(add=1, sub=6, mul=1)
W_LIN_ALIGN = BOs(sub=4, mul=1)
W_CUB = BOs(add=7, sub=11, mul=13)
W_CUB_ALIGN = BOs(add=6, sub=10, mul=13)


def _spatial(t, d: int) -> list[int]:
    return [int(s) for s in t.shape[-d:]]


def _nd(name: str) -> int:
    return 3 if "3d" in name else (1 if "1d" in name else 2)


# -- nearest ----------------------------------------------------------------------------------

def _nearest_backward(out, grad, *args, **kwargs) -> BOs:
    """Each output gradient added into its source: numel(grad_output) adds."""
    return BOs(add=numel(grad))


for _nd_ in (1, 2, 3):
    register(f"upsample_nearest{_nd_}d", f"_upsample_nearest_exact{_nd_}d")(
        lambda out, *a, **k: BOs())
    register(f"upsample_nearest{_nd_}d_backward", f"_upsample_nearest_exact{_nd_}d_backward")(
        _nearest_backward)


# -- linear / cubic ---------------------------------------------------------------------------

def _weights(out_sizes, in_sizes, unit: BOs, always: bool) -> BOs:
    n = sum(o for o, i in zip(out_sizes, in_sizes) if always or o != i)
    return unit * n


def _align(args, kwargs, pos: int) -> bool:
    if "align_corners" in kwargs:
        return bool(kwargs["align_corners"])
    return bool(args[pos]) if len(args) > pos else False


def _linear_forward(d: int):
    per = BOs(add=2 ** d - 1, mul=2 ** (d + 1) - 2)

    def rule(out, x, output_size, *args, **kwargs) -> BOs:
        unit = W_LIN_ALIGN if _align(args, kwargs, 0) else W_LIN
        return per * numel(out) + _weights(_spatial(out, d), _spatial(x, d), unit, False)

    rule.__doc__ = (f"{d}-d linear interpolation: per output {per}; W_lin per output coordinate of "
                    "every resized dim (see module doc).")
    return rule


def _linear_backward(d: int):
    per = BOs(add=2 ** d, mul=d * 2 ** d)

    def rule(out, grad, output_size, input_size, *args, **kwargs) -> BOs:
        unit = W_LIN_ALIGN if _align(args, kwargs, 0) else W_LIN
        return per * numel(grad) + _weights(_spatial(grad, d), _spatial(out, d), unit, False)

    rule.__doc__ = (f"{d}-d linear interpolation backward: per output gradient {per}; W_lin per output "
                    "coordinate of every resized dim (see module doc).")
    return rule


for _d, _name in ((1, "upsample_linear1d"), (2, "upsample_bilinear2d"), (3, "upsample_trilinear3d")):
    register(_name)(_linear_forward(_d))
    register(f"{_name}_backward")(_linear_backward(_d))


@register("upsample_bicubic2d")
def upsample_bicubic2d(out, x, output_size, *args, **kwargs) -> BOs:
    """Per output 20 mul, 15 add; W_cub per output coordinate of both dims (see module doc)."""
    unit = W_CUB_ALIGN if _align(args, kwargs, 0) else W_CUB
    return BOs(add=15, mul=20) * numel(out) + _weights(_spatial(out, 2), _spatial(x, 2), unit, True)


@register("upsample_bicubic2d_backward")
def upsample_bicubic2d_backward(out, grad, output_size, input_size, *args, **kwargs) -> BOs:
    """Per output gradient 32 mul, 16 add; W_cub per output coordinate of both dims."""
    unit = W_CUB_ALIGN if _align(args, kwargs, 0) else W_CUB
    return BOs(add=16, mul=32) * numel(grad) + _weights(_spatial(grad, 2), _spatial(out, 2), unit, True)


# -- antialias --------------------------------------------------------------------------------

def _scale(in_size: int, out_size: int, align_corners: bool, scale) -> float:
    """``area_pixel_compute_scale``."""
    if out_size <= 1:
        return 0.0
    if align_corners:
        return (in_size - 1) / (out_size - 1)
    if scale is not None and scale > 0:
        return 1.0 / scale
    return in_size / out_size


def aa_taps(in_size: int, out_size: int, interp_size: int, align_corners: bool = False,
            scale=None) -> list[int]:
    """Taps (xsize) of each output index of an antialiased pass along one dim, as the kernel."""
    s = _scale(in_size, out_size, align_corners, scale)
    support = (interp_size * 0.5) * s if s >= 1.0 else interp_size * 0.5
    max_size = ceil(support) * 2 + 1
    taps = []
    for i in range(out_size):
        center = s * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xsize = min(int(center + support + 0.5), in_size) - xmin
        taps.append(min(max(xsize, 0), max_size))
    return taps


_AA_COORD = BOs(add=3, sub=1, mul=1)
_AA_TAP = {2: BOs(add=2, sub=4, mul=1, div=1), 4: BOs(add=3, sub=5, mul=4, div=1)}


def _aa_scales(args, kwargs):
    sh = kwargs.get("scales_h", args[1] if len(args) > 1 else None)
    sw = kwargs.get("scales_w", args[2] if len(args) > 2 else None)
    return sh, sw


def _aa_forward(interp: int):
    def rule(out, x, output_size, *args, **kwargs) -> BOs:
        align = _align(args, kwargs, 0)
        sh, sw = _aa_scales(args, kwargs)
        planes = numel(out) // max(prod(_spatial(out, 2)), 1)
        (ih, iw), (oh, ow) = _spatial(x, 2), _spatial(out, 2)
        total = BOs()
        if ow != iw:  # horizontal pass: output (P, ih, ow)
            taps = aa_taps(iw, ow, interp, align, sw)
            total += BOs(mul=sum(taps), add=sum(taps) - ow) * (planes * ih)
            total += _AA_COORD * ow + _AA_TAP[interp] * sum(taps)
        if oh != ih:  # vertical pass: output (P, oh, ow)
            taps = aa_taps(ih, oh, interp, align, sh)
            total += BOs(mul=sum(taps), add=sum(taps) - oh) * (planes * ow)
            total += _AA_COORD * oh + _AA_TAP[interp] * sum(taps)
        return total

    rule.__doc__ = ("Antialiased resize: per pass output xsize mul, xsize − 1 add; filter weights "
                    "approximate (see module doc).")
    return rule


def _aa_backward(interp: int):
    def rule(out, grad, output_size, input_size, *args, **kwargs) -> BOs:
        align = _align(args, kwargs, 0)
        sh, sw = _aa_scales(args, kwargs)
        planes = numel(grad) // max(prod(_spatial(grad, 2)), 1)
        (ih, iw), (oh, ow) = _spatial(out, 2), _spatial(grad, 2)
        tw, th = aa_taps(iw, ow, interp, align, sw), aa_taps(ih, oh, interp, align, sh)
        taps = sum(tw) * sum(th)
        weights = _AA_COORD * (ow + oh) + _AA_TAP[interp] * (sum(tw) + sum(th))
        return BOs(add=taps, mul=2 * taps) * planes + weights

    rule.__doc__ = ("Antialiased resize backward: per output gradient ysize·xsize taps of wx·wy·g "
                    "(2 mul, 1 add); filter weights approximate.")
    return rule


register("_upsample_bilinear2d_aa")(_aa_forward(2))
register("_upsample_bicubic2d_aa")(_aa_forward(4))
register("_upsample_bilinear2d_aa_backward")(_aa_backward(2))
register("_upsample_bicubic2d_aa_backward")(_aa_backward(4))


# -- grid_sample / affine_grid ----------------------------------------------------------------

def _grid_coord(align_corners: bool, padding_mode: int) -> BOs:
    unit = BOs(add=1, mul=1, div=1) + (BOs() if align_corners else BOs(sub=1))
    if padding_mode in (1, 2):  # border, reflection
        unit += BOs(sub=2)
    return unit


def _grid_sampler(d: int):
    def rule(out, x, grid, interpolation_mode, padding_mode, align_corners, **kwargs) -> BOs:
        locations = numel(grid) // d
        channels = int(x.shape[1])
        total = _grid_coord(bool(align_corners), int(padding_mode)) * (d * locations)
        if interpolation_mode == 0:  # bilinear / trilinear
            taps = 2 ** d
            total += BOs(sub=taps * d, mul=taps * (d - 1)) * locations
            total += BOs(mul=taps, add=taps - 1) * (locations * channels)
        elif interpolation_mode == 2:  # bicubic
            total += W_CUB * (2 * locations) + BOs(mul=20, add=15) * (locations * channels)
        return total

    rule.__doc__ = f"{d}-d grid sample, approximate coordinate side (see module doc)."
    return rule


def _grid_sampler_backward(d: int):
    def rule(out, grad, x, grid, interpolation_mode, padding_mode, align_corners, *args, **kwargs) -> BOs:
        locations = numel(grid) // d
        channels = int(x.shape[1])
        total = _grid_coord(bool(align_corners), int(padding_mode)) * (d * locations)
        total += BOs(mul=2 * d) * locations
        if interpolation_mode == 0:
            taps = 2 ** d
            total += BOs(sub=taps * d, mul=taps * (d - 1)) * locations
            total += BOs(mul=taps + d * taps, add=taps + d * taps) * (locations * channels)
        elif interpolation_mode == 2:
            total += W_CUB * (2 * locations) + BOs(mul=64, add=48) * (locations * channels)
        return total

    rule.__doc__ = f"{d}-d grid sample backward, approximate (see module doc)."
    return rule


register("grid_sampler_2d", "_grid_sampler_2d_cpu_fallback")(_grid_sampler(2))
register("grid_sampler_3d")(_grid_sampler(3))
register("grid_sampler_2d_backward", "_grid_sampler_2d_cpu_fallback_backward")(_grid_sampler_backward(2))
register("grid_sampler_3d_backward")(_grid_sampler_backward(3))


@register("cudnn_grid_sampler")
def cudnn_grid_sampler(out, x, grid, **kwargs) -> BOs:
    """cuDNN's sampler: bilinear, zero padding, align_corners=True — as :func:`grid_sampler_2d`."""
    return _grid_sampler(2)(out, x, grid, 0, 0, True)


@register("cudnn_grid_sampler_backward")
def cudnn_grid_sampler_backward(out, x, grid, grad, **kwargs) -> BOs:
    """cuDNN's sampler backward: as :func:`grid_sampler_2d_backward` (bilinear, zeros, aligned)."""
    return _grid_sampler_backward(2)(out, grad, x, grid, 0, 0, True)


@register("affine_grid_generator")
def affine_grid_generator(out, theta, size, align_corners=False, **kwargs) -> BOs:
    """Each output coordinate: a dot product of length d+1 with θ: d+1 mul, d add."""
    d = int(out.shape[-1])
    return BOs(mul=d + 1, add=d) * numel(out)
