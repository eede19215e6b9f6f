"""The client's modules import one way (issue 17): no cycle, lazy imports inside functions
included (``if TYPE_CHECKING:`` blocks aside: they never run); nothing below the command line
imports it; and no module is over ~400 lines. The server has its own (tests/server)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "telemetry_rollup"
PACKAGE = "telemetry_rollup"
#: The command line's modules: only the entry points (__main__, the detached sender's _spawn
#: command string is not an import) may import them, never the library below.
TOP = {"cli", "__main__", "_demo"}


def _runs(tree: ast.Module) -> list[ast.AST]:
    """Every node that can run: the body of ``if TYPE_CHECKING:`` is left out."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE_DIR.glob("*.py"):
        found: set[str] = set()
        for node in _runs(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1 and not mod:  # from . import x
                    found.update(alias.name for alias in node.names)
                elif node.level == 1:  # from .x import y
                    found.add(mod.split(".")[0])
                elif mod == PACKAGE:
                    found.update(alias.name for alias in node.names)
                elif mod.startswith(PACKAGE + "."):
                    found.add(mod[len(PACKAGE) + 1 :].split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + "."):
                        found.add(alias.name[len(PACKAGE) + 1 :].split(".")[0])
        graph[path.stem] = {m for m in found if (PACKAGE_DIR / f"{m}.py").exists()} - {path.stem}
    return graph


def test_the_graph_is_read() -> None:
    graph = imports()
    assert "_store" in graph["_telemetry"] or "_store" in graph["_persist"], graph["_telemetry"]
    assert graph["_view"] >= {"_show", "_html"}


def test_no_import_cycle() -> None:
    graph = imports()
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*trail, module]))
        if state.get(module) == 2:
            return
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*trail, module])
        state[module] = 2

    for module in sorted(graph):
        visit(module, [])


def test_nothing_below_the_command_line_imports_it() -> None:
    for module, deps in imports().items():
        if module not in TOP:
            assert not deps & {"cli", "__main__"}, f"{module} imports {deps & {'cli', '__main__'}}"


def test_no_module_over_about_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE_DIR.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 440} == {}


def test_design_docs_module_table_is_the_import_order() -> None:
    """docs/design.md lists every module, each below every module it imports."""
    import re

    doc = (PACKAGE_DIR.parent / "docs" / "design.md").read_text().split("## Modules", 1)[1].split("\n## ", 1)[0]
    order: dict[str, int] = {}
    for i, line in enumerate(line for line in doc.splitlines() if line.startswith("| `")):
        for module in re.findall(r"`(\w+)`", line.split("|")[1]):
            order.setdefault(module, i)
    graph = imports()
    assert set(graph) - {"__init__"} <= set(order), set(graph) - set(order)
    upward = sorted((m, d) for m, deps in graph.items() for d in deps if m in order and order[d] > order[m])
    assert upward == [], upward
