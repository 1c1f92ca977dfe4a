"""Undo a profiled step's in-place writes to the tensors it shares with the user's model.

:func:`torch_tos.profile` shares the model's parameters (and eval-mode buffers) read-only instead
of copying them (:mod:`torch_tos.workspace`). A forward that writes one of them in place — weight
clipping (``self.weight.data.clamp_(-c, c)``), a weight normalised in ``forward``, a buffer a
custom module updates in eval mode — would change the user's model. The counting engine, which
sees every aten op of the step, hands each op to the step's :class:`WriteGuard`
(``Engine.write_guard``) before it runs: before the *first* write to a region of a shared
tensor's storage (an argument the op's schema marks as written: ``clamp_``, ``copy_``, ``out=``,
``_foreach_*_``) the guard saves a copy of that region, and :meth:`WriteGuard.restore` puts every
saved region back after the step, newest first (so overlapping regions end with their first
values). Only what is written is copied, and only while the step runs: a model that never writes
its weights costs no copy; one that clips every weight holds one copy of those weights during the
step. Meta tensors hold no values and are not watched. Riding on the engine's own per-op call
(rather than a dispatch mode of its own) keeps the check to a dictionary lookup per op.
"""

from __future__ import annotations

import torch

from ._compat import disable_current_modes


def _written_arguments(func) -> tuple:
    """Positions and names of the arguments ``func``'s schema marks as written (``Tensor(a!)``)."""
    schema = getattr(func, "_schema", None)
    if schema is None:
        return ()
    out = []
    for i, arg in enumerate(schema.arguments):
        info = arg.alias_info
        if info is not None and info.is_write:
            out.append((i, arg.name, arg.kwarg_only))
    return tuple(out)


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, torch.Tensor):
                yield v


def _watchable(t: torch.Tensor) -> bool:
    return (t.device.type != "meta" and t.layout == torch.strided and not t.is_nested
            and t.untyped_storage().nbytes() > 0)


class WriteGuard:
    """Saves each region of the ``shared`` tensors' storages before the step first writes it
    (:meth:`check`, called by the engine before each op); :meth:`restore` puts them back (module
    doc)."""

    def __init__(self, shared):
        self._storages = {t.untyped_storage().data_ptr() for t in shared
                          if isinstance(t, torch.Tensor) and _watchable(t)}
        self._written: dict = {}  # func → its written arguments
        self._seen: set = set()
        self._saved: list[tuple[torch.Tensor, torch.Tensor]] = []  # (view of the region, its old values)

    @property
    def watching(self) -> bool:
        return bool(self._storages)

    def check(self, func, args, kwargs) -> None:
        """Save what ``func(*args, **kwargs)`` is about to write of the shared tensors."""
        written = self._written.get(func)
        if written is None:
            written = self._written[func] = _written_arguments(func)
        for i, name, kwarg_only in written:
            value = kwargs.get(name) if kwarg_only or i >= len(args) else args[i]
            for t in _tensors(value):
                self._save(t)

    def _save(self, t: torch.Tensor) -> None:
        if not _watchable(t):
            return
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self._storages:
            return
        key = (ptr, t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if key in self._seen:
            return
        self._seen.add(key)
        with disable_current_modes(), torch.no_grad():  # bookkeeping, never counted
            view = torch.empty(0, dtype=t.dtype, device=t.device).set_(storage, t.storage_offset(), t.size(),
                                                                        t.stride())
            self._saved.append((view, view.clone()))

    def restore(self) -> set[int]:
        """Put back every saved region (newest first); returns the storages' data pointers."""
        restored = set()
        with disable_current_modes(), torch.no_grad():
            for view, old in reversed(self._saved):
                view.copy_(old)
                restored.add(view.untyped_storage().data_ptr())
        self._saved.clear()
        self._seen.clear()
        return restored


__all__ = ["WriteGuard"]
