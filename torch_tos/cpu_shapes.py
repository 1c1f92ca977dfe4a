"""Shape functions of CPU kernels: the output a CPU kernel returns (sizes, strides, dtype — no
data) after its own input checks, for meta tensors, where PyTorch's meta function describes
another device's kernel. :mod:`torch_tos.kernels` hands them to meta while a counting context is
open.
"""

from __future__ import annotations

import torch

from . import _compat

__all__ = ["GROUPED_MM_DTYPES", "grouped_mm_shape"]

#: the dtypes the CPU ``_grouped_mm`` kernel runs
GROUPED_MM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check_layout(mat) -> None:
    """The CPU kernel's stride check: the last two dims row- or column-major, the leading stride
    a multiple of 16 bytes (``check_valid_strides_and_return_transposed``)."""
    end, align = mat.dim() - 1, 16 // mat.element_size()
    stride, size = mat.stride(), mat.shape
    if stride[end - 1] == 1 and stride[end] >= max(1, size[end - 1]):
        lead = stride[end]
    elif stride[end] == 1 and stride[end - 1] >= max(1, size[end]):
        lead = stride[end - 1]
    else:
        raise RuntimeError(f"Invalid strides/sizes, got {list(stride)} for strides and "
                           f"{list(size)} for sizes")
    if lead % align:
        raise RuntimeError("strides should be multiple of 16 bytes")


def _scalar_name(dtype) -> str:
    """The C++ ScalarType name PyTorch's kernels print (``Double`` for ``torch.float64``)."""
    try:
        with _compat.disable_current_modes():
            return torch.empty(0, dtype=dtype).type().rsplit(".", 1)[-1].removesuffix("Tensor")
    except (RuntimeError, TypeError):
        return str(dtype)


def grouped_mm_shape(mat_a, mat_b, offs=None, bias=None, out_dtype=None):
    """The tensor ``aten._grouped_mm`` returns on CPU for these inputs — sizes, strides, dtype,
    no data — after the CPU kernel's input checks, with their messages (PyTorch's
    ``aten/src/ATen/native/GroupedMMUtils.h``: ``_grouped_mm_validate_inputs``,
    ``_resolve_grouped_mm_out_dtype``, ``create_grouped_gemm_output_tensor``).

    Sizes: 2-D ``[M, K]`` × 3-D ``[G, K, N]`` → ``[M, N]``; 3-D ``[G, M, K]`` × 2-D ``[K, N]`` →
    ``[M, N]``; 2-D ``[M, K]`` × 2-D ``[K, N]`` → ``[G, M, N]`` (G = len(offs)); 3-D × 3-D →
    ``[G, M, N]``. The last dim's stride is padded to 16 bytes (not on ROCm builds), as the kernel
    allocates it."""
    for name, mat in (("mat_a", mat_a), ("mat_b", mat_b)):
        if mat.dtype not in GROUPED_MM_DTYPES:
            raise RuntimeError(f"Expected {name} to be Float32, BFloat16 or Float16 matrix, got "
                               f"{_scalar_name(mat.dtype)}")
        if mat.dim() not in (2, 3):
            raise RuntimeError(f"{name} has to be 2 or 3d")
    a2, b2 = mat_a.dim() == 2, mat_b.dim() == 2
    if (not a2 or not b2) and mat_a.shape[-1] != mat_b.shape[-2]:
        raise RuntimeError("contraction dimension of mat_a and mat_b must match")
    _check_layout(mat_a)
    _check_layout(mat_b)
    if (offs is not None) != (a2 or b2):
        raise RuntimeError("Have to provide offsets if there is a 2d matrix, or no offset if both "
                           "matrices are 3d")
    if offs is not None and (offs.dim() != 1 or offs.dtype != torch.int32):
        raise RuntimeError("offs has to be 1D" if offs.dim() != 1 else "Offsets have to be int32")
    if bias is not None:
        raise RuntimeError("Bias not supported yet")
    dtype = out_dtype or mat_a.dtype
    if dtype != mat_a.dtype:
        raise RuntimeError("Grouped gemm output dtype must match `mat_a` dtype")
    if mat_b.dtype != mat_a.dtype:  # the kernel's per-group mm refuses mixed dtypes
        raise RuntimeError(f"expected mat_a and mat_b to have the same dtype, but got: "
                           f"{mat_a.dtype} != {mat_b.dtype}")
    if a2 and b2:
        size = [int(offs.shape[0]), int(mat_a.shape[0]), int(mat_b.shape[1])]
    elif a2 or b2:
        batch = mat_b if a2 else mat_a
        if int(offs.shape[0]) != int(batch.shape[0]):
            raise RuntimeError("matrix batch sizes have to match")
        size = [int(mat_a.shape[0 if a2 else 1]), int(mat_b.shape[-1] if a2 else mat_b.shape[1])]
    else:
        if mat_a.shape[0] != mat_b.shape[0]:
            raise RuntimeError("batched dimension has to match")
        size = [int(mat_a.shape[0]), int(mat_a.shape[1]), int(mat_b.shape[-1])]
    if torch.version.hip is None:
        align = 16 // torch.empty((), dtype=dtype, device="meta").element_size()
        row = (size[-1] + align - 1) // align * align
        stride = [row, 1] if len(size) == 2 else [size[1] * row, row, 1]
        return torch.empty_strided(size, stride, dtype=dtype, device=mat_a.device)
    return torch.empty(size, dtype=dtype, device=mat_a.device)
