"""No module of the package over ~400 lines (the style rule), with a hard limit the suite enforces."""

from __future__ import annotations

import pathlib

import torch_tos

PACKAGE = pathlib.Path(torch_tos.__file__).parent
LIMIT = 450


def test_no_module_is_over_the_limit():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 30  # the walk really saw the package
    assert {name: n for name, n in sizes.items() if n > LIMIT} == {}
