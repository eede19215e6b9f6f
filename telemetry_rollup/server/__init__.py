"""The reference ingest server for telemetry_rollup (extra ``telemetry-rollup[server]``).

Nothing is imported here: ``report`` must work with only a database driver installed, and
the command line catches the ImportError of FastAPI/uvicorn to say how to install them.
Modules: ``models`` (wire format), ``config``, ``ratelimit``, ``store`` (its rules), ``schema``,
``db``/``db_sqlite``/``db_pg`` (storage), ``app`` (the FastAPI app), ``report`` (queries and
formatting), ``metrics`` (``GET /metrics``, prometheus-client), ``export``/``otlp``/``export_cli``
(``export --otlp``, OpenTelemetry), ``cli``.
"""

from __future__ import annotations

__all__: list[str] = []
