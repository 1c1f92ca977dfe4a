"""A griffe extension for the API reference: torch_tos's docstrings are written in reStructuredText
(Sphinx roles, literal blocks, doctests); the site renders Markdown. Before mkdocstrings renders a
docstring this turns

* ``:class:`~torch_tos.report.Report``` into `` `Report` `` (the last name after ``~``), other roles
  (``:func:``, ``:meth:``, ``:mod:``, ``:data:``, ``:attr:``, ``:class:``) into their target in
  code, and ``:role:`text <target>``` into `` `text` ``;
* ````code```` into `` `code` ``;
* a paragraph ending in ``::`` followed by an indented block into the paragraph and a fenced code
  block, and ``>>>`` doctest lines (with their output) into a fenced ``pycon`` block.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|obj|exc|const)?:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+?)``")


def _role(match: re.Match) -> str:
    text = match.group(1)
    named = re.fullmatch(r"(.+?)\s*<([^>]+)>", text)
    if named:
        return f"`{named.group(1)}`"
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    return f"`{text}`"


def _blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(">>> "):
            indent = len(line) - len(line.lstrip())
            out.append(" " * indent + "```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(" " * indent + "```")
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            text = line.rstrip()[:-2].rstrip()
            if text:
                out.append(text + ":")
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            base = len(line) - len(line.lstrip())
            block = []
            while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            if block:
                cut = min(len(b) - len(b.lstrip()) for b in block if b.strip())
                out += ["", " " * base + "```", *(" " * base + b[cut:] for b in block), " " * base + "```", ""]
                i = j
                continue
            i += 1
            continue
        out.append(line)
        i += 1
    return out


def markdown(text: str) -> str:
    """The docstring ``text`` with its reStructuredText constructs written in Markdown."""
    parts = re.split(r"(^[ \t]*```.*?^[ \t]*```[ \t]*$)", "\n".join(_blocks(text.splitlines())),
                     flags=re.M | re.S)
    return "".join(p if i % 2 else _LITERAL.sub(r"`\1`", _ROLE.sub(_role, p)) for i, p in enumerate(parts))


class RstToMarkdown(griffe.Extension):
    """Rewrites each docstring once, when griffe loads the object."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
