"""The server's modules import one way: no cycle (lazy imports inside functions included), the
storage layers below the store, and no module over ~400 lines (issue 17)."""

from __future__ import annotations

from pathlib import Path

import import_graph

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
    return import_graph.imports(SERVER, PACKAGE)


def test_no_import_cycle() -> None:
    import_graph.assert_no_cycle(imports())


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
