"""The import graph of a package's modules, read from their source (lazy imports inside functions
included, ``if TYPE_CHECKING:`` blocks left out: they never run), for the import-direction tests of
the client (tests/test_imports.py) and of the server (tests/server/test_server_imports.py)."""

from __future__ import annotations

import ast
from pathlib import Path


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


def imports(directory: Path, package: str) -> dict[str, set[str]]:
    """Each module of ``directory`` (the package ``package``) -> the modules of the same package
    it imports, relatively or by absolute name."""
    graph: dict[str, set[str]] = {}
    for path in directory.glob("*.py"):
        found: set[str] = set()
        for node in _runs(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if (node.level == 1 and not mod) or mod == package:  # from . import x
                    found.update(alias.name for alias in node.names)
                elif node.level == 1:  # from .x import y
                    found.add(mod.split(".")[0])
                elif mod.startswith(package + "."):
                    found.add(mod[len(package) + 1 :].split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(package + "."):
                        found.add(alias.name[len(package) + 1 :].split(".")[0])
        graph[path.stem] = {m for m in found if (directory / f"{m}.py").exists()} - {path.stem}
    return graph


def assert_no_cycle(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

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
