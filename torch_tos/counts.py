"""The one typed representation of counts that every view reads: :class:`Counts`.

A :class:`Counts` table maps a :class:`CountKey` ``(layer, phase, dtype, op)`` — the finest grain
the engine produces — to a row of integers with the named fields :data:`FIELDS`:

* ``add, sub, mul, div, root`` — the paper's basic operations (BOs, Eq. 2);
* ``calls`` — how many times the aten op ran;
* ``flops`` — the ``torch.utils.flop_counter`` FLOPs of those calls (the baseline);
* ``bytes`` — Σ bytes of the op's tensor inputs and outputs (an *estimate* of data movement: it
  counts what the op reads and writes once each and ignores caches, re-reads and views).

Beside its totals, each row keeps the **work per call** its cost depends on (:attr:`Counts.work`):
a bounded histogram ``{(flops, bytes read, bytes written, attrs): calls}`` of its calls' distinct
work, ``attrs`` the op attributes recorded at count time (:mod:`torch_tos.opattrs`); bins merge
past a cap with the row's totals kept exact (:mod:`torch_tos.workbins`). A row added without one
has one bin, its mean per call (:meth:`Counts.work_of`).

Every view — report totals, per phase, per layer, per op, the text table, the DataFrame, the JSON,
the training counter's step records, the fx graph view — is a :meth:`Counts.group` over one table,
so all views agree by construction. Pricing into transistor operations is exact
(:class:`fractions.Fraction`) and done once per ``(group, dtype)`` from the summed integer BOs,
never once per row (:meth:`Counts.priced`).

The key's vocabulary — phase names and order, pseudo-layer names, how layer names fold and sort —
is :mod:`torch_tos.countkeys` (re-exported here).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Callable, Iterable

import torch

from .bos import BO_NAMES, BOs
from .countkeys import (KEY_FIELDS, LOSS_LAYER, MODEL_LAYER, OPTIMIZER_LAYER, OUTSIDE_LAYER,  # noqa: F401
                        PHASE_ORDER, PHASES, PSEUDO_LAYER_ORDER, RECOMPUTE_SUFFIX, CountKey,
                        fold_layer, is_pseudo_layer, is_recompute, layer_and_ancestors,
                        layer_sort_key, phase_sort_key)
from .workbins import WORK_BINS, WORK_FIELDS, _merge_hist, _per_call, cap_bins  # noqa: F401 - re-exported

#: The named integer fields of a row, in storage order.
FIELDS: tuple[str, ...] = (*BO_NAMES, "calls", "flops", "bytes")
N_BOS = len(BO_NAMES)
CALLS, FLOPS, BYTES = FIELDS.index("calls"), FIELDS.index("flops"), FIELDS.index("bytes")
_N = len(FIELDS)


class Counts:
    """A table of counts: :class:`CountKey` → integer row of :data:`FIELDS`, and each row's work
    per call (:attr:`work`).

    >>> c = Counts()
    >>> c.add(CountKey("fc", "forward", torch.float32, "aten.mm"), BOs(add=6, mul=8), flops=16)
    >>> c.add(CountKey("fc", "forward", torch.float32, "aten.mm"), BOs(add=6, mul=8), flops=16)
    >>> c.bos, c.calls, c.flops
    (BOs(add=12, sub=0, mul=16, div=0, root=0), 2, 32)
    >>> float(c.price())
    206612.0

    ``rows`` is the underlying ``dict`` (keys are plain tuples in :data:`KEY_FIELDS` order, values
    lists in :data:`FIELDS` order); ``work`` maps the same keys to their work histograms
    ``{(flops, bytes_in, bytes_out, attrs): calls}``. The engine writes both directly on its hot
    path. Tables are mutable only through :meth:`add` and :meth:`merge`; every other operation
    returns a new table.
    """

    __slots__ = ("rows", "work", "__weakref__")

    def __init__(self, rows: dict | None = None, work: dict | None = None):
        self.rows: dict[tuple, list[int]] = {}
        self.work: dict[tuple, dict[tuple, int]] = {}
        if rows:
            for key, row in rows.items():
                self.rows[key] = _full(row)
        if work:
            for key, hist in work.items():
                if key not in self.rows:
                    raise ValueError(f"work for {key!r}, which is not a row of the table")
                self.work[key] = dict(hist)

    # -- building ---------------------------------------------------------------------------
    def add(self, key: tuple, bos=(0, 0, 0, 0, 0), *, calls: int = 1, flops: int = 0,
            bytes: int = 0, work: dict | None = None) -> None:  # noqa: A002 - the field's name
        """Add ``calls`` calls with these totals to the row ``key``. ``work``: their histogram
        ``{(flops, bytes_in, bytes_out, attrs): calls}`` (default: one bin, the mean per call,
        every byte counted as read)."""
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [bos[0], bos[1], bos[2], bos[3], bos[4], calls, flops, bytes]
        else:
            for i in range(N_BOS):
                row[i] += bos[i]
            row[CALLS] += calls
            row[FLOPS] += flops
            row[BYTES] += bytes
        if work is None:
            if calls <= 0:
                return
            work = {(_per_call(flops, calls), _per_call(bytes, calls), 0, None): calls}
        _merge_hist(self.work, key, work, 1)

    def merge(self, other: "Counts", n: int = 1) -> "Counts":
        """Add ``n`` × ``other`` into this table (in place); returns ``self``."""
        rows = self.rows
        for key, src in other.rows.items():
            dst = rows.get(key)
            if dst is None:
                rows[key] = [v * n for v in src] if n != 1 else list(src)
            else:
                for i in range(_N):
                    dst[i] += src[i] * n
            _merge_hist(self.work, key, other.work_of(key), n)
        return self

    def __add__(self, other: "Counts") -> "Counts":
        if not isinstance(other, Counts):
            return NotImplemented
        return self.copy().merge(other)

    def scaled(self, n: int) -> "Counts":
        """A new table with every field (and every bin's calls) multiplied by the integer ``n``
        (n identical steps)."""
        out = Counts()
        out.rows = {k: [v * n for v in row] for k, row in self.rows.items()}
        out.work = {k: {b: c * n for b, c in h.items()} for k, h in self.work.items()}
        return out

    def retyped(self, dtype: torch.dtype) -> "Counts":
        """The table with every row's dtype replaced by ``dtype`` (rows that then share a key are
        added, with their work): what a "priced as ``dtype``" what-if reads."""
        out = Counts()
        for key, row in self.rows.items():
            layer, phase, _dt, op = key
            out.add((layer, phase, dtype, op), row[:N_BOS], calls=row[CALLS], flops=row[FLOPS],
                    bytes=row[BYTES], work=self.work_of(key))
        return out

    def copy(self) -> "Counts":
        out = Counts()
        out.rows = {k: list(row) for k, row in self.rows.items()}
        out.work = {k: dict(h) for k, h in self.work.items()}
        return out

    def clear(self) -> None:
        self.rows.clear()
        self.work.clear()

    # -- work per call ----------------------------------------------------------------------
    def work_of(self, key: tuple) -> dict[tuple, int]:
        """The work histogram ``{(flops, bytes_in, bytes_out, attrs): calls}`` of the row ``key``:
        the recorded one, or for a row recorded without one a single bin, its mean per call."""
        hist = self.work.get(key)
        if hist is not None:
            return hist
        row = self.rows[key]
        calls = row[CALLS]
        if calls <= 0:
            return {}
        return {(_per_call(row[FLOPS], calls), _per_call(row[BYTES], calls), 0, None): calls}

    def group_work(self, *by: str, depth: int | None = None) -> dict[tuple, dict[tuple, int]]:
        """The work histograms summed like :meth:`group` ``(*by)`` (bins past :data:`WORK_BINS`
        merge as in a row)."""
        idx = key_indices(by)
        fold = depth is not None and 0 in idx
        acc: dict[tuple, dict[tuple, int]] = {}
        for key in self.rows:
            k = (fold_layer(key[0], depth), *key[1:]) if fold else key
            _merge_hist(acc, tuple(k[i] for i in idx), self.work_of(key), 1)
        return acc

    # -- selecting --------------------------------------------------------------------------
    def where(self, keep: Callable[[CountKey], bool] | None = None, *,
              phases: Iterable[str] | None = None) -> "Counts":
        """The rows whose key passes ``keep`` (called with a :class:`CountKey`) and whose phase is
        in ``phases`` (when given), with their work."""
        phases = None if phases is None else frozenset(phases)
        out = Counts()
        for key, row in self.rows.items():
            if phases is not None and key[1] not in phases:
                continue
            if keep is not None and not keep(CountKey(*key)):
                continue
            out.rows[key] = list(row)
            hist = self.work.get(key)
            if hist is not None:
                out.work[key] = dict(hist)
        return out

    def group(self, *by: str, depth: int | None = None) -> dict[tuple, list[int]]:
        """Sum rows over everything but the key fields ``by`` (names from :data:`KEY_FIELDS`):
        ``{(values of by...): [add, sub, mul, div, root, calls, flops, bytes]}``. With ``depth``,
        layers are first folded to that depth (:func:`fold_layer`)."""
        key_indices(by)  # an unknown field is an error naming the accepted ones
        return regroup(self.rows, KEY_FIELDS, by, depth)

    # -- totals -----------------------------------------------------------------------------
    def total(self) -> list[int]:
        """Every field summed over the table, in :data:`FIELDS` order."""
        acc = [0] * _N
        for row in self.rows.values():
            for i in range(_N):
                acc[i] += row[i]
        return acc

    @property
    def bos(self) -> BOs:
        return BOs(*self.total()[:N_BOS])

    @property
    def calls(self) -> int:
        return sum(row[CALLS] for row in self.rows.values())

    @property
    def flops(self) -> int:
        return sum(row[FLOPS] for row in self.rows.values())

    @property
    def bytes(self) -> int:
        return sum(row[BYTES] for row in self.rows.values())

    @property
    def phases(self) -> list[str]:
        """The phases present, in :data:`PHASES` order."""
        return sorted({k[1] for k in self.rows}, key=phase_sort_key)

    # -- pricing ----------------------------------------------------------------------------
    def price(self, table=None, dtype: torch.dtype | None = None) -> Fraction:
        """Exact TOs of the whole table: BOs summed per dtype, each sum priced once with
        ``table`` (default :data:`~torch_tos.tables.DEFAULT_TABLE`); ``dtype`` prices every op in
        that format instead of its own (what-if)."""
        return sum(self.priced(table=table, dtype=dtype).values(), Fraction(0))

    def priced(self, *by: str, table=None, dtype: torch.dtype | None = None,
               depth: int | None = None) -> dict[tuple, Fraction]:
        """Exact TOs per group of :meth:`group` ``(*by)``: each ``(group, dtype)`` sum is priced
        once, then the dtypes of a group are added."""
        with_dtype = by if "dtype" in by else (*by, "dtype")
        return price_groups(self.group(*with_dtype, depth=depth), with_dtype, by, table=table,
                            dtype=dtype)

    # -- comparison and display -------------------------------------------------------------
    def __eq__(self, other) -> bool:
        if not isinstance(other, Counts) or self.rows != other.rows:
            return False
        return all(self.work_of(k) == other.work_of(k) for k in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __iter__(self):
        for key, row in self.rows.items():
            yield CountKey(*key), row

    def __repr__(self) -> str:
        t = self.total()
        return (f"Counts({len(self.rows)} rows, bos={BOs(*t[:N_BOS])}, calls={t[CALLS]}, "
                f"flops={t[FLOPS]}, bytes={t[BYTES]})")


def regroup(groups: dict[tuple, list[int]], by: tuple[str, ...], keep: tuple[str, ...],
            depth: int | None = None) -> dict[tuple, list[int]]:
    """Already grouped rows (:meth:`Counts.group` ``(*by)``) summed onto the fields ``keep`` (a
    subset of ``by``), layers folded to ``depth``: what ``Counts.group(*keep, depth=depth)``
    gives, from fewer rows."""
    idx = tuple(by.index(k) for k in keep)
    fold = depth is not None and "layer" in keep
    at = by.index("layer") if fold else -1
    acc: dict[tuple, list[int]] = {}
    for key, row in groups.items():
        if fold:
            key = (*key[:at], fold_layer(key[at], depth), *key[at + 1:])
        g = tuple(key[i] for i in idx)
        a = acc.get(g)
        if a is None:
            acc[g] = list(row)
        else:
            for i in range(_N):
                a[i] += row[i]
    return acc


def price_groups(groups: dict[tuple, list[int]], by: tuple[str, ...], keep: tuple[str, ...],
                 *, table=None, dtype: torch.dtype | None = None) -> dict[tuple, Fraction]:
    """Exact TOs of already grouped rows: ``groups`` is :meth:`Counts.group` ``(*by)`` with
    ``"dtype"`` among ``by``; each group is priced once in its dtype (or in ``dtype`` when given),
    then summed onto its key restricted to the fields ``keep`` (a sub-sequence of ``by``)."""
    from .tables import DEFAULT_TABLE

    table = table or DEFAULT_TABLE
    d_at = by.index("dtype")
    pick = None if keep == by else tuple(by.index(k) for k in keep)
    out: dict[tuple, Fraction] = {}
    for g, row in groups.items():
        tos = price_bos(table, row, dtype if dtype is not None else g[d_at])
        if pick is not None:
            g = tuple(g[i] for i in pick)
        prev = out.get(g)
        out[g] = tos if prev is None else prev + tos
    return out


def price_bos(table, bos, dtype) -> Fraction:
    """Exact TOs of the integer BOs ``bos`` (the first five fields of a row) in ``dtype``; a dtype
    the table cannot price (e.g. a quantized format) is an error naming it.

    The five costs are exact fractions; they are brought to one common denominator once per
    ``(table, dtype)`` so pricing a row is integer arithmetic and one :class:`Fraction`."""
    nums, den = _integer_costs(table, dtype)
    return Fraction(bos[0] * nums[0] + bos[1] * nums[1] + bos[2] * nums[2] + bos[3] * nums[3]
                    + bos[4] * nums[4], den)


def _integer_costs(table, dtype) -> tuple[tuple[int, ...], int]:
    try:
        return _integer_costs_cached(table, dtype)
    except TypeError:  # an unhashable table-like object: no cache
        return _common_denominator(table.costs(dtype))


@lru_cache(maxsize=512)
def _integer_costs_cached(table, dtype):
    return _common_denominator(table.costs(dtype))


def _common_denominator(costs) -> tuple[tuple[int, ...], int]:
    costs = [Fraction(c) for c in costs]
    den = 1
    for c in costs:
        den = den * c.denominator // math.gcd(den, c.denominator)
    return tuple(int(c * den) for c in costs), den


def _full(row) -> list[int]:
    row = list(row)
    if len(row) > _N:
        raise ValueError(f"a counts row has at most {_N} fields ({', '.join(FIELDS)}), got {len(row)}")
    return row + [0] * (_N - len(row))


def key_indices(by: tuple[str, ...]) -> tuple[int, ...]:
    try:
        return tuple(KEY_FIELDS.index(b) for b in by)
    except ValueError:
        bad = [b for b in by if b not in KEY_FIELDS]
        raise ValueError(f"unknown key field {bad[0]!r}; accepted: {', '.join(KEY_FIELDS)}") from None
