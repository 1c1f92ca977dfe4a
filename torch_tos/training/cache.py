"""The signature cache: a trie of step *events*, each node holding the counts of its segment.

A step is a sequence of events — a forward of the model (keyed by its forward signature, see
:mod:`.signature`), the start of ``optimizer.step()`` (keyed by the optimizer signature), … —
and every op that runs belongs to the segment of the last event before it. The cache stores each
sequence seen as a path from the root; a node keeps the :class:`~torch_tos.counts.Counts` of its
own segment only, so the counts of any prefix of a path are exact. A step walks the trie event by
event; while its events are found it runs with no interception at all, and at the first event
that is not found the engine starts and counts from there (a new branch). A step's counts are the
sum of the segments along its path (:meth:`StepCache.summary`, built once per end node).

A counted node also keeps what a later step needs to take over from it exactly when it leaves
the cache right after it (:meth:`~.hooks.CounterScope.resume`): the layer that claimed each
autograd node in its segment (``claims``, by sequence number relative to the step's start) and
the module stack at each module entry and exit (``marks``).

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
    and ``unsupported`` ops of its segment, the ``summary`` of a step ending here, and for the
    segment's counted run ``claims`` (``[(key, layer)]``: an autograd node's sequence number
    relative to the step's first, or a gradient accumulator's negative key), ``marks``
    (``[(claims so far, module stack, frames)]`` at the segment's start and after each module
    entry or exit) and ``exact`` (False when its claims cannot be taken over: a module claimed a
    node made before the step, or the run itself was coarse). ``shortcuts``: after a forward,
    the key of the loop's code up to ``optimizer.step()`` read from its frame → the node the
    traced events of that code led to (see :mod:`.stretch`)."""

    __slots__ = ("key", "parent", "children", "counts", "unsupported", "summary", "volatile",
                 "claims", "marks", "exact", "shortcuts")

    def __init__(self, key=None, parent: "Node | None" = None):
        self.key = key
        self.parent = parent
        self.children: dict = {}
        self.counts = Counts()
        self.unsupported: dict = {}
        self.summary: Summary | None = None
        self.volatile: str | None = None  # why this segment must be counted every time
        self.claims: list | None = None
        self.marks: list | None = None
        self.exact = True
        self.shortcuts: dict | None = None

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
        self.generation = 0  # counts replacements of nodes (shortcuts over them are re-checked)

    def child(self, node: Node, key) -> Node | None:
        """The cached node for event ``key`` after ``node`` (None: not seen, volatile, or cache
        off)."""
        if not self.enabled:
            return None
        child = node.children.get(key)
        return child if child is None or child.volatile is None else None

    def why_not(self, node: Node, key, full: bool = False) -> str:
        """Why event ``key`` after ``node`` is counted (for the step record)."""
        if not self.enabled:
            return "cache=False"
        if full:
            return "counted in full after a partial step (exact layer attribution)"
        child = node.children.get(key)
        if child is not None and child.volatile:
            return child.volatile
        if node.parent is None:  # a step's first event: (event key, state at the step's start)
            if not node.children:
                return "first step"
            key, state = key
            seen = [s for k, s in node.children if k == key]
            if seen and state is not None:
                if any(s is not None and s[0] == state[0] for s in seen):
                    return "optimizer state at the step's start differs from every counted step"
                return "parameter gradients at the step's start differ from every counted step"
            if _ddp_differs(key, [k for k, _ in node.children]):
                return _DDP
        elif _ddp_differs(key, list(node.children)):
            return _DDP
        if callable(key[0]):  # a torch call seen by the tracer: (function, *argument signatures)
            f = key[0]
            name = getattr(f, "__name__", None) or str(f)
            last = key[-1]
            if type(last) is tuple and last[:1] == ("ddp communication hook",) and \
                    any(len(k) == len(key) and k[:-1] == key[:-1] for k in node.children):
                # a DDP backward (its last part is the communication hook's state) seen with
                # another hook state
                return ("the state of DistributedDataParallel's communication hook differs from "
                        "every counted step (e.g. PowerSGD leaving its warm-up)")
            return f"call sequence differs at {name}"
        if key[0] == "optimizer":
            return "optimizer signature not seen"
        return "forward signature not seen" if node.parent is None else "forward sequence differs"

    def new_child(self, node: Node, key) -> Node:
        """A node for an event being counted, kept in the trie when the cache is on. A node that
        is there already (a step counted in full over a known path, or a volatile segment) is
        replaced: the new one takes over its continuations, whose summaries are rebuilt."""
        child = Node(key, node)
        if self.enabled:
            old = node.children.get(key)
            if old is not None:
                self.generation += 1
            if old is not None and old.children:
                child.children = old.children
                todo = list(old.children.values())
                for c in todo:
                    c.parent = child
                while todo:
                    n = todo.pop()
                    n.summary = None
                    todo.extend(n.children.values())
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


_DDP = ("DistributedDataParallel's state differs from every counted step (its first forward, "
        "bucket rebuild, no_sync() or communication hook)")


def _ddp_differs(key, seen) -> bool:
    """``key`` is a forward event of a DDP model (signature, trusted, DDP state) whose signature
    was seen with another DDP state."""
    return (isinstance(key, tuple) and len(key) == 3 and not callable(key[0]) and key[0] != "optimizer"
            and any(isinstance(k, tuple) and len(k) == 3 and k[:2] == key[:2] for k in seen))
