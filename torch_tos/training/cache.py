"""The signature cache: a trie of step *events*, each node holding the counts of its segment.

A step is a sequence of events — a forward of the model (keyed by its forward signature, see
:mod:`.signature`), the start of ``optimizer.step()`` (keyed by the optimizer signature), … —
and every op that runs belongs to the segment of the last event before it. The cache stores each
sequence seen as a path from the root; a node keeps the :class:`~torch_tos.counts.Counts` of its
own segment only, so the counts of any prefix of a path are exact. A step walks the trie event by
event; while its events are found it runs with no interception at all, and at the first event
that is not found the engine starts and counts from there (a new branch). A step's counts are the
sum of the segments along its path (:meth:`StepCache.summary`, built once per end node).

With ``cache=False`` every step is counted and its nodes are not kept in the trie; the step's
summary is still shared with every earlier step whose table of counts is identical
(:meth:`StepCache.intern`), so memory stays O(distinct step kinds) in both modes.
"""

from __future__ import annotations

from ..counts import Counts
from .records import Summary

__all__ = ["Node", "StepCache"]


class Node:
    """One event of a cached sequence: ``children`` (event key → :class:`Node`), the ``counts``
    and ``unsupported`` ops of its segment, and the ``summary`` of a step ending here."""

    __slots__ = ("key", "parent", "children", "counts", "unsupported", "summary")

    def __init__(self, key=None, parent: "Node | None" = None):
        self.key = key
        self.parent = parent
        self.children: dict = {}
        self.counts = Counts()
        self.unsupported: dict = {}
        self.summary: Summary | None = None

    def path(self) -> list["Node"]:
        """The nodes from the first event to this one."""
        out, node = [], self
        while node.parent is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out


class StepCache:
    """Roots of the trie (``"step"`` for steps, ``"inner"`` for no-grad forwards inside a
    training step) and the summaries, priced with ``table`` and the ``dtype`` override."""

    def __init__(self, enabled: bool, table, dtype):
        self.enabled = enabled
        self.table, self.dtype = table, dtype
        self.roots = {"step": Node(), "inner": Node()}
        self._by_content: dict = {}

    def child(self, node: Node, key) -> Node | None:
        """The cached node for event ``key`` after ``node`` (None: not seen, or cache off)."""
        return node.children.get(key) if self.enabled else None

    def new_child(self, node: Node, key) -> Node:
        """A node for an event being counted, kept in the trie when the cache is on."""
        child = Node(key, node)
        if self.enabled:
            node.children[key] = child
        return child

    def summary(self, node: Node, decoding: bool = False) -> tuple[Summary, bool]:
        """The summary of a step that ended at ``node`` and whether it is new (never recorded)."""
        if node.summary is not None:
            return node.summary, False
        counts, unsupported = Counts(), {}
        for n in node.path():
            counts.merge(n.counts)
            for k, v in n.unsupported.items():
                unsupported[k] = unsupported.get(k, 0) + v
        summary, new = self.intern(counts, unsupported, decoding)
        if self.enabled:
            node.summary = summary
        return summary, new

    def intern(self, counts: Counts, unsupported: dict, decoding: bool) -> tuple[Summary, bool]:
        """The shared summary of these counts (a new one the first time they are seen)."""
        key = (tuple([(k, tuple(v)) for k, v in counts.rows.items()]),
               tuple(unsupported.items()), decoding)
        hit = self._by_content.get(key)
        if hit is not None:
            return hit, False
        summary = self._by_content[key] = Summary(counts, unsupported, self.table, self.dtype, decoding)
        return summary, True
