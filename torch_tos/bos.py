"""The basic-operation (BO) vector of the paper: counts of add, sub, mul, div, root.

The paper (Li, Tsourdos & Guo 2024, Eq. 2) describes every layer's work as a list
``[n_add, n_sub, n_mul, n_div, n_root]`` in that fixed order. :class:`BOs` is that list as an
immutable value: exact Python integers, element-wise ``+``/``-``, scaling by an integer, and
access both by attribute (``bos.mul``) and by name or position (``bos["mul"]``, ``bos[2]``).
"""

from __future__ import annotations

import operator
from typing import NamedTuple

#: The five categories in the paper's order.
BO_NAMES: tuple[str, ...] = ("add", "sub", "mul", "div", "root")


class _BOFields(NamedTuple):
    add: int = 0
    sub: int = 0
    mul: int = 0
    div: int = 0
    root: int = 0


class BOs(_BOFields):
    """Counts of the five basic operations: ``BOs(add, sub, mul, div, root)``.

    >>> BOs(add=5, mul=4) + BOs(sub=1)
    BOs(add=5, sub=1, mul=4, div=0, root=0)
    >>> (BOs(add=1, root=1) * 3)["root"]
    3

    Counts are non-negative integers: ``BOs(add=-1)`` or ``BOs(mul=1.5)`` is an error (a
    difference ``a - b`` must not go below zero either).
    """

    __slots__ = ()

    def __new__(cls, add=0, sub=0, mul=0, div=0, root=0):
        if type(add) is not int or type(sub) is not int or type(mul) is not int \
                or type(div) is not int or type(root) is not int:
            add, sub, mul, div, root = (_count(v) for v in (add, sub, mul, div, root))
        if add < 0 or sub < 0 or mul < 0 or div < 0 or root < 0:
            raise ValueError(f"basic-operation counts cannot be negative, got add={add}, sub={sub}, "
                             f"mul={mul}, div={div}, root={root}")
        return tuple.__new__(cls, (add, sub, mul, div, root))

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, BO_NAMES.index(key))
            except ValueError:
                raise KeyError(f"unknown basic operation {key!r}; expected one of {', '.join(BO_NAMES)}") from None
        return tuple.__getitem__(self, key)

    def __add__(self, other):  # type: ignore[override]
        if not isinstance(other, tuple) or len(other) != 5:
            return NotImplemented
        a0, a1, a2, a3, a4 = tuple.__iter__(self)
        b0, b1, b2, b3, b4 = tuple.__iter__(other)
        return BOs(a0 + b0, a1 + b1, a2 + b2, a3 + b3, a4 + b4)

    __radd__ = __add__

    def __sub__(self, other):
        if not isinstance(other, tuple) or len(other) != 5:
            return NotImplemented
        a0, a1, a2, a3, a4 = tuple.__iter__(self)
        b0, b1, b2, b3, b4 = tuple.__iter__(other)
        return BOs(a0 - b0, a1 - b1, a2 - b2, a3 - b3, a4 - b4)

    def __mul__(self, k):  # type: ignore[override]
        if isinstance(k, bool) or not isinstance(k, int):
            return NotImplemented
        a0, a1, a2, a3, a4 = tuple.__iter__(self)
        return BOs(k * a0, k * a1, k * a2, k * a3, k * a4)

    __rmul__ = __mul__

    @property
    def total(self) -> int:
        """All basic operations together (a plain operation count)."""
        return sum(tuple.__iter__(self))

    def to_dict(self) -> dict[str, int]:
        return dict(zip(BO_NAMES, tuple.__iter__(self)))

    def __bool__(self) -> bool:
        return any(tuple.__iter__(self))


def _count(value) -> int:
    """An integer count (``int``, numpy or torch integer, ``True`` is refused), else a TypeError."""
    if isinstance(value, bool):
        raise TypeError(f"a basic-operation count must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"a basic-operation count must be an integer, got {type(value).__name__} "
                        f"{value!r}") from None


ZERO = BOs()
