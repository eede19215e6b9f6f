"""The only module that imports requests, and only when a request is actually made.

Maps every response to one of three outcomes: sent (2xx), rejected for good (400, 401, 403,
404, 410, 413, 422; the sender keeps a 401 for an app that authenticates) or retry later
(everything else: 408, 425, 429, 5xx, redirects, timeouts, connection and TLS errors). A whole
call is bounded by its deadline, not per socket operation: the request runs on a daemon thread
that is abandoned when time is up, so a server trickling bytes cannot hold the caller past its
timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from ._log import log

REJECTED = frozenset({400, 401, 403, 404, 410, 413, 422})


def clean_headers(headers: Any) -> dict[str, str] | None:
    """Extra request headers as a plain dict, or None when absent or malformed (then none are sent).

    Names and values must be non-empty strings without CR, LF or NUL; the library's own
    Content-Type and User-Agent cannot be replaced."""
    if not headers or not hasattr(headers, "items"):
        return None
    out: dict[str, str] = {}
    for k, v in headers.items():
        if not (isinstance(k, str) and isinstance(v, str) and k and v):
            return None
        if any(c in k + v for c in "\r\n\0") or k.lower() in ("content-type", "user-agent", "content-length"):
            return None
        out[k] = v
    return out or None


class Outcome(NamedTuple):
    kind: str  # "sent" | "rejected" | "retry"
    status: int | None
    retry_after: float | None  # seconds, from Retry-After
    detail: str
    body: dict[str, Any] | None = None


def classify(status: int) -> str:
    if 200 <= status < 300:
        return "sent"
    if status in REJECTED:
        return "rejected"
    return "retry"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - now)


def post(url: str, body: bytes, *, timeout: float, headers: dict[str, str] | None = None) -> Outcome:
    """POST ``body`` as JSON; never raises, never takes longer than ``timeout`` (plus a few ms).

    The endpoint rule is checked here again, before anything else: ``configure()`` refuses a bad
    endpoint, but ``config.json`` and ``forget.json`` may have been edited by hand."""
    from ._endpoint import endpoint_problem

    problem = endpoint_problem(url)
    if problem is not None:
        log.debug("no request made, endpoint refused: %s", problem)  # never the URL: it may hold a secret
        return Outcome("retry", None, None, f"endpoint refused: {problem}")
    out = _post_bounded(url, body, timeout=timeout, headers=headers)
    if log.enabled():  # TELEMETRY_ROLLUP_DEBUG=1: every body and its answer
        log.debug("POST %s %s", url, body.decode("utf-8", "replace"))
        log.debug("-> %s (%s)", out.detail, out.kind)
    return out


def _post_bounded(url: str, body: bytes, *, timeout: float, headers: dict[str, str] | None) -> Outcome:
    if timeout <= 0:
        return Outcome("retry", None, None, "no time left")
    box: dict[str, Outcome] = {}

    def run() -> None:
        box["out"] = _post(url, body, timeout, headers or {})

    t = threading.Thread(target=run, name="telemetry_rollup-post", daemon=True)
    t.start()
    t.join(timeout)
    out = box.get("out")
    if out is None:
        return Outcome("retry", None, None, f"no answer within {timeout:.1f}s")
    return out


def _no_auth(request: Any) -> Any:
    """An explicit auth that adds nothing: it keeps requests from using URL or netrc credentials."""
    return request


def _post(url: str, body: bytes, timeout: float, headers: dict[str, str]) -> Outcome:
    try:
        import requests
    except Exception as exc:  # pragma: no cover - requests is a dependency
        return Outcome("retry", None, None, f"requests unavailable: {exc}")
    hdrs = {"Content-Type": "application/json", "User-Agent": "telemetry-rollup"}
    hdrs.update(headers)
    try:
        # auth=_no_auth: requests would otherwise add an Authorization header from the URL's
        # user:password or from ~/.netrc for the host; only the headers TELEMETRY.md lists are sent.
        resp = requests.post(url, data=body, headers=hdrs, timeout=timeout, allow_redirects=False, auth=_no_auth)
    except requests.RequestException as exc:
        return Outcome("retry", None, None, type(exc).__name__)
    except Exception as exc:  # a malformed URL and the like: keep the reports
        return Outcome("retry", None, None, type(exc).__name__)
    parsed: dict[str, Any] | None = None
    try:
        obj = resp.json()
        if isinstance(obj, dict):
            parsed = obj
    except ValueError:
        pass
    kind = classify(resp.status_code)
    retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
    resp.close()
    return Outcome(kind, resp.status_code, retry_after, f"HTTP {resp.status_code}", parsed)
