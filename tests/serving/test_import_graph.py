"""Imports point one way (serving -> agents -> envs) and the exchange's modules form no
cycle: read from the source with ``ast``, so an import hidden inside a function counts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports_of(package: str) -> dict[str, set[str]]:
    """Module -> the modules of the project it imports, for every module under ``package``."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module] = found
    return graph


def test_the_exchange_modules_form_no_import_cycle():
    graph = imports_of("serving.exchange")
    edges = {m: {t for t in targets if t in graph and t != m} for m, targets in graph.items()}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join([*visiting, module])}"
        visiting.append(module)
        for target in sorted(edges[module]):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)


@pytest.mark.parametrize(("package", "forbidden"), [("envs", ("agents", "serving"))])
def test_envs_never_imports_agents_or_serving(package, forbidden):
    for module, targets in imports_of(package).items():
        bad = sorted(t for t in targets if t.split(".")[0] in forbidden)
        assert not bad, f"{module} imports {bad}"
