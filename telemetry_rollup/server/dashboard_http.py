"""``GET /dashboard``: access control, throttling and the HTTP wrapping of :mod:`dashboard`.

Registered by ``create_app`` only when the config has a ``dashboard`` section; without it the
path answers 404 like any unknown one. With it, a request needs ``Authorization: Bearer
<token>`` (or ``?token=<token>``, for a bookmark) or HTTP basic auth with the configured user
and password; anything else is 401. Credentials are compared in constant time and never logged.

Failed logins are throttled per client address (an IPv6 client per /64): after
:data:`LOGIN_FAILURES` failures in :data:`LOGIN_WINDOW` seconds every dashboard request from it
gets 429 until the window ends, the right credentials included. They are counted: the page's
footer shows the failures and throttled requests since the server started, and while they
happen the log gets one line a minute with their number (never an address or a credential).

Reading and rendering run on worker threads, at most :data:`CONCURRENT_PAGES` at a time (more
wait their turn), so the event loop keeps answering ``/healthz`` and ingest meanwhile and the
threads ingest needs are never all taken by pages.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import logging
import threading
from datetime import datetime, timezone
from typing import Callable

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from telemetry_rollup.server import dashboard
from telemetry_rollup.server.config import DashboardAccess
from telemetry_rollup.server.ratelimit import FixedWindowLimiter, address_key
from telemetry_rollup.server.store import SQLStore

log = logging.getLogger("telemetry_rollup.server")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
CONCURRENT_PAGES = 2


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


class LoginGuard:
    """Failed logins per address key: the throttle, the counters, and the once-a-minute log line."""

    def __init__(self, failures: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW, what: str = "dashboard") -> None:
        self.what = what
        self.limiter = FixedWindowLimiter(failures, window)
        self.window = window
        self.failed = 0
        self.throttled = 0
        self._unlogged = 0
        self._logged_at = 0.0
        self._lock = threading.Lock()

    def wait(self, key: str, now: float) -> int | None:
        """Seconds this address must wait before it may try again, or None."""
        wait = self.limiter.blocked(key, now)
        if wait is not None:
            with self._lock:
                self.throttled += 1
            self._note(now, 0)
        return wait

    def failure(self, key: str, now: float) -> None:
        self.limiter.hit(key, now)
        with self._lock:
            self.failed += 1
        self._note(now, 1)

    def _note(self, now: float, failed: int) -> None:
        with self._lock:
            self._unlogged += failed
            if not self._unlogged or now - self._logged_at < self.window:
                return
            n, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.warning("%s: %d failed login(s) since the last report (%d throttled in all)", self.what, n, self.throttled)

    def summary(self) -> str:
        return (
            f"Failed dashboard logins since the server started: {self.failed:,};"
            f" requests throttled: {self.throttled:,}."
        )


def _page(store: SQLStore, query: dashboard.Query, extra: dict[str, str], footer: str) -> str:
    return dashboard.render(dashboard.load(store, query), extra_params=extra, footer=footer)


def install(
    app: FastAPI,
    store: SQLStore,
    access: DashboardAccess,
    clock: Callable[[], float],
    client_key: Callable[[Request], str] | None = None,
) -> LoginGuard:
    """Add ``GET /dashboard`` to ``app``; returns its login guard (for tests and the footer)."""
    challenge = 'Basic realm="telemetry_rollup dashboard"' if access.user is not None else "Bearer"
    guard = LoginGuard()
    limiter = anyio.CapacityLimiter(CONCURRENT_PAGES)
    key_of = client_key or (lambda request: address_key(request.client.host if request.client else ""))

    @app.get("/dashboard", response_class=HTMLResponse, response_model=None, include_in_schema=False)
    async def get_dashboard(request: Request) -> Response:
        now = clock()
        key = key_of(request)
        wait = guard.wait(key, now)
        if wait is not None:
            return JSONResponse(
                {"error": "too many failed dashboard logins from this address", "field": ""},
                status_code=429,
                headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
            )
        params = dict(request.query_params)
        token = params.pop("token", "")
        if not allowed(access, request.headers.get("authorization", ""), token):
            # A request with no credentials at all is a browser's first try, not a failure.
            if token or request.headers.get("authorization"):
                guard.failure(key, now)
            return JSONResponse(
                {"error": "dashboard credentials required", "field": ""},
                status_code=401,
                headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
            )
        today = datetime.fromtimestamp(now, timezone.utc).date()
        try:
            query = dashboard.parse_query(params, today)
        except dashboard.QueryError as exc:
            return JSONResponse({"error": str(exc), "field": ""}, status_code=400)
        extra = {"token": token} if token else {}
        build = functools.partial(_page, store, query, extra, guard.summary())
        html = await anyio.to_thread.run_sync(build, limiter=limiter)
        return HTMLResponse(html, headers=HEADERS)

    return guard
