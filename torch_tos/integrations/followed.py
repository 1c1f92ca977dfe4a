"""Methods of an engine followed while a counter is active — the one place torch_tos sets
attributes on a user's object.

Some training engines own their optimizer step and offer no hook to see it (DeepSpeed's
``engine.step()``: :mod:`torch_tos.integrations.deepspeed`). :class:`FollowedMethods` puts an
instance attribute over each such method, a :class:`FollowedMethod` that calls
``wrapper(obj, call, *args, **kwargs)`` — ``call`` being what the attribute ran before: the
class's method, or the user's own instance attribute — and :meth:`FollowedMethods.remove` puts
back exactly what was there (the attribute deleted, or the user's own value restored), also
when the loop raised. It is made so that nothing else can tell:

* the stand-in answers as the method it follows: ``__name__``, ``__doc__``, ``__self__``,
  ``__func__``, ``__wrapped__`` (so ``inspect.signature`` gives the method's signature) and its
  ``repr`` are the method's;
* a deep copy or a pickle of the object gets its own method back (the class's, bound to the
  copy, or a copy of the user's instance attribute), never the stand-in;
* an attribute the user sets over the stand-in while the counter runs is left as the user set
  it (the stand-in it may wrap only calls through once the counter has exited);
* what the wrappers mark is their business: the counter's marks act only in its own thread, so
  other threads' calls only call through.
"""

from __future__ import annotations

import weakref
from typing import Callable

__all__ = ["FollowedMethod", "FollowedMethods"]


class FollowedMethods:
    """Instance attributes over the methods ``wrappers`` names on ``obj`` (module doc).
    ``wrappers[name](obj, call, *args, **kwargs)`` runs in place of ``obj.name(*args, **kwargs)``.
    """

    def __init__(self, obj, wrappers: dict[str, Callable]):
        self._obj = weakref.ref(obj)
        self._wrappers = dict(wrappers)
        own = vars(obj)
        self._saved = {name: (name in own, own.get(name)) for name in self._wrappers}
        self._calls = {name: getattr(obj, name) for name in self._wrappers}  # what they ran until now
        for name in self._wrappers:
            object.__setattr__(obj, name, FollowedMethod(self, name))

    def call(self, name: str, args, kwargs):
        obj = self._obj()
        if obj is None:  # pragma: no cover - a method outliving its object
            return self._calls[name](*args, **kwargs)
        return self._wrappers[name](obj, self._calls[name], *args, **kwargs)

    def remove(self) -> None:
        """Put back what each attribute was, unless the user replaced the stand-in since."""
        obj = self._obj()
        if obj is None:
            return
        own = vars(obj)
        for name, (had, previous) in self._saved.items():
            current = own.get(name)
            if not (isinstance(current, FollowedMethod) and current.followed is self):
                continue  # replaced since: leave it
            if had:
                object.__setattr__(obj, name, previous)
            else:
                object.__delattr__(obj, name)


def _same(value):
    return value


class FollowedMethod:
    """One followed method on the object (see :class:`FollowedMethods` and the module doc)."""

    __slots__ = ("followed", "name")

    def __init__(self, followed: FollowedMethods, name: str):
        self.followed, self.name = followed, name

    def __call__(self, *args, **kwargs):
        return self.followed.call(self.name, args, kwargs)

    @property
    def __wrapped__(self):
        return self.followed._calls[self.name]

    @property
    def __doc__(self):  # noqa: D105 - the followed method's
        return getattr(self.followed._calls[self.name], "__doc__", None)

    def __getattr__(self, attr):  # __name__, __qualname__, __self__, __func__, … of the method
        return getattr(self.followed._calls[self.name], attr)

    def __repr__(self) -> str:
        return repr(self.followed._calls[self.name])

    def __reduce_ex__(self, protocol):
        """Copies and pickles of the object get their own method back, never this stand-in."""
        had, previous = self.followed._saved[self.name]
        if had:
            return _same, (previous,)
        obj = self.followed._obj()
        return getattr, (obj, self.name)
