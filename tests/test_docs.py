"""The documentation site: MkDocs builds it in strict mode (a broken link, a missing page or an
unresolved reference fails), and every code block of README.md and of the guide runs as written.

Each page runs as one script, in a fresh folder, its blocks in the order they appear: ``python``
blocks as they are, ``bash`` blocks command by command (``torch-tos`` as ``python -m torch_tos``,
``python`` as this interpreter), and a block with a file name (```` ```python title="mymodel.py"
````) is written to that file. Output blocks (``text``, ``pycon``) are not run. A comment on the
line before a block marks it: ``<!-- docs-test: slow -->`` (the page's test is marked slow),
``<!-- docs-test: requires: deepspeed -->`` (the page is skipped where that optional package is
not installed; marks combine with commas) or ``<!-- docs-test: skip: REASON -->`` (installs
packages, needs hardware this machine lacks); a
bash block may run only ``torch-tos``, ``python`` and ``mkdocs``, so a command nobody can check
(``pip``, ``sudo``) must be in a skipped block.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
_FENCE = re.compile(r'^```(\w*)(?:\s+title="([^"]+)")?\s*$')
_MARK = re.compile(r"^<!--\s*docs-test:\s*(.+?)\s*-->$")
RUN = ("python", "bash")
COMMANDS = ("torch-tos", "python", "mkdocs")

#: Set-up the harness runs before the blocks of a page that requires the package. DeepSpeed on its
#: CPU accelerator JIT-compiles a shared-memory all-reduce at ``deepspeed.initialize`` (minutes of
#: C++ on two cores, again for every torch version, behind a file lock that a killed run leaves
#: stale); without it DeepSpeed reduces through torch.distributed, which is what the page shows.
PRELUDE = {"deepspeed": ("import sys, deepspeed.comm.torch; "
                         "sys.modules['deepspeed.comm.torch'].build_shm_op = lambda: None\n")}

#: Pages whose examples another piece of work is rewriting: their blocks are parsed and checked
#: for marks, not run, until it lands (page -> why).
PENDING: dict[str, str] = {}


@dataclass
class Block:
    lang: str
    code: str
    line: int           # 1-based line of the first code line in the page
    mark: str | None    # "slow", "skip" or None
    reason: str = ""
    title: str = ""     # a file name: the block is that file's text (written, not run)
    requires: tuple[str, ...] = ()  # optional packages the block imports


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, with the mark on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang, title = i, m.group(1), m.group(2) or ""
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            i += 1
        prev = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        found = _MARK.match(prev)
        kind, reason, requires = None, "", ()
        for part in (p.strip() for p in found.group(1).split(",")) if found else ():
            if part == "slow":
                kind = kind or "slow"
            elif part.startswith("skip:"):
                kind, reason = "skip", part[5:].strip()
            elif part.startswith("requires:"):
                requires += tuple(part[9:].split())
            else:
                raise ValueError(f"{path}:{start}: unknown docs-test mark {part!r}")
        out.append(Block(lang, "\n".join(lines[start + 1:i]), start + 2, kind, reason, title, requires))
        i += 1
    return out


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(argv)
    return out


def _command(argv: list[str]) -> str:
    """One bash command as a line of the page's script: ``torch-tos`` runs in the script's own
    process (``torch_tos.cli.main``, the console script's entry point: no second torch import),
    ``python`` and ``mkdocs`` in a subprocess of this interpreter."""
    head, rest = argv[0], argv[1:]
    if head == "torch-tos":
        return f"assert _cli({rest!r}) == 0, {' '.join(argv)!r}\n"
    run = [sys.executable, "-m", "mkdocs", *rest] if head == "mkdocs" else [sys.executable, *rest]
    return f"subprocess.run({run!r}, check=True)\n"


def script(page: Path) -> tuple[str, list[tuple[int, int]]]:
    """The page as one Python script and, per script line where a block starts, its page line."""
    page_blocks = blocks(page)
    required = sorted({m for b in page_blocks if b.lang in RUN and b.mark != "skip" for m in b.requires})
    parts = ["import subprocess; from torch_tos.cli import main as _cli\n",
             *(PRELUDE[m] for m in required if m in PRELUDE)]
    where, n = [], len(parts)
    for b in page_blocks:
        if b.lang not in RUN or b.mark == "skip":
            continue
        if b.title:
            code = f"open({b.title!r}, 'w', encoding='utf-8').write({b.code + chr(10)!r})\n"
        elif b.lang == "python":
            code = b.code + "\n"
        else:
            code = "".join(_command(argv) for argv in commands(b.code))
        where.append((n + 1, b.line))
        parts.append(f"# {page.name}:{b.line}\n{code}")
        n += 1 + code.count("\n")
    return "".join(parts), where


def guide_pages() -> list[Path]:
    """README.md (the front door) and every page of the guide: the pages whose blocks run."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _pages() -> list:
    params = []
    for page in guide_pages():
        runs = [b for b in blocks(page) if b.lang in RUN and b.mark != "skip"]
        if not runs:
            continue
        name = str(page.relative_to(DOCS if page.is_relative_to(DOCS) else ROOT))
        marks = [pytest.mark.slow] if any(b.mark == "slow" for b in runs) else []
        missing = sorted({m for b in runs for m in b.requires if importlib.util.find_spec(m) is None})
        if missing:
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(missing)} (pip install -e '.[dev]')"))
        if name in PENDING:
            marks.append(pytest.mark.skip(reason=PENDING[name]))
        params.append(pytest.param(page, id=name, marks=marks))
    return params


def _env() -> dict:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1"}


def test_every_block_is_marked_or_runnable():
    """Bash blocks that run hold only commands the test can run; marks name a reason."""
    for page in guide_pages():
        for b in blocks(page):
            where = f"{page.relative_to(ROOT)}:{b.line}"
            assert b.mark != "skip" or b.reason, f"{where}: a skipped block needs a reason"
            if b.lang == "bash" and b.mark != "skip":
                for argv in commands(b.code):
                    assert argv[0] in COMMANDS, (f"{where}: `{argv[0]}` cannot run in the docs test; "
                                                 f"mark the block <!-- docs-test: skip: REASON -->")


@pytest.mark.parametrize("page", _pages())
def test_code_blocks_run_as_written(page, tmp_path):
    code, where = script(page)
    (tmp_path / "page.py").write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=900)
    if proc.returncode:
        lines = [int(x) for x in re.findall(r'page\.py", line (\d+)', proc.stderr)]
        starts = [(s, p) for s, p in where if lines and s <= lines[-1]]
        at = starts[-1][1] + lines[-1] - starts[-1][0] if starts else "?"
        pytest.fail(f"{page.relative_to(ROOT)}:{at} failed:\n{proc.stderr[-3000:]}")


def test_site_builds_in_strict_mode(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "report" / "index.html").read_text(encoding="utf-8")
    assert "with_law" in api and ":class:" not in api  # the reference is generated, roles rendered
    assert json.loads((tmp_path / "site" / "search" / "search_index.json").read_text())["docs"]
