"""The machine profile: reading costs off measured curves (by hand on synthetic points)."""

import math

import pytest

from torch_tos.energy.machine import DtypeNotMeasured, MachineProfile


def _pt(cls, op, flops, b_in, b_out, seconds, dtype="float32", attrs=None):
    return {"class": cls, "op": op, "dtype": dtype, "attrs": attrs, "flops": flops, "bytes_in": b_in,
            "bytes_out": b_out, "seconds": seconds, "joules": 10 * seconds}


def _profile(points, floor=0.0, alloc=(), dtypes=("float32",)):
    return MachineProfile(points, {"seconds": floor, "joules": 10 * floor}, alloc, {"type": "cpu"}, dtypes)


EW = [_pt("elementwise", "aten.add", 0, 60, 40, 2e-6), _pt("elementwise", "aten.add", 0, 6000, 4000, 2e-5)]


def test_one_axis_interpolates_in_log_space_floors_below_and_scales_above():
    p = _profile(EW)
    s, j, notes = p.price("aten.add", "float32", {(0, 60, 40, None): 1})          # a measured point
    assert s == pytest.approx(2e-6) and j == pytest.approx(2e-5)
    s, _, _ = p.price("aten.add", "float32", {(0, 600, 400, None): 1})             # halfway in log bytes
    assert s == pytest.approx(math.sqrt(2e-6 * 2e-5))
    s, _, _ = p.price("aten.add", "float32", {(0, 6, 4, None): 3})                 # below: the latency floor
    assert s == pytest.approx(3 * 2e-6)
    s, _, notes = p.price("aten.add", "float32", {(0, 600000, 400000, None): 1})   # above: linear in bytes
    assert s == pytest.approx(2e-5 * 100)
    assert notes and "extrapolation" in notes[0]


def test_floor_and_allocation_are_read_off_separately():
    alloc = [[1000.0, 1e-7, 1e-6], [100000.0, 1e-5, 1e-4]]
    p = _profile([*EW, _pt("elementwise", "aten.add_", 0, 60000, 40000, 1.5e-4)], floor=5e-7, alloc=alloc)
    # the allocation curve: 0 below its smallest buffer, log-log interpolated, linear above its largest
    assert p.allocation([10.0, 1000.0, 4000.0, 1e6])[:, 0] == pytest.approx([0.0, 1e-7, 4e-7, 1e-4])
    # a measured out-of-place call prices at its cost less the floor (kernel + its output's allocation)
    s, _, _ = p.price("aten.add", "float32", {(0, 6000, 4000, None): 1})
    assert s == pytest.approx(2e-5 - 5e-7)
    # an in-place call (aten's trailing _) allocates nothing: its price is its kernel alone
    s, _, _ = p.price("aten.add_", "float32", {(0, 60000, 40000, None): 1})
    assert s == pytest.approx(1.5e-4 - 5e-7)
    s, _, _ = p.price("aten.add_", "float32", {(0, 6000, 4000, None): 1})
    assert s == pytest.approx(2e-5 - 5e-7 - float(p.allocation([4000.0])[0, 0]))  # aten.add's kernel here


def test_two_axes_are_roofline_bounded():
    pts = [_pt("matmul", "aten.mm", f, b, 0, t) for f, b, t in
           ((1e3, 1e3, 1e-6), (1e6, 1e4, 1e-5), (1e6, 1e6, 1e-4), (1e9, 1e6, 1e-2), (1e9, 1e8, 5e-2))]
    p = _profile(pts)
    for q in pts:  # every measured call prices at its own cost
        s, _, _ = p.price("aten.mm", "float32", {(q["flops"], q["bytes_in"], 0, None): 1})
        assert s == pytest.approx(q["seconds"])
    # between two measured calls that bound it on both axes
    s, _, _ = p.price("aten.mm", "float32", {(3e7, 3e5, 0, None): 1})
    assert 1e-5 <= s <= 1e-2
    # far above: at the peak rates read off the points (1e9 FLOP / 1e-2 s = 1e11 FLOP/s)
    s, _, _ = p.price("aten.mm", "float32", {(1e11, 1e6, 0, None): 1})
    assert s == pytest.approx(1e11 / 1e11, rel=0.01)


def test_the_nearest_measured_kernel_prices_a_convolution():
    fast = [_pt("conv", "aten.convolution", f, f / 10, 0, f / 1e11, attrs=["dense", 9, 1, "Mkldnn", 16])
            for f in (1e6, 1e7, 1e8)]
    slow = [_pt("conv", "aten.convolution", f, f / 10, 0, f / 1e9, attrs=["dense", 1, 1, "Slow2d", 16])
            for f in (1e6, 1e7, 1e8)]
    p = _profile(fast + slow)
    s, _, _ = p.price("aten.convolution", "float32", {(1e7, 1e6, 0, ("dense", 9, 1, "Mkldnn", 16)): 1})
    assert s == pytest.approx(1e7 / 1e11)
    s, _, _ = p.price("aten.convolution", "float32", {(1e7, 1e6, 0, ("dense", 1, 1, "Slow2d", 16)): 1})
    assert s == pytest.approx(1e7 / 1e9)
    s, _, _ = p.price("aten.convolution", "float32", {(1e7, 1e6, 0, ("dense", 25, 1, "Mkldnn", 16)): 1})
    assert s == pytest.approx(1e7 / 1e11)  # 5×5: nearest measured oneDNN kernel is the 3×3 one


def test_dtypes_views_and_integer_bookkeeping():
    p = _profile(EW)
    assert p.price("aten.view", "float32", {(0, 0, 0, None): 7})[:2] == (0.0, 0.0)   # dispatch only
    s, _, _ = p.price("aten.add", "int64", {(0, 60, 40, None): 1})                  # priced as float32's
    assert s == pytest.approx(2e-6)
    with pytest.raises(DtypeNotMeasured, match=r"float16.*--dtypes float32,float16"):
        p.price("aten.add", "float16", {(0, 60, 40, None): 1})


def test_round_trip():
    p = _profile(EW, floor=1e-7, alloc=[[1000.0, 1e-6, 1e-5]])
    q = MachineProfile.from_dict(p.to_dict())
    assert q.price("aten.add", "float32", {(0, 600, 400, None): 2}) == p.price("aten.add", "float32",
                                                                               {(0, 600, 400, None): 2})
    assert q.dtypes == ("float32",)
