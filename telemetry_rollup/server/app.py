"""The FastAPI app: ``POST /v1/rollups``, ``GET /healthz``, ``GET /`` (and ``GET /dashboard``
and ``GET /metrics`` when the config enables them, see ``dashboard_http.py`` and ``metrics.py``).

The endpoint reads the body itself rather than letting FastAPI parse it, so the size rules
hold before anything is parsed: no ``Content-Length`` (a chunked body) -> 411, a declared
length over 64 KiB -> 413, and the read is capped at 64 KiB whatever the header said. The
request schema is still published in ``/openapi.json`` (from the same pydantic models).

Privacy by construction: the client address is used only as a rate-limit key held in
memory; no header, address or user agent reaches the store or the log (uvicorn's access
log is off, see ``cli.py``), and error responses never echo a client-chosen counter name.

A client that hangs up before its body is complete gets no answer and leaves no line in the
log (one traceback per dropped connection would let anyone flood it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from telemetry_rollup._version import __version__
from telemetry_rollup.server import ingest, protocol
from telemetry_rollup.server.config import Config, load_config
from telemetry_rollup.server.models import (
    ForgetRequest,
    ForgetRequestV2,
    InvalidBody,
    body_json_schema,
    check_days,
    parse_body,
)
from telemetry_rollup.server.ratelimit import FixedWindowLimiter, address_key
from telemetry_rollup.server.store import MachineForgotten, SQLStore, StoreError, open_store

if TYPE_CHECKING:
    from telemetry_rollup.server.metrics import Metrics

log = logging.getLogger("telemetry_rollup.server")

MAX_BODY = 64 * 1024
ENV_DB = "TELEMETRY_ROLLUP_SERVER_DB"
ENV_CONFIG = "TELEMETRY_ROLLUP_SERVER_CONFIG"

INDEX_TEXT = """\
This is a telemetry_rollup ingest endpoint.

Programs that use the telemetry_rollup library send it anonymous per-day counts of how
their features were used: POST /v1/rollups with a JSON body (wire format 2 or 1). No host
names, user names, paths, addresses or free text are accepted or stored, and the client
address is never written to disk or to the log.

What is collected, how to see it and how to turn it off: see TELEMETRY.md in the
telemetry_rollup distribution. The request schema is at /openapi.json.
"""


class RollupResponse(BaseModel):
    stored: int
    duplicates: int
    refused: int


class ForgetResponse(BaseModel):
    forgotten: bool


class ErrorResponse(BaseModel):
    error: str
    field: str


class Reject(Exception):
    """A request refused with an HTTP status; mapped to the JSON error body in one place.
    ``reason`` says which limit a 429 is (``address`` or ``machine``, for the metrics)."""

    def __init__(self, status: int, message: str, field: str = "", retry_after: int = 0, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.reason = reason


class Disconnected(Exception):
    """The client hung up mid-body: there is no one to answer, and nothing to log."""


def _error(status: int, message: str, field: str = "", retry_after: int = 0) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "not wire format 2 or 1 (the field is named), or not JSON"),
        (403, "this machine proved a deletion request less than 30 days ago (field machine_id)"),
        (411, "no Content-Length (for example a chunked body)"),
        (413, "body over 64 KiB"),
        (415, "content type is not application/json"),
        (429, "rate limited; see Retry-After"),
        (503, "storage unavailable; retry later"),
    )
}


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> object:
    """Check length and type before reading, read at most :data:`MAX_BODY`, decode JSON."""
    length = request.headers.get("content-length")
    if length is None:
        raise Reject(411, "Content-Length required (chunked bodies are not accepted)")
    if not (length.isascii() and length.isdigit()):
        raise Reject(400, "invalid Content-Length")
    if int(length) > MAX_BODY:
        raise Reject(413, f"body over {MAX_BODY} bytes")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise Reject(415, "Content-Type must be application/json")
    try:
        raw = await _read_capped(request, MAX_BODY)
    except ClientDisconnect:
        raise Disconnected from None
    if raw is None:
        raise Reject(413, f"body over {MAX_BODY} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise Reject(400, "body is not valid JSON") from None


class Endpoint:
    """``POST /v1/rollups``: limits, validation, policy, storage, in that order."""

    def __init__(
        self, store: SQLStore, config: Config, clock: Callable[[], float], metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.metrics = metrics
        limits = config.limits
        self.per_machine = FixedWindowLimiter(limits.per_machine, limits.window_seconds)
        self.per_address = FixedWindowLimiter(limits.per_address, limits.window_seconds)

    async def __call__(self, request: Request) -> dict[str, Any]:
        now = self.clock()
        # The address is a key in memory for one window, and nothing else (IPv6: its /64).
        address = address_key(request.client.host if request.client else "")
        wait = self.per_address.hit(address, now)
        if wait is not None:
            raise Reject(429, "too many requests from this address", retry_after=wait, reason="address")
        try:
            body = parse_body(await read_json(request))
        except InvalidBody as exc:
            raise Reject(400, exc.message, exc.field) from None
        wait = self.per_machine.hit(f"{body.app}\0{body.machine_id}", now)
        if wait is not None:
            raise Reject(429, "too many requests from this machine", retry_after=wait, reason="machine")
        today = datetime.fromtimestamp(now, timezone.utc).date()
        if isinstance(body, (ForgetRequest, ForgetRequestV2)):
            # An app outside the allowlist has nothing stored: answered, nothing written. The
            # answer is the same whether something was deleted or not: it tells a forger nothing.
            if self.config.rule_for(body.app) is not None:
                await run_in_threadpool(
                    self.store.forget, body.app, body.machine_id, now, today.isoformat(), proven=body.proven
                )
            if self.metrics is not None:
                self.metrics.request("deletion")
            return {"forgotten": True}
        try:
            check_days(body, today)
        except InvalidBody as exc:
            raise Reject(400, exc.message, exc.field) from None
        batch, refused = ingest.plan(body, self.config)
        try:
            result = await run_in_threadpool(self.store.ingest, batch, now)
        except MachineForgotten:
            # field machine_id: the library then makes a new identity and keeps its reports.
            raise Reject(403, "this machine asked to be forgotten: use a new machine id", "machine_id") from None
        if self.metrics is not None:
            self.metrics.ingested(body.app, result.stored, result.duplicates, result.values)
        return {"stored": result.stored, "duplicates": result.duplicates, "refused": refused}

    async def measured(self, request: Request) -> dict[str, Any]:
        """:meth:`__call__`, with its latency and, for what it refuses, its outcome counted."""
        metrics = self.metrics
        if metrics is None:
            return await self(request)
        started = time.perf_counter()
        try:
            return await self(request)
        except Reject as exc:
            metrics.refused(exc.status, exc.reason)
            raise
        except Disconnected:
            metrics.request("disconnected")
            raise
        except StoreError:  # MachineForgotten is a Reject by now
            metrics.request("error", "database")
            raise
        finally:
            metrics.latency.observe(time.perf_counter() - started)


def create_app(
    store: SQLStore,
    config: Config,
    *,
    clock: Callable[[], float] = time.time,
    close_store: bool = True,
) -> FastAPI:
    """The ingest app over ``store``; ``clock`` gives UTC epoch seconds (tests inject one)."""
    store.names_per_app_day = config.limits.names_per_app_day
    limits = config.limits
    protocol.configure(
        protocol.ConnectionLimits(
            connections=limits.connections,
            per_address=limits.connections_per_address,
            request_seconds=limits.request_seconds,
            trusted=config.trusted_proxies,
        )
    )
    metrics = None
    if config.metrics is not None:
        from telemetry_rollup.server.metrics import Metrics

        metrics = Metrics(config.metrics_apps())
    endpoint = Endpoint(store, config, clock, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import asyncio

        protocol.quiet_accept_errors(asyncio.get_running_loop())
        stop = asyncio.Event()
        pruner = None
        if config.retention_days is not None:
            pruner = asyncio.create_task(_prune_periodically(store, config.retention_days, clock, stop))
        yield
        stop.set()
        if pruner is not None:
            await pruner  # a prune under way finishes its day first (one short transaction)
        if close_store:
            store.close()

    app = FastAPI(
        title="telemetry_rollup ingest",
        version=__version__,
        docs_url=None,  # the docs pages load scripts from a CDN; /openapi.json is enough
        redoc_url=None,
        lifespan=lifespan,
    )
    _install_error_handlers(app, metrics)

    @app.get("/", response_class=PlainTextResponse)
    async def index() -> str:
        return INDEX_TEXT

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        await run_in_threadpool(store.ping)
        return "ok\n"

    @app.post(
        "/v1/rollups",
        response_model=None,
        responses={200: {"model": Union[RollupResponse, ForgetResponse]}, **_ERRORS},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Body"}}},
            }
        },
    )
    async def rollups(request: Request) -> JSONResponse:
        return JSONResponse(await endpoint.measured(request))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            body = body_json_schema("#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["Body"] = body
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign] # FastAPI's documented override
    if config.dashboard is not None:
        from telemetry_rollup.server import dashboard_http

        dashboard_http.install(app, store, config.dashboard, clock)
    if config.metrics is not None and metrics is not None:
        from telemetry_rollup.server import metrics as metrics_http

        metrics_http.install(app, metrics, config.metrics, clock)
    return app


#: How often the server prunes raw rows past the retention (config ``[retention] days``).
PRUNE_SECONDS = 3600.0


async def _prune_periodically(store: SQLStore, days: int, clock: Callable[[], float], stop: Any) -> None:
    """Delete raw rows older than ``days`` now and every :data:`PRUNE_SECONDS` until ``stop``;
    the daily aggregates stay (``store.prune``). Several processes may do it at once: one
    prunes, the others find nothing or step aside."""
    import asyncio

    while not stop.is_set():
        today = datetime.fromtimestamp(clock(), timezone.utc).date()
        try:
            await run_in_threadpool(store.prune, days, today)
        except StoreError as exc:
            log.error("pruning raw rows failed, retried in an hour: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), PRUNE_SECONDS)
        except asyncio.TimeoutError:
            pass


def _install_error_handlers(app: FastAPI, metrics: Metrics | None) -> None:
    @app.exception_handler(Reject)
    async def _reject(_: Request, exc: Reject) -> JSONResponse:
        return _error(exc.status, exc.message, exc.field, exc.retry_after)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default is 422 with pydantic's full error list; the wire contract is 400.
        errors = exc.errors()
        loc = [str(p) for p in errors[0].get("loc", ())] if errors else []
        return _error(400, "invalid request", ".".join(loc[1:]))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Disconnected)
    async def _disconnected(_: Request, exc: Disconnected) -> Response:
        # uvicorn drops a response to a closed connection; an empty one costs nothing.
        return Response(status_code=400)

    @app.exception_handler(StoreError)
    async def _store_error(_: Request, exc: StoreError) -> JSONResponse:
        log.error("storage error: %s", exc)
        if metrics is not None:
            metrics.database_errors.inc()
        return _error(503, "storage unavailable")


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` (used by ``serve --workers N``).

    Reads the database URL and config path from :data:`ENV_DB` / :data:`ENV_CONFIG`, which
    ``serve_main`` sets before starting the workers.
    """
    url = os.environ[ENV_DB]
    config_path = os.environ.get(ENV_CONFIG)
    config = load_config(Path(config_path) if config_path else None)
    return create_app(open_store(url), config)
