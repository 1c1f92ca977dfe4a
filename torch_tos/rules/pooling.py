"""Pooling, 1-d/2-d/3-d; windows counted at full kernel size (taps on padding included, as the
paper counts k² per output).

* max pool with window k (Πk taps): Πk − 1 compares per output (docs/conventions.md §2).
  Backward: the gradient of each output is added into its arg-max input: 1 add per output.
* avg pool: Πk − 1 adds and 1 div per output (``count_include_pad``/``divisor_override`` change
  the divisor, not the count). Backward: each output gradient is divided once (1 div) and added
  into its Πk window inputs (Πk adds).
* adaptive avg pool: output i along a dim of size I→O covers [⌊iI/O⌋, ⌈(i+1)I/O⌉); each output
  costs (its window size − 1) adds and 1 div — exact per output. Backward: 1 div per output
  gradient and one add per window element. Adaptive max pool: window − 1 compares; backward 1 add
  per output.
* fractional max pool (k window, pseudo-random interval starts): Πk − 1 compares per output; the
  interval sequence per plane and dim, α = (I − k)/(O − 1) (1 sub, 1 div) and per output coordinate
  ⌊(i + u)·α⌋ − ⌊u·α⌋ (1 add, 2 mul, 1 sub; u·α once per plane and dim is folded in) — that part
  **approximate**. Backward: 1 add per output gradient (into its arg-max).
"""

from math import prod

from ..bos import BOs
from .registry import numel, register


def _as_list(v, nd: int) -> list[int]:
    if isinstance(v, int):
        return [v] * nd
    v = [int(a) for a in v]
    return v * nd if len(v) == 1 else v


def _window(kernel_size, nd: int) -> int:
    return prod(_as_list(kernel_size, nd))


def _spatial_dims(name: str) -> int:
    return 3 if "3d" in name else (1 if "1d" in name else 2)


def _max_pool(nd):
    def rule(out, x, kernel_size, *args, **kwargs) -> BOs:
        o = out[0] if isinstance(out, (tuple, list)) else out
        return BOs(sub=numel(o) * (_window(kernel_size, nd) - 1))

    rule.__doc__ = f"{nd}-d max pool: Πk − 1 compares per output."
    return rule


def _avg_pool(nd):
    def rule(out, x, kernel_size, *args, **kwargs) -> BOs:
        n = numel(out)
        return BOs(add=n * (_window(kernel_size, nd) - 1), div=n)

    rule.__doc__ = f"{nd}-d avg pool: Πk − 1 adds and 1 div per output."
    return rule


def _avg_pool_backward(nd):
    def rule(out, g, x, kernel_size, *args, **kwargs) -> BOs:
        n = numel(g)
        return BOs(div=n, add=n * _window(kernel_size, nd))

    rule.__doc__ = f"{nd}-d avg pool backward: 1 div per output gradient, Πk adds."
    return rule


def _max_pool_backward(out, g, *args, **kwargs) -> BOs:
    """Max pool backward: each output gradient added into its arg-max input (1 add)."""
    return BOs(add=numel(g))


#: n-d names aten does not have (1-d pools run as 2-d ones on an unsqueezed input, and so do
#: their backwards; adaptive_avg_pool2d's backward is ``_adaptive_avg_pool2d_backward``)
_NOT_IN_ATEN = {"mkldnn_max_pool1d", "max_pool1d_with_indices_backward", "avg_pool1d_backward",
                "adaptive_max_pool1d_backward", "_adaptive_avg_pool1d", "_adaptive_avg_pool1d_backward",
                "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward"}


def _names(*names: str) -> list[str]:
    return [n for n in names if n not in _NOT_IN_ATEN]


for _nd in (1, 2, 3):
    register(*_names(f"max_pool{_nd}d_with_indices", f"max_pool{_nd}d", f"mkldnn_max_pool{_nd}d",
                     f"quantized_max_pool{_nd}d"))(_max_pool(_nd))
    register(f"avg_pool{_nd}d")(_avg_pool(_nd))
    register(*_names(f"avg_pool{_nd}d_backward"))(_avg_pool_backward(_nd))
    register(*_names(f"max_pool{_nd}d_with_indices_backward",
                     f"adaptive_max_pool{_nd}d_backward"))(_max_pool_backward)
register("max_unpool2d", "max_unpool3d")(lambda out, *a, **k: BOs())


def adaptive_windows(in_size: int, out_size: int) -> list[int]:
    """Window length of each output of an adaptive pool along one dimension: output i covers
    [⌊i·I/O⌋, ⌈(i+1)·I/O⌉) (integer arithmetic, exact for any size)."""
    return [-(-(i + 1) * in_size // out_size) - (i * in_size // out_size) for i in range(out_size)]


def _adaptive_window_total(x_shape, out_shape, nd: int) -> tuple[int, int]:
    """(Σ over outputs of window size, number of outputs) per (batch, channel) plane."""
    total, outs = 1, 1
    for i in range(1, nd + 1):
        w = adaptive_windows(int(x_shape[-i]), int(out_shape[-i]))
        total *= sum(w)
        outs *= len(w)
    return total, outs


def _adaptive_avg(nd):
    def rule(out, x, output_size, *args, **kwargs) -> BOs:
        win, outs = _adaptive_window_total(x.shape, out.shape, nd)
        planes = numel(out) // max(outs, 1)
        return BOs(add=planes * (win - outs), div=numel(out))

    rule.__doc__ = f"{nd}-d adaptive avg pool: (window − 1) adds and 1 div per output, exact windows."
    return rule


def _adaptive_avg_backward(nd):
    def rule(out, g, x, *args, **kwargs) -> BOs:
        win, outs = _adaptive_window_total(x.shape, g.shape, nd)
        planes = numel(g) // max(outs, 1)
        return BOs(add=planes * win, div=numel(g))

    rule.__doc__ = f"{nd}-d adaptive avg pool backward: 1 div per output gradient, one add per window element."
    return rule


def _adaptive_max(nd):
    def rule(out, x, output_size, *args, **kwargs) -> BOs:
        o = out[0] if isinstance(out, (tuple, list)) else out
        win, outs = _adaptive_window_total(x.shape, o.shape, nd)
        planes = numel(o) // max(outs, 1)
        return BOs(sub=planes * (win - outs))

    rule.__doc__ = f"{nd}-d adaptive max pool: window − 1 compares per output, exact windows."
    return rule


for _nd in (1, 2, 3):
    register(*_names(f"_adaptive_avg_pool{_nd}d", f"adaptive_avg_pool{_nd}d"))(_adaptive_avg(_nd))
    register(*_names(f"_adaptive_avg_pool{_nd}d_backward",
                     f"adaptive_avg_pool{_nd}d_backward"))(_adaptive_avg_backward(_nd))
    register(f"adaptive_max_pool{_nd}d")(_adaptive_max(_nd))


def _fractional_max(nd):
    def rule(out, x, kernel_size, output_size, random_samples, **kwargs) -> BOs:
        o = out[0] if isinstance(out, (tuple, list)) else out
        outs = [int(s) for s in o.shape[-nd:]]
        planes = numel(o) // max(prod(outs), 1)
        pool = BOs(sub=numel(o) * (_window(kernel_size, nd) - 1))
        intervals = (BOs(sub=1, div=1) * nd + BOs(add=1, mul=2, sub=1) * sum(outs)) * planes
        return pool + intervals

    rule.__doc__ = f"{nd}-d fractional max pool: Πk − 1 compares per output + the interval sequence (approximate)."
    return rule


register("fractional_max_pool2d")(_fractional_max(2))
register("fractional_max_pool3d")(_fractional_max(3))
register("fractional_max_pool2d_backward", "fractional_max_pool3d_backward")(_max_pool_backward)
