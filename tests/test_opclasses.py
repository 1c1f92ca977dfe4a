"""The op-class table: every registered op has a benchmarked class (no silent fallback), the
microbenchmark workloads cover every class, and calls are placed on the right axes."""

import torch

import torch_tos  # noqa: F401 - registers the rules
from torch_tos.energy import opclasses as oc
from torch_tos.rules.registry import PENDING, RULES, ZERO_OPS


def _registered() -> set[str]:
    names = {str(op.overloadpacket) if hasattr(op, "overloadpacket") else str(op) for op in (*RULES, *ZERO_OPS)}
    for _ns, items in PENDING.items():
        names |= {n.replace("::", ".") for n, _rule, _fam in items}
    return names


def test_every_registered_op_has_a_class_of_its_own():
    missing = sorted(n for n in _registered() if oc.table_class(n) is None)
    assert not missing, f"ops without an op class: {missing}"
    assert all(oc.table_class(n) in oc.CLASSES for n in _registered())


def test_depthwise_convolutions_and_unknown_ops():
    assert oc.op_class("aten.convolution", ("depthwise", 9, 1, "Mkldnn", 16)) == "dwconv"
    assert oc.op_class("aten.convolution_backward", ("depthwise", 9, 1, None, 16)) == "dwconv_backward"
    assert oc.op_class("aten.convolution", ("grouped", 9, 1, None, 16)) == "conv"
    assert oc.op_class("aten.mm (recompute)") == "matmul"
    assert oc.op_class("aten._foreach_mul_") == "foreach"
    assert oc.op_class("c10d.allreduce_") == "collective"
    assert oc.op_class("mylib.frobnicate") == oc.FALLBACK
    assert oc.unclassified(["aten.mm", "mylib.frobnicate", "mylib.frobnicate (recompute)"]) == ["mylib.frobnicate"]


def test_axes_read_the_work_bin():
    assert oc.axes_of("matmul", (48, 72, 32, None)) == (48.0, 104.0)
    assert oc.axes_of("conv", (10, 20, 30, ("dense", 9, 1, "Mkldnn", 16))) == (10.0, 50.0, 16.0)
    assert oc.axes_of("gather", (0, 4000, 64, None)) == (64.0,)
    assert oc.axes_of("foreach", (0, 100, 50, (7,))) == (7.0, 150.0)
    assert oc.axes_of("norm", (0, 100, 50, (12, 49, True))) == (150.0, 12.0, 49.0)
    assert oc.axes_of("views", (0, 0, 0, None)) == ()
    assert oc.axes_of("collective", (0, 8, 8, None)) == (16.0,)     # priced as a copy of its bytes
    assert oc.axes_of("elementwise", (0, 0, 0, None)) == (1.0,)     # at least 1 on a log scale


def test_workloads_cover_every_class():
    """The smallest size of every workload, captured and classified as the microbenchmarks do:
    every class but views (dispatch only) and collectives (priced as copies) is measured."""
    from torch_tos.energy.benchsuite import WORKLOADS
    from torch_tos.energy.microbench import capture, classify

    seen = set()
    for w in WORKLOADS:
        sizes = [s for s in w.sizes if s[2] == 64] if w.name == "optimizer" else w.sizes[:1]  # every optimizer kind
        for size in sizes:
            run = w.make(size, torch.float32, torch.device("cpu"))
            run()
            for func, args, kwargs in capture(run):
                hit = classify(func, args, kwargs)
                if hit is not None:
                    seen.add(oc.op_class(hit[0], hit[2][3]))
    assert set(oc.CLASSES) - {"views", "collective"} <= seen
