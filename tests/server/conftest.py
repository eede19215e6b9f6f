"""Fixtures: database URLs per backend and real server processes.

The PostgreSQL variants need ``TEST_POSTGRES_URL`` (see ``.ci/postgres.sh``) and are
skipped without it. Tests isolate themselves by app name (a fresh uuid per test), so one
PostgreSQL database and one server per backend serve the whole session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import Server

from telemetry_rollup.server.store import SQLStore, open_store

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
]

# Limits high enough that no functional test trips them; the rate-limit tests start their own.
OPEN_CONFIG = {"limits": {"per_machine": 100_000, "per_address": 100_000}}


def _db_url(backend: str, directory: Path) -> str:
    if backend == "postgres":
        url = os.environ.get("TEST_POSTGRES_URL")
        if not url:
            pytest.skip("TEST_POSTGRES_URL is not set (run .ci/postgres.sh)")
        return url
    return f"sqlite:///{directory / 'telemetry.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _db_url(request.param, tmp_path)


@pytest.fixture
def store(db_url: str) -> Iterator[SQLStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp(f"server-{request.param}")
    proc = Server(_db_url(request.param, directory), directory, config=OPEN_CONFIG)
    yield proc
    proc.stop()


@pytest.fixture
def app_name() -> str:
    """A fresh app name, so tests sharing a database never see each other's rows."""
    return f"t-{uuid.uuid4().hex[:12]}"
