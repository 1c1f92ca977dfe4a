"""Cost curves over shape axes: a call is interpolated among measured calls of its own shape
(derived by hand on synthetic convolution and normalisation points)."""

import math

import numpy as np
import pytest

from torch_tos.energy.curves import Curve
from torch_tos.energy.machine import MachineProfile

ATTRS = ("dense", 1, 1, "Slow2d")


def _conv(flops, positions, rate):
    """A 1×1 convolution of ``flops`` over ``positions`` per image, measured at ``rate`` FLOP/s
    (bytes: a tenth of the FLOPs)."""
    return {"class": "conv", "op": "aten.convolution", "dtype": "float32", "attrs": [*ATTRS, positions],
            "flops": flops, "bytes_in": flops / 10, "bytes_out": 0, "seconds": flops / rate,
            "joules": 10 * flops / rate}


# 2×2 maps (4 positions): a GEMM four columns wide per image, 7 GFLOP/s at any size;
# 4×4 maps (16 positions): 80 GFLOP/s; 32×32 maps (1,024 positions): 100 GFLOP/s
POINTS = [_conv(f, 4, 7e9) for f in (2.5e5, 1.7e7)] + [_conv(f, 16, 8e10) for f in (2.5e5, 3e7)] + \
         [_conv(f, 1024, 1e11) for f in (4e6, 1e8)]


def _price(profile, flops, positions):
    s, j, _ = profile.price("aten.convolution", "float32", {(flops, flops / 10, 0, (*ATTRS, positions)): 1})
    return s, j


def test_a_call_is_priced_among_calls_of_its_own_shape():
    p = MachineProfile(POINTS, {"seconds": 0.0, "joules": 0.0}, (), {"type": "cpu"}, ("float32",))
    # 2.5 MFLOP over 2×2 maps: between the two 4-position calls (both 7 GFLOP/s), so 7 GFLOP/s —
    # not the far faster rate of the 16-position calls that do similar work
    s, j = _price(p, 2.5e6, 4)
    assert s == pytest.approx(2.5e6 / 7e9) and j == pytest.approx(10 * 2.5e6 / 7e9)
    # the same work over 4×4 maps: 80 GFLOP/s
    assert _price(p, 2.5e6, 16)[0] == pytest.approx(2.5e6 / 8e10)
    # 8 positions lie halfway (in log) between 4 and 16: the geometric mean of the two shapes' costs
    assert _price(p, 2.5e6, 8)[0] == pytest.approx(math.sqrt(2.5e6 / 7e9 * 2.5e6 / 8e10))


def test_a_call_outside_its_shapes_measured_work_uses_all_calls():
    axes = np.array([[q["flops"], q["flops"] / 10, q["attrs"][-1]] for q in POINTS])
    costs = np.array([[q["seconds"], q["joules"]] for q in POINTS])
    curve = Curve(axes, costs, (True, True, False))
    # 1 GFLOP over 2×2 maps lies beyond the 4-position calls' measured work (up to 17 MFLOP): the
    # interpolation over every call (roofline-bounded, kept at or above the largest 4-position
    # call that does no more work) prices it, as for a shape with a single measured size
    query = np.array([[1e9, 1e8, 4.0]])
    s = curve(query)[0, 0]
    assert s >= 1.7e7 / 7e9
    flat = Curve(axes, costs, (True, True, False))
    flat.shapes = None  # the same curve without per-shape interpolation
    assert s == pytest.approx(flat(query)[0, 0])


def test_two_shape_axes_interpolate_over_a_triangulation_of_the_shapes():
    # a normalisation's work (bytes) and shape (statistics, positions): costs 1, 2, 4 and 8 µs per
    # byte-unit at the shapes (1, 1), (100, 1), (1, 100), (100, 100); each shape measured at 1e3 and 1e5 B
    rates = {(1.0, 1.0): 1.0, (100.0, 1.0): 2.0, (1.0, 100.0): 4.0, (100.0, 100.0): 8.0}
    axes, costs = [], []
    for (stat, pos), r in rates.items():
        for b in (1e3, 1e5):
            axes.append([b, stat, pos])
            costs.append([r * b * 1e-9, 10 * r * b * 1e-9])
    curve = Curve(np.array(axes), np.array(costs), (True, False, False))
    # a measured shape, between its measured sizes: log-linear in bytes, exactly its rate
    assert curve(np.array([[1e4, 100.0, 1.0]]))[0, 0] == pytest.approx(2.0 * 1e4 * 1e-9)
    # the centre of the square of shapes, on a diagonal of either triangulation: the cost interpolated
    # in log space between the two shapes at the ends of that diagonal — sqrt(2·4) or sqrt(1·8) = √8
    s = curve(np.array([[1e4, 10.0, 10.0]]))[0, 0]
    assert s == pytest.approx(math.sqrt(8.0) * 1e4 * 1e-9)
