"""The server's modules import one way: no cycle (lazy imports inside functions included), the
storage layers below the store, and no module over ~400 lines (issue 17)."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "telemetry_rollup" / "server"
PACKAGE = "telemetry_rollup.server"

#: Lower layers never import higher ones: storage (db*, records, aggregates), then its schema and
#: rules (schema, names_cap, store_write, store), then policy, formats and HTTP.
LAYERS = [
    {"db", "records", "aggregates"},
    {"db_sqlite", "db_pg", "schema"},
    {"names_cap"},
    {"store_write"},
    {"store"},
]


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SERVER.glob("*.py"):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == PACKAGE:
                    found.update(alias.name for alias in node.names)
                elif node.module.startswith(PACKAGE + "."):
                    found.add(node.module[len(PACKAGE) + 1 :].split(".")[0])
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + "."):
                        found.add(alias.name[len(PACKAGE) + 1 :].split(".")[0])
        graph[path.stem] = found - {path.stem}
    return graph


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


def test_storage_layers_import_downwards_only() -> None:
    graph = imports()
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    assert set(level) <= set(graph), "a layered module is gone: update LAYERS"
    for module, deps in graph.items():
        if module not in level:
            continue
        for dep in deps:
            assert dep in level and level[dep] <= level[module], f"{module} imports {dep}"


def test_no_server_module_over_400_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in SERVER.glob("*.py")}
    assert {name: n for name, n in sizes.items() if n > 420} == {}
