"""Detection ops of torchvision: ``nms``, ``roi_align`` and its backward (every torchvision
detection model). Registered whenever torchvision is loaded, whatever the import order.

**nms** (torchvision's CPU kernel, nms_kernel.cpp): areas (x2 − x1)·(y2 − y1) for the N boxes
(2 sub, 1 mul each); a stable sort of the scores, priced N·⌈log2 N⌉ compares (approximate: the
sort's comparisons depend on the values); then for each kept box, its IoU with every later box not
yet suppressed — per pair 4 compares (max/min of the corners), 2 sub + 2 compares (w, h clamped
at 0), 1 mul (intersection), 1 add + 1 sub + 1 div (inter / (area_i + area_j − inter)) and the
threshold compare: **[1, 10, 1, 1, 0] per pair**. Which pairs are evaluated depends on the boxes:
on real tensors the rule replays the kernel's suppression loop and counts exactly the pairs it
evaluates; on meta it cannot, prices the worst case N(N − 1)/2 pairs and warns
(:class:`~torch_tos.rules.registry.ApproximateCountWarning`).

**roi_align** (roi_align_kernel.cpp; output [K, C, ph, pw]): per RoI, its scaled corners (4 mul;
``aligned``: 4 sub for the half-pixel offset), size (2 sub; not aligned: 2 compares with 1), bin
size and the sample step (4 div; an adaptive grid, ``sampling_ratio ≤ 0``: 2 div more for
⌈roi/bin⌉); per RoI, bin and sample point (g_h·g_w samples per bin) the bilinear weights:
coordinates (4 add, 4 mul), bounds and clamp checks (8 compares), the fractions ly, lx, 1 − ly,
1 − lx (4 sub), the 4 weights (4 mul): [4, 12, 8, 0, 0]; per channel and sample the weighted
4-tap sum (4 mul, 4 add); per output the average over the samples (1 div). With an adaptive grid
the sample count of each RoI depends on its size: exact on real RoIs, on meta priced with one
sample per bin and a warning.

**_roi_align_backward**: per output gradient the division by the sample count (1 div); per
channel, bin and sample the bilinear weights recomputed ([4, 12, 8, 0, 0], the CPU backward
computes them inside its channel loop) and the 4 scattered adds of g·w (4 mul, 4 add); RoI setup
as above. Samples outside the feature map are counted (approximate: the kernel skips them).
"""

from __future__ import annotations

import math

import torch

from ..bos import BOs
from .registry import numel, register, warn_approximate

PAIR = BOs(add=1, sub=10, mul=1, div=1)
SAMPLE_WEIGHTS = BOs(add=4, sub=12, mul=8)
TAPS = BOs(add=4, mul=4)


def _is_meta(*tensors) -> bool:
    return any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in tensors)


def nms_pairs(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> int:
    """The (kept box, later live box) pairs whose IoU torchvision's CPU kernel evaluates."""
    n = int(boxes.shape[0])
    if n == 0:
        return 0
    order = scores.sort(stable=True, descending=True).indices
    b = boxes[order]
    x1, y1, x2, y2 = b.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    suppressed = torch.zeros(n, dtype=torch.bool)
    pairs = 0
    for i in range(n):
        if suppressed[i]:
            continue
        live = (~suppressed[i + 1:]).nonzero().flatten() + i + 1
        pairs += int(live.numel())
        if live.numel() == 0:
            break
        w = (torch.minimum(x2[i], x2[live]) - torch.maximum(x1[i], x1[live])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[live]) - torch.maximum(y1[i], y1[live])).clamp(min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[live] - inter)
        suppressed[live[ovr > threshold]] = True
    return pairs


@register("torchvision::nms")
def nms(out, boxes, scores, iou_threshold, **kwargs) -> BOs:
    """Areas [0, 2, 1, 0, 0] per box, sort N·⌈log2 N⌉ compares, [1, 10, 1, 1, 0] per evaluated
    IoU pair — exact pairs on real tensors, the worst case N(N−1)/2 on meta (warned)."""
    n = int(boxes.shape[0])
    if _is_meta(boxes, scores):
        warn_approximate("torchvision.nms", "which box pairs are compared depends on the boxes; "
                         "meta prices the worst case, every pair")
        pairs = n * (n - 1) // 2
    else:
        pairs = nms_pairs(boxes.detach(), scores.detach(), float(iou_threshold))
    sort = n * math.ceil(math.log2(n)) if n > 1 else 0
    return BOs(sub=2 * n + sort, mul=n) + PAIR * pairs


def _grids(rois, spatial_scale, ph: int, pw: int, sampling_ratio: int, aligned: bool, op: str):
    """Sample points per bin (g_h·g_w) of every RoI, summed over the RoIs; and the RoI count."""
    k = int(rois.shape[0])
    if sampling_ratio > 0:
        return k * sampling_ratio * sampling_ratio, k
    if _is_meta(rois):
        warn_approximate(op, "with an adaptive sampling grid the samples depend on each RoI's size; "
                         "meta prices one sample per bin")
        return k, k
    r = rois.detach().to(torch.float64)
    w = r[:, 3] * spatial_scale - r[:, 1] * spatial_scale
    h = r[:, 4] * spatial_scale - r[:, 2] * spatial_scale
    if not aligned:
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    gh = torch.ceil(h / ph).clamp(min=1)
    gw = torch.ceil(w / pw).clamp(min=1)
    return int((gh * gw).sum()), k


def _roi_setup(k: int, aligned: bool, adaptive: bool) -> BOs:
    per = BOs(sub=2 + (4 if aligned else 2), mul=4 + 1, div=4 + (2 if adaptive else 0))
    return per * k


@register("torchvision::roi_align")
def roi_align(out, x, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned,
              **kwargs) -> BOs:
    """Per RoI·bin·sample the bilinear weights [4, 12, 8, 0, 0]; per channel·bin·sample the
    4-tap sum [4, 0, 4, 0, 0]; 1 div per output; RoI setup (see the module docstring)."""
    ph, pw, sr = int(pooled_height), int(pooled_width), int(sampling_ratio)
    samples, k = _grids(rois, float(spatial_scale), ph, pw, sr, bool(aligned), "torchvision.roi_align")
    c = int(x.shape[1])
    bins = ph * pw
    return (_roi_setup(k, bool(aligned), sr <= 0) + SAMPLE_WEIGHTS * (samples * bins)
            + TAPS * (samples * bins * c) + BOs(div=numel(out)))


@register("torchvision::_roi_align_backward")
def roi_align_backward(out, grad, rois, spatial_scale, pooled_height, pooled_width, batch_size,
                       channels, height, width, sampling_ratio, aligned, **kwargs) -> BOs:
    """Per output gradient 1 div; per channel·bin·sample the bilinear weights [4, 12, 8, 0, 0]
    and 4 scattered adds of g·w [4, 0, 4, 0, 0]; RoI setup."""
    ph, pw, sr = int(pooled_height), int(pooled_width), int(sampling_ratio)
    samples, k = _grids(rois, float(spatial_scale), ph, pw, sr, bool(aligned),
                        "torchvision._roi_align_backward")
    c = int(channels)
    per_channel_samples = samples * ph * pw * c
    return (_roi_setup(k, bool(aligned), sr <= 0) + (SAMPLE_WEIGHTS + TAPS) * per_channel_samples
            + BOs(div=numel(grad)))
