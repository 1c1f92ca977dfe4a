"""Generate ``docs/rules.md`` from the rules registry: one row per aten op.

    python -m torch_tos.rules.doc            # rewrite docs/rules.md
    python -m torch_tos.rules.doc --check    # exit 1 if docs/rules.md is stale

Each row gives the op, its family (the rules module that registered it) and its BO formula: the
rule's ``unit`` attribute when it has one (``per_element`` rules: the BOs of one output element;
others: a formula string), else the first sentence of the rule's docstring. Memory-only ops are
listed with 0. The registry is the single source: tests regenerate this file and fail when the
committed copy differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .._compat import OpOverload
from ..bos import BOs
from . import RULES, ZERO_OPS  # importing the package registers every rule
from .registry import FAMILY, PENDING

COMMAND = "python -m torch_tos.rules.doc"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "rules.md"

HEADER = f"""# Counting rules

Generated from the rules registry by `{COMMAND}` — do not edit by hand (a test fails when this file
is stale). One row per aten op (packet, or overload where overloads are priced differently).
BO vectors are `[add, sub, mul, div, root]`, the paper's order; "per element" means per output
element. Conventions and the decomposition behind every formula: [conventions](conventions.md) §2
and each rule's docstring (`torch_tos/rules/<family>.py`). Ops not listed here are *unsupported*: a
profile reports them, never counts them silently as zero.
"""

#: the line naming the torch that rendered the file: a few ops exist in newer torch only
_RENDERED_WITH = "Rendered with torch {version}; an older supported torch lacks a few of these ops."


def op_label(op) -> str:
    """``aten.mm`` for a packet, ``aten._native_batch_norm_legit.no_stats`` for an overload."""
    if isinstance(op, OpOverload):
        return f"{op.namespace}.{op.__name__}"
    return str(op).replace("::", ".")


def _first_sentence(text: str) -> str:
    text = " ".join((text or "").split())
    m = re.search(r"(?<=[.;])\s+(?=[A-Z(`*])", text)
    return text[:m.start()] if m else text


def formula(rule) -> str:
    """The BO formula shown for ``rule``."""
    unit = getattr(rule, "unit", None)
    if isinstance(unit, BOs):
        return f"[{', '.join(str(v) for v in unit)}] per element"
    if isinstance(unit, str) and unit:
        return unit
    return _first_sentence(rule.__doc__ or "") or "(see rule)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows() -> list[tuple[str, str, str]]:
    """(op, family, formula) for every registered op, sorted by family then op — the rules for
    other libraries' ops (torchvision) included whether or not that library is loaded."""
    out = [(name.replace("::", "."), family.rsplit(".", 1)[-1],
            formula(rule) if rule is not None else "0 (memory only)")
           for entries in PENDING.values() for name, rule, family in entries]
    for op, rule in RULES.items():
        out.append((op_label(op), FAMILY.get(op, "?").rsplit(".", 1)[-1], formula(rule)))
    for op in ZERO_OPS:
        out.append((op_label(op), FAMILY.get(op, "?").rsplit(".", 1)[-1], "0 (memory only)"))
    return sorted(out, key=lambda r: (r[1], r[0]))


def counts() -> tuple[int, int]:
    """(ops with arithmetic rules, memory-only ops), pending registrations included."""
    pending = [rule for entries in PENDING.values() for _name, rule, _family in entries]
    return (len(RULES) + sum(r is not None for r in pending),
            len(ZERO_OPS) + sum(r is None for r in pending))


def torch_version() -> str:
    """The installed torch's release (``"2.14.1"``, local build tags dropped)."""
    import torch

    return torch.__version__.split("+")[0]


def render() -> str:
    n_rules, n_zero = counts()
    lines = [HEADER, _RENDERED_WITH.format(version=torch_version()),
             f"{n_rules} ops with arithmetic rules, {n_zero} memory-only ops.", "",
             "| aten op | family | BOs |", "|---|---|---|"]
    for op, family, text in rows():
        lines.append(f"| `{op}` | {family} | {_cell(text)} |")
    return "\n".join(lines) + "\n"


def _table_rows(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.startswith("| `")}


def is_current(text: str) -> bool:
    """Whether ``text`` (the committed file) is current: equal to this render when the same torch
    rendered it; under another supported torch, holding every row this torch renders (the file is
    rendered on the newest torch; an older one lacks a few ops but prices the rest alike)."""
    mine = render()
    if text == mine:
        return True
    prefix = _RENDERED_WITH.split("{", 1)[0]
    line = next((x for x in text.splitlines() if x.startswith(prefix)), None)
    if line is None or line == _RENDERED_WITH.format(version=torch_version()):
        return False
    return _table_rows(mine) <= _table_rows(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if not is_current(current):
            print(f"{args.out} is stale: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    from ..fileio import atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
