"""Hugging Face ``transformers`` on the meta device: its data-dependent mask decisions, while an Engine is open.

transformers' attention-mask helpers (``transformers.masking_utils``) look at the *values* of
small tensors to choose between equivalent code paths: ``find_packed_sequence_indices`` checks
whether ``position_ids`` hold several packed sequences, ``_ignore_causal_mask_sdpa`` /
``_ignore_bidirectional_mask_sdpa`` / ``flash_attention_mask`` check whether the attention mask
pads anything. Each test is a Python ``if`` on a tensor (``bool(tensor)``), which a meta tensor
cannot answer (``Tensor.item() cannot be called on meta tensors``: ``LlamaForCausalLM`` with
``use_cache=False``, Mistral, Qwen2, ...).

The adaptation, and all of it:

- While a counting :class:`~torch_tos.counter.Engine` is open in a thread, ``bool()`` or
  ``.item()`` of a *meta* tensor called *from code of* ``transformers.masking_utils`` is ``True``
  in that thread — the answer for example inputs: no packed sequences, no padding (an all-ones or
  absent ``attention_mask``, ``position_ids`` counting up); called from
  ``PreTrainedModel.warn_if_padding_and_no_attention_mask`` it is ``False`` (no pad token at the
  ends of the ids: no warning). The table is :data:`ASSUMED`. The ops those helpers run before
  deciding still run and are counted, and the value is read with the same one
  ``aten._local_scalar_dense`` a real run books, so the counts equal a real run on such inputs.
- The truth value of meta tensors anywhere else, of real tensors, and in other threads is
  unchanged. A meta tensor's value needed elsewhere (e.g. wav2vec2's ``labels.max() >=
  vocab_size`` check before its CTC loss, whose cost depends on the label values) raises a
  ``RuntimeError`` naming the file and line, and saying to count on a real device instead.
- It registers itself, when imported, as a meta adaptation of the engine
  (:func:`torch_tos.kernels.register_meta_adaptation`), so every counting context — every Engine,
  :func:`torch_tos.flops.flop_counter` — enters it; the package root asks the engine to import
  this module when a counting context opens after ``transformers.masking_utils`` was imported
  (:func:`torch_tos.kernels.autoload_meta_adaptation`). It is installed (``torch.Tensor.__bool__``
  and ``.item`` wrapped) when the first Engine of the process opens and only if
  ``transformers.masking_utils`` has been imported, and removed when the last one closes: outside
  an Engine nothing of torch or transformers is changed.

Masks with real padding or packed sequences on meta would be counted as unpadded: count those on
a real device (a small config is enough — the counts scale with shapes only). The same holds for
the prefill of a static cache (``kv_length > q_length`` with ``q_offset == 0``), where one of these
checks asks whether the *future* positions are masked.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager

import torch

from .._compat import disable_current_modes, disable_torch_function
from ..kernels import STANDS_FOR, MetaValueError, register_meta_adaptation  # noqa: F401


MASKING_MODULE = "transformers.masking_utils"

_local = threading.local()
_lock = threading.Lock()
_installed = {"count": 0, "own": set()}


#: (module, function, or None for every function of the module) → the truth value taken for a
#: meta tensor tested there, and what it stands for
ASSUMED = {
    ("transformers.masking_utils", None): True,  # no packed sequences, no padding in the mask
    ("transformers.modeling_utils", "warn_if_padding_and_no_attention_mask"): False,  # no pad token
}


def _active() -> bool:
    return getattr(_local, "depth", 0) > 0


def _caller(depth: int = 2):
    """The first frame outside torch's own code that asked for the value (``depth``: frames
    between this function and the wrapper's caller)."""
    frame = sys._getframe(depth)
    for _ in range(4):
        if not frame.f_globals.get("__name__", "").startswith("torch.") or frame.f_back is None:
            break
        frame = frame.f_back
    return frame


def _assumed(self, frame):
    module = frame.f_globals.get("__name__", "")
    for key in ((module, frame.f_code.co_name), (module, None)):
        if key in ASSUMED:
            value = ASSUMED[key]
            # the real run reads the value with one aten._local_scalar_dense: book the same op
            with disable_current_modes():
                stand_in = torch.full(self.shape, value, dtype=self.dtype)
            return torch.ops.aten._local_scalar_dense.default(stand_in)
    if self.numel() == 1:
        raise MetaValueError(
            f"torch_tos: {frame.f_code.co_filename}:{frame.f_lineno} needs the value of a meta tensor "
            "(data-dependent control flow); counting on meta cannot decide it: count on a real "
            "device (a small config gives the same per-shape counts)")
    return None


_no_torch_function = disable_torch_function


def _meta_value(self):
    """The assumed value of ``self`` (None: ask the original method). Run with torch-function
    handling off: the wrapper is the counter's code, so its reads of ``.device``, ``.shape`` …
    must not reach a ``TorchFunctionMode`` of the loop (TOsCounter's tracer would record them as
    calls of the step only while an Engine is open, and a replayed step would then differ)."""
    with _no_torch_function():
        if not (_active() and self.is_meta):
            return None
        return _assumed(self, _caller(3))


def _meta_bool(self):
    value = _meta_value(self)
    if value is not None:
        return bool(value)
    return _originals["__bool__"](self)


def _meta_item(self):
    value = _meta_value(self)
    if value is not None:
        return value
    return _originals["item"](self)


_WRAPPERS = {"__bool__": _meta_bool, "item": _meta_item}
_originals: dict = {}
# While installed, torch hands a ``TorchFunctionMode`` the wrapper as the function of ``t.item()``
# / ``bool(t)`` (it looks the method up on the class): ``STANDS_FOR`` (the engine's table of
# wrapper → the method it stands in for) lets a mode that keys calls by function (TOsCounter's
# tracer) map it back, so that a call is the same event with and without an open Engine.


def _install() -> None:
    with _lock:
        if _installed["count"] == 0:
            _installed["own"] = {name for name in _WRAPPERS if name in torch.Tensor.__dict__}
            for name, wrapper in _WRAPPERS.items():
                _originals[name] = getattr(torch.Tensor, name)
                STANDS_FOR[wrapper] = _originals[name]
                setattr(torch.Tensor, name, wrapper)
        _installed["count"] += 1


def _uninstall() -> None:
    with _lock:
        _installed["count"] -= 1
        if _installed["count"] == 0:
            for name in _WRAPPERS:
                if name in _installed["own"]:
                    setattr(torch.Tensor, name, _originals[name])
                else:
                    delattr(torch.Tensor, name)
            # _originals is kept: another thread may be inside a wrapper it fetched just before


@contextmanager
def masking_on_meta():
    """The adaptation described in the module doc, for the body of the ``with`` in this thread.

    A no-op when ``transformers.masking_utils`` has not been imported (then no model of
    transformers can be running)."""
    if MASKING_MODULE not in sys.modules:
        yield
        return
    _install()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1
        _uninstall()


def installed() -> bool:
    """Whether ``torch.Tensor.__bool__``/``item`` are wrapped now (by some thread's open Engine)."""
    return _installed["count"] > 0


register_meta_adaptation("transformers", masking_on_meta)
