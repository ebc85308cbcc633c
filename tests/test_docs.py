"""Every ```python block in README.md and docs/*.md runs as written.

Blocks are found generically, so a block added to any page is covered. The blocks of one
page run in order in one namespace (a page may build on its earlier blocks), in a scratch
working directory, offline (wandb offline, a private BentoML store). A block that cannot run
alone - it needs a live feed, a running server or an exported agent - starts with a
``# fragment`` comment: it is compiled (its syntax checked) but not run. Fragments stay few.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
FRAGMENT = "# fragment"


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in BLOCK.finditer(text)]


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


def test_blocks_are_found_and_fragments_stay_few():
    blocks = [code for page in PAGES for _, code in python_blocks(page)]
    assert len(PAGES_WITH_CODE) >= 5 and len(blocks) >= 10
    fragments = [code for code in blocks if code.startswith(FRAGMENT)]
    assert len(fragments) <= len(blocks) // 2, "most examples must run as written"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[p.name for p in PAGES_WITH_CODE])
def test_every_python_block_runs_as_written(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    namespace: dict = {"__name__": "__docs__"}
    for line, code in python_blocks(page):
        where = f"{page.name}:{line}"
        if code.startswith(FRAGMENT):
            compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            continue
        try:
            exec(compile(code, where, "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"the block at {where} fails: {exc!r}\n{code}") from exc
