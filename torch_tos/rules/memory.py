"""Memory-only ops: views, reshapes, copies, concatenation, allocation, random fills, casts.

They move, alias, allocate or convert data; none performs an add, sub, mul, div or root, so each
is registered explicitly as zero. Random-number generators (``uniform_``, ``normal_``, ``randn``,
…) are integer bit-mixing, outside the paper's five floating-point categories, and also count
zero (``bernoulli_``, which compares a draw with ``p``, is priced in :mod:`.elementwise`). Casts
(``_to_copy``) are format conversions, not arithmetic.
"""

import torch

from .registry import register_zero

register_zero(
    # views and reshapes
    "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "t", "transpose", "permute",
    "expand", "expand_as", "squeeze", "unsqueeze", "flatten", "unflatten", "as_strided",
    "slice", "select", "narrow", "split", "split_with_sizes", "unbind", "chunk", "alias",
    "diagonal", "movedim", "unfold", "view_as_real", "view_as_complex",
    "split_copy", "unsafe_split", "unsafe_split_with_sizes", "squeeze_", "unsqueeze_", "t_",
    "transpose_", "as_strided_", "_neg_view", "_conj", "conj", "resolve_conj", "resolve_neg",
    "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle",
    # copies and layout
    "clone", "copy_", "_copy_from", "_copy_from_and_resize", "contiguous", "detach", "detach_",
    "_to_copy", "to", "lift_fresh", "lift_fresh_copy", "lift", "cat", "stack", "hstack",
    "vstack", "repeat", "tile", "flip", "roll", "rot90", "constant_pad_nd", "pad",
    "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "index_select", "gather", "take", "index",
    "slice_scatter", "select_scatter", "diagonal_scatter", "as_strided_scatter", "masked_select",
    "repeat_interleave", "_unsafe_index", "set_", "resize_", "resize_as_", "_reshape_copy",
    "view_copy", "permute_copy", "t_copy", "expand_copy", "transpose_copy", "unsqueeze_copy",
    "squeeze_copy", "slice_copy", "select_copy", "alias_copy", "detach_copy", "unbind_copy",
    "_make_dep_token", "tril_indices", "triu_indices",
    # gradients of views and selections: the incoming gradient copied into a zero tensor
    "select_backward", "slice_backward", "diagonal_backward",
    "narrow_copy", "unfold_copy", "split_with_sizes_copy", "diagonal_copy",
    # writes and masks that move data without arithmetic (the mask of tril/triu is an index test)
    "tril", "tril_", "triu", "triu_", "index_copy", "index_copy_", "index_fill", "index_fill_",
    "masked_scatter", "masked_scatter_", "_unsafe_masked_index", "im2col",
    # allocation and fills
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "new_zeros", "ones", "ones_like", "new_ones", "full", "full_like", "new_full", "fill_", "fill",
    "zero_", "scalar_tensor", "arange", "linspace", "logspace", "eye", "_local_scalar_dense",
    "_pin_memory", "record_stream", "_has_compatible_shallow_copy_type", "is_same_size",
    "_assert_async", "_assert_scalar", "_functional_assert_async", "_assert_tensor_metadata",
    "sym_constrain_range_for_size", "_efficientzerotensor",
    # random number generation (integer bit mixing, see docstring)
    "uniform_", "normal_", "random_", "randn", "rand", "randint", "randperm", "randn_like",
    "rand_like", "randint_like", "normal", "exponential_", "geometric_", "log_normal_", "cauchy_",
    # integer bookkeeping
    "_unique2", "unique_dim", "bincount", "histc",
)


# the profiler's record_function markers, and torchvision's bookkeeping op (``_cuda_version``,
# queried when ``torchvision.ops`` loads; registered once torchvision is loaded, whatever the
# import order)
register_zero("profiler::_record_function_enter", "profiler::_record_function_enter_new",
              "profiler::_record_function_exit", "torchvision::_cuda_version")

# a capability query that returns a Python bool (DeepSpeed's CPU accelerator asks it in its
# gradient all-reduce); builds without oneDNN lack the op
if hasattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported"):
    register_zero("mkldnn::_is_mkldnn_fp16_supported")
