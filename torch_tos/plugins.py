"""Registrations made by integrations, and the integrations to import when their library is.

The core imports no integration. An integration registers what it adds when it is imported
(:meth:`Plugins.register`); the package declares, as strings, which module registers for which
library (:meth:`Plugins.autoload`), and :meth:`Plugins.current` imports those whose library has
been imported by then — so ``import torch_tos`` never imports transformers or DeepSpeed, and a
user who imported them gets their integration without asking. Two registries use it: the meta
adaptations a counting context enters (:mod:`torch_tos.kernels`) and the step adapters a
training counter follows (:mod:`torch_tos.training.adapters`).
"""

from __future__ import annotations

import importlib
import sys


class Plugins:
    """``name → item`` registered by integrations, and ``library → module`` to import on use.

    ``what`` names an item in errors; ``needs`` lists the methods an item must have (none: the
    item itself must be callable, ``expects`` saying what it should return). An item is checked
    once, when it is registered, and trusted from then on."""

    def __init__(self, what: str, needs: tuple[str, ...] = (), expects: str = ""):
        self.what, self.needs, self.expects = what, needs, expects
        self.items: dict[str, object] = {}
        self.pending: dict[str, str] = {}

    def check(self, name: str, item) -> None:
        """A one-line ``TypeError`` naming what ``item`` lacks."""
        if not self.needs:
            if not callable(item):
                raise TypeError(f"{self.what} {name!r} must be a callable{self.expects}, got "
                                f"{type(item).__name__}")
            return
        missing = [m for m in self.needs if not callable(getattr(item, m, None))]
        if missing:
            raise TypeError(f"{self.what} {name!r} lacks {', '.join(missing)}{self.expects}")

    def register(self, name: str, item) -> None:
        """Check ``item`` (:meth:`check`) and register it as ``name`` (registering ``name`` again
        replaces it)."""
        self.check(name, item)
        self.items[str(name)] = item

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error if nothing is registered under it)."""
        self.items.pop(str(name), None)

    def autoload(self, library: str, module: str) -> None:
        """When ``library`` (a module name) has been imported by the time :meth:`current` runs,
        import ``module`` first; it registers on import. Neither is imported before that."""
        self.pending[str(library)] = str(module)

    def current(self) -> list:
        """The registered items, after importing the integrations whose library is loaded."""
        for library, module in list(self.pending.items()):
            if library in sys.modules and module not in sys.modules:
                importlib.import_module(module)
        return list(self.items.values())
