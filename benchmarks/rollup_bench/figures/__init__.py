"""The figures, one module each, found by name: every module here defines ``FIGURE``.

A figure measures one thing (its ``bench`` runs in the runner and may start children through
:func:`rollup_bench.harness.worker` or :func:`rollup_bench.harness.wall`), turns its results into the
table's rows (each with its target and verdict), and may add a section of its own below the table.
``order`` places it in the run and in the table.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollup_bench.endpoints import Endpoints
from rollup_bench.harness import Params, Row


@dataclass(frozen=True)
class Ctx:
    """What a figure's bench gets: the run's parameters, the endpoints, the competitors installed."""

    p: Params
    ep: Endpoints
    comps: dict[str, bool]


@dataclass(frozen=True)
class Figure:
    key: str  # its key in the results (and the JSON), and its step's name on stderr
    order: int
    bench: Callable[[Ctx], dict[str, Any]]
    rows: Callable[[dict[str, Any], bool], list[Row]]  # (its results, quick) -> its rows
    section: Callable[[dict[str, Any]], str] | None = None  # markdown below the table, from its results


def all_figures() -> list[Figure]:
    """Every figure module's ``FIGURE``, in order (importing them also registers their workers)."""
    figures = []
    for info in pkgutil.iter_modules(__path__):
        figures.append(importlib.import_module(f"{__name__}.{info.name}").FIGURE)
    figures.sort(key=lambda f: f.order)
    keys = [f.key for f in figures]
    if len(set(keys)) != len(keys) or len({f.order for f in figures}) != len(figures):
        raise ValueError(f"two figures share a key or an order: {keys}")
    return figures
