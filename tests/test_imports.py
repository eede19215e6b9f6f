"""The client's modules import one way (issue 17): no cycle, lazy imports inside functions
included (``if TYPE_CHECKING:`` blocks aside: they never run); nothing below the command line
imports it; and no file outside the tests is over 400 lines. The server has its own (tests/server)."""

from __future__ import annotations

from pathlib import Path

import import_graph

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "telemetry_rollup"
PACKAGE = "telemetry_rollup"
#: The command line's modules: only the entry points (__main__, the detached sender's _spawn
#: command string is not an import) may import them, never the library below.
TOP = {"cli", "__main__", "_demo"}


def imports() -> dict[str, set[str]]:
    return import_graph.imports(PACKAGE_DIR, PACKAGE)


def test_the_graph_is_read() -> None:
    graph = imports()
    assert "_store" in graph["_telemetry"] or "_store" in graph["_persist"], graph["_telemetry"]
    assert graph["_view"] >= {"_show", "_html"}


def test_no_import_cycle() -> None:
    import_graph.assert_no_cycle(imports())


def test_nothing_below_the_command_line_imports_it() -> None:
    for module, deps in imports().items():
        if module not in TOP:
            assert not deps & {"cli", "__main__"}, f"{module} imports {deps & {'cli', '__main__'}}"


def test_no_file_over_400_lines_outside_the_tests() -> None:
    """The library, its server, the benchmarks and the examples (issue 17's bound)."""
    root = PACKAGE_DIR.parent
    files = [p for d in ("telemetry_rollup", "benchmarks", "examples") for p in (root / d).rglob("*.py")]
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in files}
    assert len(sizes) > 60, sorted(sizes)
    assert {name: n for name, n in sizes.items() if n > 400} == {}


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
