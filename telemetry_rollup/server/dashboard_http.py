"""``GET /dashboard``: access control and the HTTP wrapping of :mod:`dashboard`.

Registered by ``create_app`` only when the config has a ``dashboard`` section; without it the
path answers 404 like any unknown one. With it, a request needs ``Authorization: Bearer
<token>`` (or ``?token=<token>``, for a bookmark) or HTTP basic auth with the configured user
and password; anything else is 401. Credentials are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timezone
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from telemetry_rollup.server import dashboard
from telemetry_rollup.server.config import DashboardAccess
from telemetry_rollup.server.store import SQLStore

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _same(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def allowed(access: DashboardAccess, authorization: str, query_token: str) -> bool:
    """Whether the request's credentials match the config. Pure."""
    if query_token and _same(query_token, access.token):
        return True
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return _same(value, access.token)
    if scheme.lower() == "basic" and access.user is not None:
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # Both compared, always, so the time taken does not say which one was wrong.
        ok_user = _same(user, access.user)
        ok_password = _same(password, access.password)
        return bool(sep) and ok_user and ok_password
    return False


def install(app: FastAPI, store: SQLStore, access: DashboardAccess, clock: Callable[[], float]) -> None:
    """Add ``GET /dashboard`` to ``app``."""
    challenge = 'Basic realm="telemetry_rollup dashboard"' if access.user is not None else "Bearer"

    @app.get("/dashboard", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    async def get_dashboard(request: Request) -> Response:
        params = dict(request.query_params)
        token = params.pop("token", "")
        if not allowed(access, request.headers.get("authorization", ""), token):
            return JSONResponse(
                {"error": "dashboard credentials required", "field": ""},
                status_code=401,
                headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
            )
        today = datetime.fromtimestamp(clock(), timezone.utc).date()
        try:
            query = dashboard.parse_query(params, today)
        except dashboard.QueryError as exc:
            return JSONResponse({"error": str(exc), "field": ""}, status_code=400)
        report, machines = await run_in_threadpool(dashboard.load, store, query)
        extra = {"token": token} if token else {}
        return HTMLResponse(dashboard.render(report, machines, query, extra_params=extra), headers=HEADERS)
