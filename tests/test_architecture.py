"""The code's shape, checked: layers import only downward, no module imports itself round a cycle, no long functions.

Layers, bottom to top (README, "Architecture"):
  core    assistant/ except assistant/shells/  settings, store, models, retrieval, grounding, routing, chat loop
  distill distill/                             import -> label -> dataset -> train -> export -> registry
  eval    eval/                                A/B, metrics, judge, report, benchmarks
  shells  assistant/shells/, app.py            the web server, chat page, console tabs, CLI
Every import counts, including those inside functions (a function-level import is still a dependency; it
only hides it). Product code never imports tests/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "distill", "eval", "shells")
MAX_FUNCTION_LINES = 80


def layer(module: str) -> str:
    if module == "app" or module == "assistant.shells" or module.startswith("assistant.shells."):
        return "shells"
    top = module.split(".")[0]
    return {"assistant": "core", "distill": "distill", "eval": "eval", "tests": "tests"}[top]


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    files = [p for top in ("assistant", "distill", "eval") for p in (root / top).rglob("*.py")] + [root / "app.py"]
    modules = {}
    for path in files:
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import in the file, resolved to the deepest known module."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package, `level` steps up
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]  # `from pkg import submodule` names a module
        else:
            continue
        for target in targets:
            while target and target not in known and not target.startswith("tests"):
                target = target.rpartition(".")[0]
            if target.startswith("tests"):
                target = "tests"
            if target and target != module:
                found.append((target, node.lineno))
    return found


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    modules = project_modules(root)
    known = set(modules)
    return {m: imports_of(m, p, known) for m, p in modules.items()}


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    order = {name: i for i, name in enumerate(LAYERS)} | {"tests": len(LAYERS)}
    return [f"{m} ({layer(m)}) imports {t} ({layer(t)}) at line {line}"
            for m, targets in sorted(graph.items()) for t, line in targets if order[layer(t)] > order[layer(m)]]


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges = {m: sorted({t for t, _ in targets if t in graph}) for m, targets in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for module, path in sorted(project_modules(root).items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    out.append(f"{module}.{node.name} at line {node.lineno}: {lines} lines")
    return out


def test_no_module_imports_a_layer_above_it():
    assert upward_imports(import_graph()) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_function_is_longer_than_the_limit():
    assert long_functions() == []


def test_the_chat_path_stays_in_the_core():
    """What a customer's message goes through (chat loop, router, models, store) needs nothing above the core."""
    graph = import_graph()
    reached, todo = set(), ["assistant.chat"]
    while todo:
        m = todo.pop()
        if m not in reached:
            reached.add(m)
            todo += [t for t, _ in graph.get(m, []) if t in graph]
    assert {layer(m) for m in reached} == {"core"}
    assert {"assistant.router", "assistant.store"} <= reached and any(m.startswith("assistant.models") for m in reached)


@pytest.fixture
def tiny_tree(tmp_path):
    """A made-up project with one upward import (core -> eval) and one cycle (distill.a <-> distill.b)."""
    for folder in ("assistant", "assistant/shells", "distill", "eval"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "app.py").write_text("from assistant.shells import web\n")
    (tmp_path / "assistant/shells/web.py").write_text("from eval import report\nfrom assistant import store\n")
    (tmp_path / "assistant/store.py").write_text("def f():\n    from eval.report import render\n")
    (tmp_path / "eval/report.py").write_text("from distill.a import x\n")
    (tmp_path / "distill/a.py").write_text("from . import b\n")
    (tmp_path / "distill/b.py").write_text("from .a import x\n" + "def long():\n" + "    pass\n" * 90)
    (tmp_path / "distill/c.py").write_text("import eval.report\n")  # `import a.b`: upward
    (tmp_path / "distill/d.py").write_text("from eval import report\n")  # `from package import module`: upward
    (tmp_path / "eval/e.py").write_text("def f():\n    from tests.conftest import FakeEmbedder\n")  # product -> tests
    return tmp_path


def test_the_checks_find_an_upward_import_a_cycle_and_a_long_function(tiny_tree):
    graph = import_graph(tiny_tree)
    assert upward_imports(graph) == ["assistant.store (core) imports eval.report (eval) at line 2",
                                     "distill.c (distill) imports eval.report (eval) at line 1",
                                     "distill.d (distill) imports eval.report (eval) at line 1",
                                     "eval.e (eval) imports tests (tests) at line 2"]
    assert cycles(graph) == [["distill.a", "distill.b"]]
    assert long_functions(tiny_tree) == ["distill.b.long at line 2: 91 lines"]
