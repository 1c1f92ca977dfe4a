"""Op classes: which measured kernels price a call.

Every aten op the rules registry knows belongs to one **op class** (:data:`OP_CLASSES`, one
table), and every class is benchmarked on the device (:mod:`.microbench`): a call is priced from
the measured calls of its class — of its own op where that op was measured — at the nearest work
per call (:mod:`.machine`). The class also says which numbers of a call's work bin
(:attr:`torch_tos.counts.Counts.work`: FLOPs, bytes read, bytes written, op attributes) its time
follows — its **axes** (:data:`AXES`):

- ``flops`` and ``bytes`` (read + written) for the GEMM-like classes (``matmul``, ``bmm``,
  ``attention``): compute-bound or memory-bound by shape, 2-D; for convolutions (``conv``,
  ``conv_backward``, ``dwconv``, ``dwconv_backward``) also ``positions``, the output's spatial
  positions per image (a shape axis, :data:`SHAPE_AXES`: a GEMM per image is as wide as that);
- ``macs`` (the multiplications recorded in the call's attributes, :mod:`torch_tos.opattrs`) and
  ``bytes`` for fused recurrent layers (``rnn``), which have no FLOPs formula;
- ``tensors`` (the length of the tensor list) and ``bytes`` for ``foreach`` ops;
- ``bytes``, ``statistics`` (the independent means and variances computed) and ``positions`` (of
  one plane) for ``norm`` and ``norm_backward`` — the last two shape axes: they say which kernel
  path a call takes, its bytes say how much it does;
- ``bytes_out`` (bytes written) for ``gather`` (an embedding lookup reads a few rows of a large
  table: what it writes is what it moves);
- nothing for ``views`` (views and metadata: dispatch only, no data touched; their cost is the
  step-level cost per op);
- ``bytes`` for every other class (memory-bound kernels).

Convolutions are split by the attributes recorded at count time: a depthwise convolution
(``groups`` equal to its input channels) is class ``dwconv``/``dwconv_backward``; grouped and dense
ones stay ``conv``/``conv_backward`` and are priced from the measured calls of their own kind,
kernel taps and stride where measured (nearest otherwise).

``collective`` (c10d and functional collectives, DTensor's redistribution) is priced with the ``copy`` class's kernels on its bytes — the local
memory traffic of the collective only; interconnect time is not modelled (:data:`PRICED_AS`).
An op outside the table (a rule a user registered, an unsupported op) is priced as
``elementwise`` by its bytes, with a warning naming it (:func:`op_class`).
"""

from __future__ import annotations

#: class → what it covers (printed by ``torch-tos calibrate``), in print order.
CLASSES: dict[str, str] = {
    "matmul": "GEMMs: mm, addmm, linear, mv, dot",
    "bmm": "batched GEMMs: bmm, baddbmm",
    "attention": "fused attention (scaled_dot_product_attention kernels)",
    "conv": "dense and grouped convolutions, forward",
    "conv_backward": "dense and grouped convolutions, backward",
    "dwconv": "depthwise convolutions, forward",
    "dwconv_backward": "depthwise convolutions, backward",
    "rnn": "fused recurrent layers and cells",
    "elementwise": "arithmetic, comparisons, piecewise activations",
    "transcendental": "exp, log, sqrt, pow, sigmoid, tanh, GELU, SiLU and their backwards",
    "softmax": "softmax and log-softmax, forward and backward",
    "reduction": "sum, mean, max, norms, cumulative ops, sorting",
    "loss": "loss kernels (NLL, MSE, BCE, …)",
    "norm": "batch, layer and group norm, forward",
    "norm_backward": "batch, layer and group norm, backward",
    "pool": "max and average pooling, forward and backward",
    "resample": "upsampling and grid sampling",
    "gather": "embedding lookups, index_select, gather, indexing",
    "scatter": "embedding gradients, index_put, scatter, index_add",
    "copy": "copies, casts, concatenation, padding",
    "fill": "zeros, ones, full, arange",
    "random": "random numbers: dropout masks, bernoulli, normal",
    "foreach": "foreach and fused optimizer ops (a list of tensors per call)",
    "fft": "FFTs",
    "views": "views and metadata (dispatch only)",
    "collective": "c10d and functional collectives (priced as copies of their bytes)",
}

#: class → the work-bin numbers its time follows (module doc).
AXES: dict[str, tuple[str, ...]] = {
    **{c: ("flops", "bytes") for c in ("matmul", "bmm", "attention")},
    **{c: ("flops", "bytes", "positions") for c in ("conv", "conv_backward", "dwconv", "dwconv_backward")},
    "norm": ("bytes", "statistics", "positions"), "norm_backward": ("bytes", "statistics", "positions"),
    "rnn": ("macs", "bytes"), "foreach": ("tensors", "bytes"), "gather": ("bytes_out",), "views": (),
}
#: Axes that locate a call's shape rather than measure its work (not in its roofline time).
SHAPE_AXES = frozenset({"positions", "statistics"})
#: classes priced with another class's kernels.
PRICED_AS: dict[str, str] = {"collective": "copy"}
#: class of an op outside the table.
FALLBACK = "elementwise"

_Q = "quantized."
_TABLE: dict[str, str] = {
    "matmul": "mm addmm addmm_ _addmm_activation linear mv addmv addmv_ dot vdot addr addr_ ger outer "
              "_grouped_mm _scaled_mm quantized.linear quantized.linear_relu quantized.linear_dynamic "
              "quantized.linear_relu_dynamic",
    "bmm": "bmm baddbmm baddbmm_ addbmm addbmm_",
    "attention": "_scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_flash_attention "
                 "_scaled_dot_product_efficient_attention _scaled_dot_product_cudnn_attention "
                 "_flash_attention_forward _efficient_attention_forward _native_multi_head_attention "
                 "_transformer_encoder_layer_fwd _scaled_dot_product_flash_attention_for_cpu_backward "
                 "_scaled_dot_product_flash_attention_backward _scaled_dot_product_efficient_attention_backward "
                 "_scaled_dot_product_cudnn_attention_backward _flash_attention_backward "
                 "_efficient_attention_backward",
    "conv": "convolution _convolution convolution_overrideable conv1d conv2d conv3d _nnpack_spatial_convolution "
            "_slow_conv2d_forward cudnn_convolution cudnn_convolution_transpose miopen_convolution "
            "miopen_convolution_transpose miopen_depthwise_convolution mkldnn_convolution slow_conv3d "
            "slow_conv3d_forward slow_conv_dilated2d slow_conv_dilated3d slow_conv_transpose2d "
            "slow_conv_transpose3d thnn_conv2d _conv_depthwise2d conv_depthwise3d quantized.conv1d "
            "quantized.conv1d_relu quantized.conv2d quantized.conv2d_relu quantized.conv3d quantized.conv3d_relu "
            "quantized.conv_transpose1d quantized.conv_transpose2d quantized.conv_transpose3d",
    "conv_backward": "convolution_backward convolution_backward_overrideable _slow_conv2d_backward",
    "rnn": "mkldnn_rnn_layer mkldnn_rnn_layer_backward _cudnn_rnn _cudnn_rnn_backward miopen_rnn "
           "miopen_rnn_backward _thnn_fused_lstm_cell _thnn_fused_lstm_cell_backward "
           "_thnn_fused_lstm_cell_backward_impl _thnn_fused_gru_cell _thnn_fused_gru_cell_backward",
    "elementwise": "abs abs_ add add_ addcdiv addcdiv_ addcmul addcmul_ bitwise_and bitwise_and_ bitwise_not "
                   "bitwise_not_ bitwise_or bitwise_or_ bitwise_xor bitwise_xor_ ceil ceil_ clamp clamp_ clamp_max "
                   "clamp_max_ clamp_min clamp_min_ clip clip_ copysign div div_ eq eq_ floor floor_ floor_divide "
                   "floor_divide_ fmax fmin fmod fmod_ frac ge ge_ gt gt_ heaviside isfinite isinf isnan isneginf "
                   "isposinf le le_ lerp lerp_ logical_and logical_and_ logical_not logical_not_ logical_or "
                   "logical_or_ logical_xor logical_xor_ lt lt_ masked_fill masked_fill_ maximum minimum mul mul_ "
                   "nan_to_num nan_to_num_ ne ne_ neg neg_ negative reciprocal reciprocal_ remainder remainder_ "
                   "round round_ rsub sgn sgn_ sign sign_ signbit square sub sub_ subtract true_divide trunc "
                   "trunc_ where isin cross linalg_cross native_dropout_backward relu relu_ relu6 relu6_ threshold "
                   "threshold_ threshold_backward hardtanh hardtanh_ hardtanh_backward leaky_relu leaky_relu_ "
                   "leaky_relu_backward hardswish hardswish_ hardswish_backward hardsigmoid hardsigmoid_ "
                   "hardsigmoid_backward hardshrink hardshrink_backward softshrink softshrink_backward prelu "
                   "_prelu_kernel _prelu_kernel_backward sigmoid_backward tanh_backward quantized.add "
                   "quantized.add_out quantized.add_relu quantized.add_relu_out quantized.add_scalar "
                   "quantized.add_scalar_out quantized.add_scalar_relu quantized.add_scalar_relu_out quantized.mul "
                   "quantized.mul_out quantized.mul_relu quantized.mul_relu_out quantized.mul_scalar "
                   "quantized.mul_scalar_out quantized.mul_scalar_relu quantized.mul_scalar_relu_out "
                   "quantized.clamp quantized.relu6 quantized.threshold quantized.leaky_relu quantized.hardswish",
    "transcendental": "acos acosh asin asinh atan atan2 atanh cos cos_ cosh digamma erf erf_ erfc erfc_ erfinv exp "
                      "exp2 exp2_ exp_ expm1 expm1_ float_power hypot hypot_ lgamma log log10 log10_ log1p log1p_ "
                      "log2 log2_ log_ pow pow_ rsqrt rsqrt_ sin sin_ sinh sqrt sqrt_ tan xlogy xlogy_ angle "
                      "sigmoid sigmoid_ tanh tanh_ gelu gelu_ gelu_backward silu silu_ silu_backward mish mish_ "
                      "mish_backward elu elu_ elu_backward celu celu_ selu selu_ softplus softplus_backward logit "
                      "logit_ logit_backward log_sigmoid_forward log_sigmoid_backward glu glu_backward "
                      "quantized.sigmoid quantized.elu quantized.celu",
    "softmax": "_softmax _log_softmax _safe_softmax softmax log_softmax _softmax_backward_data "
               "_log_softmax_backward_data _masked_softmax _masked_softmax_backward logsumexp logcumsumexp "
               "quantized.softmax",
    "reduction": "all amax amin aminmax any argmax argmin count_nonzero cummax cummin cumprod cumprod_ cumsum "
                 "cumsum_ kthvalue linalg_vector_norm max mean median min mode nanmean nanmedian nansum norm prod "
                 "sort std std_mean sum topk var var_mean bincount histc argwhere nonzero nonzero_static _unique2 "
                 "unique_dim torchvision.nms _choose_qparams_per_tensor",
    "loss": "binary_cross_entropy binary_cross_entropy_backward binary_cross_entropy_with_logits huber_loss "
            "huber_loss_backward l1_loss mse_loss mse_loss_backward nll_loss nll_loss2d nll_loss2d_backward "
            "nll_loss2d_forward nll_loss_backward nll_loss_forward nll_loss_nd smooth_l1_loss smooth_l1_loss_backward "
            "_ctc_loss _ctc_loss_backward",
    "norm": "native_batch_norm _native_batch_norm_legit _native_batch_norm_legit_functional "
            "_native_batch_norm_legit_no_training cudnn_batch_norm miopen_batch_norm native_layer_norm "
            "native_group_norm _weight_norm_interface rms_norm _fused_rms_norm quantized_batch_norm "
            "quantized.batch_norm quantized.batch_norm1d quantized.batch_norm1d_relu quantized.batch_norm2d "
            "quantized.batch_norm2d_relu quantized.batch_norm3d quantized.batch_norm3d_relu "
            "quantized.batch_norm_relu quantized.layer_norm quantized.group_norm quantized.instance_norm",
    "norm_backward": "native_batch_norm_backward batch_norm_backward cudnn_batch_norm_backward "
                     "miopen_batch_norm_backward native_layer_norm_backward native_group_norm_backward "
                     "_weight_norm_interface_backward _fused_rms_norm_backward",
    "pool": "_adaptive_avg_pool2d _adaptive_avg_pool2d_backward _adaptive_avg_pool3d _adaptive_avg_pool3d_backward "
            "adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_avg_pool3d_backward "
            "adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool2d_backward adaptive_max_pool3d "
            "adaptive_max_pool3d_backward avg_pool1d avg_pool2d avg_pool2d_backward avg_pool3d avg_pool3d_backward "
            "fractional_max_pool2d fractional_max_pool2d_backward fractional_max_pool3d "
            "fractional_max_pool3d_backward max_pool1d max_pool1d_with_indices max_pool2d max_pool2d_with_indices "
            "max_pool2d_with_indices_backward max_pool3d max_pool3d_with_indices max_pool3d_with_indices_backward "
            "max_unpool2d max_unpool3d mkldnn_max_pool2d mkldnn_max_pool3d quantized_max_pool1d "
            "quantized_max_pool2d quantized_max_pool3d quantized.max_pool1d quantized.max_pool2d",
    "resample": "_grid_sampler_2d_cpu_fallback _grid_sampler_2d_cpu_fallback_backward _upsample_bicubic2d_aa "
                "_upsample_bicubic2d_aa_backward _upsample_bilinear2d_aa _upsample_bilinear2d_aa_backward "
                "_upsample_nearest_exact1d _upsample_nearest_exact1d_backward _upsample_nearest_exact2d "
                "_upsample_nearest_exact2d_backward _upsample_nearest_exact3d _upsample_nearest_exact3d_backward "
                "affine_grid_generator cudnn_grid_sampler cudnn_grid_sampler_backward grid_sampler_2d "
                "grid_sampler_2d_backward grid_sampler_3d grid_sampler_3d_backward upsample_bicubic2d "
                "upsample_bicubic2d_backward upsample_bilinear2d upsample_bilinear2d_backward upsample_linear1d "
                "upsample_linear1d_backward upsample_nearest1d upsample_nearest1d_backward upsample_nearest2d "
                "upsample_nearest2d_backward upsample_nearest3d upsample_nearest3d_backward upsample_trilinear3d "
                "upsample_trilinear3d_backward torchvision.roi_align torchvision._roi_align_backward",
    "gather": "embedding index_select gather index _unsafe_index _unsafe_masked_index take masked_select "
              "embedding_bag _embedding_bag _embedding_bag_forward_only",
    "scatter": "embedding_dense_backward embedding_backward embedding_sparse_backward _embedding_bag_backward "
               "_embedding_bag_dense_backward _embedding_bag_per_sample_weights_backward "
               "_embedding_bag_sparse_backward embedding_renorm_ _index_put_impl_ _unsafe_index_put "
               "_unsafe_masked_index_put_accumulate col2im index_add index_add_ index_put index_put_ index_reduce "
               "index_reduce_ put put_ scatter scatter_ scatter_add scatter_add_ scatter_reduce scatter_reduce_ "
               "unfold_backward reflection_pad1d_backward reflection_pad2d_backward reflection_pad3d_backward "
               "replication_pad1d_backward replication_pad2d_backward replication_pad3d_backward masked_scatter "
               "masked_scatter_ index_copy index_copy_ index_fill index_fill_ diagonal_scatter select_scatter "
               "slice_scatter as_strided_scatter",
    "copy": "_copy_from _copy_from_and_resize _to_copy to _pin_memory _reshape_copy alias_copy cat clone _chunk_cat "
            "fsdp.all_gather_copy_in fsdp.chunk_cat fsdp.copy_ fsdp.split_with_sizes_copy "
            "constant_pad_nd contiguous copy copy_ detach_copy diagonal_backward diagonal_copy expand_copy flip hstack "
            "vstack stack im2col lift_fresh_copy narrow_copy permute_copy pixel_shuffle pixel_unshuffle "
            "channel_shuffle native_channel_shuffle reflection_pad1d reflection_pad2d reflection_pad3d "
            "replication_pad1d replication_pad2d replication_pad3d pad repeat repeat_interleave tile roll rot90 "
            "select_backward select_copy slice_backward slice_copy split_copy split_with_sizes_copy squeeze_copy "
            "t_copy transpose_copy unbind_copy unfold_copy unsqueeze_copy view_copy tril tril_ triu triu_ "
            "_transform_bias_rescale_qkv quantize_per_tensor quantize_per_channel quantize_per_tensor_dynamic "
            "dequantize int_repr fake_quantize_per_channel_affine fake_quantize_per_tensor_affine quantized.cat "
            "quantized.cat_out quantized.cat_relu quantized.cat_relu_out",
    "fill": "arange eye fill fill_ full full_like linspace logspace new_full new_ones new_zeros ones ones_like "
            "scalar_tensor tril_indices triu_indices zero_ zeros zeros_like _efficientzerotensor",
    "random": "bernoulli bernoulli_ native_dropout cauchy_ exponential_ geometric_ log_normal_ normal normal_ rand "
              "rand_like randint randint_like randn randn_like random_ randperm uniform_ rrelu rrelu_ "
              "rrelu_with_noise rrelu_with_noise_ rrelu_with_noise_backward rrelu_with_noise_functional",
    "fft": "_fft_c2c _fft_c2r _fft_r2c",
    "views": "_assert_async _assert_scalar _assert_tensor_metadata _conj _functional_assert_async "
             "_has_compatible_shallow_copy_type _local_scalar_dense _make_dep_token _neg_view _reshape_alias "
             "_unsafe_view alias as_strided as_strided_ chunk conj detach detach_ diagonal empty empty_like "
             "empty_strided expand expand_as flatten is_same_size lift lift_fresh movedim narrow new_empty "
             "new_empty_strided permute record_stream reshape resize_ resize_as_ resolve_conj resolve_neg select "
             "set_ slice split split_with_sizes squeeze squeeze_ sym_constrain_range_for_size t t_ transpose "
             "transpose_ unbind unflatten unfold unsafe_split unsafe_split_with_sizes unsqueeze unsqueeze_ view "
             "view_as view_as_complex view_as_real profiler._record_function_enter "
             "_c10d_functional.wait_tensor _c10d_functional._wrap_tensor_autograd _dtensor.mesh_get_process_group "
             "mkldnn._is_mkldnn_fp16_supported "
             "profiler._record_function_enter_new profiler._record_function_exit torchvision._cuda_version "
             "q_per_channel_axis q_per_channel_scales q_per_channel_zero_points q_scale q_zero_point qscheme "
             "_empty_affine_quantized _empty_per_channel_affine_quantized _make_per_channel_quantized_tensor "
             "_make_per_tensor_quantized_tensor quantized.conv1d_prepack quantized.conv1d_unpack "
             "quantized.conv2d_dilation quantized.conv2d_groups quantized.conv2d_output_padding "
             "quantized.conv2d_padding quantized.conv2d_prepack quantized.conv2d_stride quantized.conv2d_transpose "
             "quantized.conv2d_unpack quantized.conv2d_unpack_sizes quantized.conv3d_prepack "
             "quantized.conv3d_unpack quantized.conv_transpose1d_prepack quantized.conv_transpose2d_prepack "
             "quantized.conv_transpose3d_prepack quantized.linear_prepack quantized.linear_prepack_fp16 "
             "quantized.linear_unpack quantized.linear_unpack_fp16",
}


def _qualified(name: str) -> str:
    return name if "." in name else f"aten.{name}"


#: op name (``"aten.mm"``, ``"quantized.linear"``, ``"c10d.allreduce_"``) → op class; foreach and
#: fused optimizer ops (``aten._foreach_*``, ``aten._fused_*``) and c10d collectives are matched by
#: their namespace or prefix in :func:`op_class`.
OP_CLASSES: dict[str, str] = {}
for _cls, _names in _TABLE.items():
    for _n in _names.split():
        _q = _qualified(_n)
        if _q in OP_CLASSES:
            raise AssertionError(f"{_q} is in two op classes: {OP_CLASSES[_q]} and {_cls}")
        OP_CLASSES[_q] = _cls
del _cls, _names, _n, _q

_DEPTHWISE = {"conv": "dwconv", "conv_backward": "dwconv_backward"}


def table_class(op: str) -> str | None:
    """The class the table gives the op ``op`` (``"aten.mm"``), or None when it has none."""
    cls = OP_CLASSES.get(op)
    if cls is not None:
        return cls
    if op.startswith(("aten._foreach_", "aten._fused_")):
        return "foreach"
    if op.startswith(("c10d.", "_c10d_functional.", "_c10d_functional_autograd.", "_dtensor.")):
        return "collective"
    return None


def op_class(op: str, attrs=None) -> str:
    """The op class of a call of ``op`` with the work-bin attributes ``attrs``: the table's class,
    ``dwconv``/``dwconv_backward`` for a depthwise convolution, :data:`FALLBACK` for an op outside
    the table (:func:`unclassified` lists those)."""
    if op.endswith(")"):  # "aten.mm (recompute)": the same kernel
        op = op.split(" (", 1)[0]
    cls = table_class(op)
    if cls is None:
        return FALLBACK
    if cls in _DEPTHWISE and attrs and attrs[0] == "depthwise":
        return _DEPTHWISE[cls]
    return cls


def unclassified(ops) -> list[str]:
    """The op names of ``ops`` the table has no class for (priced as :data:`FALLBACK`)."""
    out = []
    for op in ops:
        base = op.split(" (", 1)[0] if op.endswith(")") else op
        if table_class(base) is None:
            out.append(base)
    return sorted(set(out))


def axes_of(cls: str, bin_) -> tuple[float, ...]:
    """The numbers a call of class ``cls`` with the work bin ``bin_`` = (flops, bytes_in,
    bytes_out, attrs) is priced on (:data:`AXES`), each at least 1 (log scale)."""
    flops, b_in, b_out, attrs = bin_
    names = AXES.get(PRICED_AS.get(cls, cls), ("bytes",))
    out = []
    for name in names:
        if name == "flops":
            v = flops
        elif name == "bytes":
            v = b_in + b_out
        elif name == "bytes_out":
            v = b_out if b_out else b_in
        elif name in ("macs", "tensors", "statistics"):
            v = attrs[0] if attrs else 1
        elif name == "positions":
            at = 1 if cls.startswith("norm") else 4  # a norm's 2nd attribute, a convolution's 5th
            v = attrs[at] if attrs and len(attrs) > at and attrs[at] is not None else 1
        else:  # pragma: no cover - AXES names only the above
            raise AssertionError(name)
        out.append(max(float(v), 1.0))
    return tuple(out)


__all__ = ["CLASSES", "AXES", "SHAPE_AXES", "PRICED_AS", "FALLBACK", "OP_CLASSES", "op_class", "table_class", "unclassified",
           "axes_of"]
