"""A no-grad forward inside an open training step (a teacher's pass, an evaluation of the batch):
counted as its own ``inference`` record while the training step goes on.

The forward's counts go to a node under the cache's ``"inner"`` root, keyed by the forward
signature (cached only for a trusted model, whose forward is not traced); the engine and the
module hooks are switched on for it if the training step is not being counted, and off again by
a forward hook of the model's when it returns.
"""

from __future__ import annotations

from .._compat import global_module_hooks_set
from .cache import Node
from .hooks import ModuleHook

__all__ = ["inner_forward"]


def inner_forward(tracker, args, kwargs) -> None:
    """A no-grad forward inside an open training step: its own ``inference`` record (cached
    only for a trusted model: its forward is not traced)."""
    root = tracker.cache.roots["inner"]
    sig = tracker.signature(args, kwargs)
    cacheable = tracker.model_trusted and not global_module_hooks_set()
    node = tracker.cache.child(root, sig) if cacheable else None
    if node is not None:
        summary, _ = tracker.cache.summary(node)
        tracker.record(summary, "hit", None, False, None)
        return
    node = tracker.cache.new_child(root, sig) if cacheable else Node(sig, root)
    engine = tracker.engine
    scope = tracker.scope
    saved = (engine.counts, engine.unsupported, tracker.segment, scope.recording)
    engine.counts, engine.unsupported, tracker.segment = node.counts, node.unsupported, node
    scope.recording = None  # its module entries are not part of the step's timeline
    started_scope, started_engine = not tracker.scope_on, not tracker.engine_on
    tracker._start_counting()

    def done(module, a, k, out):
        tracing = tracker.tracing
        tracker.trace(False)
        tracker.inner_handle.remove()
        tracker.inner_handle = None
        if started_engine and tracker.engine_on:
            tracker.engine_on = False
            engine.__exit__(None, None, None)
        if started_scope and tracker.scope_on:  # the scope's post-hook ran before this one
            tracker.scope.detach()
            tracker.scope.forget_nodes()
            tracker.scope_on = False
        engine.counts, engine.unsupported, tracker.segment, recording = saved
        if tracker.scope_on:
            scope.recording = recording
        summary, new = tracker.cache.summary(node) if cacheable else \
            tracker.cache.intern(node.counts, node.unsupported, False)
        tracker.record(summary, "miss", None, new, None if cacheable else "untrusted model")
        tracker.trace(tracing)
        return None

    tracker.inner_handle = tracker.model.register_forward_hook(ModuleHook(done, tracker.scope.thread),
                                                               with_kwargs=True, always_call=True)

