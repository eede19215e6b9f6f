"""``GET /metrics``: the operator's figures in the Prometheus exposition format (prometheus-client,
the one module that imports it).

Off unless the config has a ``[metrics]`` section (then the route exists; otherwise 404, and
prometheus-client is never imported). Access takes a bearer token of its own, ``[metrics]
token``, not the dashboard's credentials: the scraper's secret then opens no page of usage data,
and either can be rotated without the other. Failed tokens are throttled per address as the
dashboard's logins are (:class:`~telemetry_rollup.server.dashboard_http.LoginGuard`).

What is counted (ingest is ``POST /v1/rollups``; labels come from fixed lists or the config,
never from a client: no label per counter name or machine):

* ``telemetry_rollup_requests_total{outcome, reason}``: every ingest request, by its answer
  (:data:`OUTCOMES`: stored, duplicate, deletion, refused by reason, rate_limited by key,
  error, disconnected);
* ``telemetry_rollup_request_duration_seconds``: their latency, from the request's arrival at
  the route to its answer (the body read included);
* ``telemetry_rollup_reports_total{app, outcome}``: reports stored or already known;
* ``telemetry_rollup_counts_stored_total{app}``: the sum of the counter values stored;
* ``telemetry_rollup_database_errors_total``: requests of any route answered 503 because the
  database failed.

``app`` is an app's name only when the config names it (an ``[apps.NAME]`` entry, or ``[metrics]
apps``), otherwise :data:`OTHER_APPS`; so the number of series is fixed by the config, whatever
apps clients invent.

Several workers (``serve --workers N``): ``serve`` makes a fresh directory and sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; prometheus-client then keeps each
worker's values in memory-mapped files there, and whichever worker answers ``/metrics`` sums
the files of all of them (its multiprocess mode), so every scrape gives the server's totals.
The directory is removed when ``serve`` stops; a restart starts the counters from zero, which
Prometheus reads as a counter reset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.concurrency import run_in_threadpool

from telemetry_rollup.server.config import DashboardAccess, MetricsAccess
from telemetry_rollup.server.dashboard_http import LoginGuard, allowed
from telemetry_rollup.server.ratelimit import address_key

#: The environment variable prometheus-client's multiprocess mode reads (at import).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The ``app`` label of every app the config does not name.
OTHER_APPS = "(other)"
#: outcome -> its reasons ("" when an outcome has none). Fixed: every series exists from the start.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "stored": ("",),  # at least one report was new
    "duplicate": ("",),  # every report was already stored: nothing changed
    "deletion": ("",),  # a deletion request, answered
    "refused": ("invalid", "machine_forgotten", "no_length", "too_large", "content_type"),
    "rate_limited": ("address", "machine"),
    "error": ("database",),
    "disconnected": ("",),  # the client hung up before its body was complete
}
#: An ingest refusal's HTTP status -> its reason (429 carries its own: address or machine).
REFUSED_BY_STATUS = {400: "invalid", 403: "machine_forgotten", 411: "no_length", 413: "too_large", 415: "content_type"}
#: Latency buckets (seconds): ingest answers in milliseconds; the tail up to the 10 s deadline.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def app_label(app: str, named: frozenset[str]) -> str:
    """The ``app`` label: the app itself when the config names it, else :data:`OTHER_APPS`. Pure."""
    return app if app in named else OTHER_APPS


class Metrics:
    """The server's counters in one process (several: see the module docstring)."""

    def __init__(self, apps: Iterable[str]) -> None:
        self.apps = frozenset(apps)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # A registry of this app's own: several apps in one process (tests) do not collide.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "telemetry_rollup_requests",
            "Ingest requests (POST /v1/rollups) by answer",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "telemetry_rollup_request_duration_seconds",
            "Ingest request latency, arrival at the route to answer",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.reports = Counter(
            "telemetry_rollup_reports",
            "Reports in ingest requests: stored (new) or duplicate (already stored)",
            ["app", "outcome"],
            registry=self.registry,
        )
        self.counts = Counter(
            "telemetry_rollup_counts_stored",
            "Sum of the counter values stored",
            ["app"],
            registry=self.registry,
        )
        self.database_errors = Counter(
            "telemetry_rollup_database_errors",
            "Requests answered 503 because the database failed",
            registry=self.registry,
        )
        for outcome, reasons in OUTCOMES.items():
            for reason in reasons:
                self.requests.labels(outcome, reason)
        for app in (*sorted(self.apps), OTHER_APPS):
            self.reports.labels(app, "stored")
            self.reports.labels(app, "duplicate")
            self.counts.labels(app)

    def request(self, outcome: str, reason: str = "") -> None:
        self.requests.labels(outcome, reason).inc()

    def refused(self, status: int, reason: str = "") -> None:
        """A 4xx answer of the ingest endpoint."""
        if status == 429:
            self.request("rate_limited", reason or "address")
        else:
            self.request("refused", REFUSED_BY_STATUS.get(status, "invalid"))

    def ingested(self, app: str, stored: int, duplicates: int, values: int) -> None:
        label = app_label(app, self.apps)
        self.request("stored" if stored else "duplicate")
        if stored:
            self.reports.labels(label, "stored").inc(stored)
        if duplicates:
            self.reports.labels(label, "duplicate").inc(duplicates)
        if values:
            self.counts.labels(label).inc(values)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The figures as text (format chosen from the scraper's ``Accept``), and its type."""
        encode, content_type = choose_encoder(accept)
        if not self.multiprocess:
            return encode(self.registry), content_type
        from prometheus_client import multiprocess

        # Every worker's files, summed: the same totals whichever worker answers.
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call] # untyped upstream
        return encode(merged), content_type


def install(app: FastAPI, metrics: Metrics, access: MetricsAccess, clock: Callable[[], float]) -> LoginGuard:
    """Add ``GET /metrics`` to ``app``; returns its guard against token guessing."""
    guard = LoginGuard(what="metrics")

    @app.get("/metrics", include_in_schema=False, response_model=None)
    async def get_metrics(request: Request) -> Response:
        now = clock()
        key = address_key(request.client.host if request.client else "")
        wait = guard.wait(key, now)
        if wait is not None:
            return JSONResponse(
                {"error": "too many failed metrics logins from this address", "field": ""},
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        authorization = request.headers.get("authorization", "")
        if not allowed(DashboardAccess(token=access.token), authorization, ""):
            if authorization:
                guard.failure(key, now)
            return JSONResponse(
                {"error": "metrics token required", "field": ""},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        body, content_type = await run_in_threadpool(metrics.exposition, request.headers.get("accept", ""))
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    return guard


__all__ = ["MULTIPROC_ENV", "OTHER_APPS", "OUTCOMES", "Metrics", "app_label", "install"]
