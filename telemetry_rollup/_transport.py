"""The only module that imports requests, and only when a request is actually made.

Maps every response to one of three outcomes: sent (2xx), rejected for good (400, 401, 403,
404, 410, 413, 422; the sender keeps a 401 for an app that authenticates) or retry later
(everything else: 408, 425, 429, 5xx, redirects, timeouts, connection and TLS errors). A whole
call is bounded by its deadline, not per socket operation: the request runs on a daemon thread,
and when time is up the caller shuts its socket down and returns, so a server trickling bytes
cannot hold the caller past its timeout. The answer is streamed and at most 64 KiB of it is read
(an endless 200 body cannot grow the host), and only one request thread exists per process at a
time (a thread that outlives its call, in a resolver that never answers, is waited for by the
next call within that call's deadline, never piled up).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, NamedTuple

from ._log import log

REJECTED = frozenset({400, 401, 403, 404, 410, 413, 422})
#: At most this much of any answer is read (streamed); the rest is never taken off the socket.
MAX_ANSWER = 64 * 1024


_OWN_HEADERS = (
    "host",
    "content-type",
    "user-agent",
    "content-length",
    "accept-encoding",
    "transfer-encoding",
    "connection",
)


def headers_now(h: Any) -> dict[str, str] | None:
    """An app's configured headers (a mapping, or a callable evaluated now), cleaned; None if
    absent, empty or invalid. A callable that raises sends without headers (never raises)."""
    try:
        return clean_headers(h() if callable(h) else h)
    except Exception as exc:
        log.debug("headers callable failed, sending without headers: %s", type(exc).__name__)
        return None


def clean_headers(headers: Any) -> dict[str, str] | None:
    """Extra request headers as a plain dict, or None when absent or malformed (then none are sent).

    Names and values must be non-empty strings without CR, LF or NUL; the library's own
    headers (Host, Content-Type, Content-Length, User-Agent) and the connection's
    (Transfer-Encoding, Connection) cannot be replaced."""
    if not headers or not hasattr(headers, "items"):
        return None
    out: dict[str, str] = {}
    for k, v in headers.items():
        if not (isinstance(k, str) and isinstance(v, str) and k and v):
            return None
        if any(c in k + v for c in "\r\n\0") or k.lower() in _OWN_HEADERS:
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
    if log.enabled():  # TELEMETRY_ROLLUP_DEBUG=1: every body (its machine key redacted) and its answer
        from ._identity import redact

        log.debug("POST %s %s", url, redact(body).decode("utf-8", "replace"))
        log.debug("-> %s (%s)", out.detail, out.kind)
    return out


def _post_bounded(url: str, body: bytes, *, timeout: float, headers: dict[str, str] | None) -> Outcome:
    if timeout <= 0:
        return Outcome("retry", None, None, "no time left")
    deadline = time.monotonic() + timeout
    gate = _gate
    # One request thread per process at a time: a thread that outlived its call (a resolver
    # that does not answer; a socket not yet connected) is waited for here, within this call's
    # own deadline, so a trickling or hanging server can never pile threads up.
    if not gate.acquire(timeout=timeout):
        return Outcome("retry", None, None, "an earlier request has not ended yet")
    box: dict[str, Any] = {}
    conns: list[Any] = []

    def run() -> None:
        try:
            _post(url, body, deadline, headers or {}, box, conns)
        except BaseException as exc:  # the host must never see it
            box.setdefault("error", type(exc).__name__)
        finally:
            gate.release()

    t = threading.Thread(target=run, name="telemetry_rollup-post", daemon=True)
    try:
        t.start()
    except BaseException:
        gate.release()
        return Outcome("retry", None, None, "no thread for the request")
    t.join(max(0.0, deadline - time.monotonic()))
    if t.is_alive():
        # The answer is what had arrived by the deadline, read before hanging up: the hang-up
        # ends a header block the server never finished with an EOF, which http.client takes for
        # its end, so a status line that came in time would otherwise be taken for an answer.
        outcome = _outcome(dict(box), timeout)
        _hang_up(conns)  # its blocked read returns now: no more bytes are read into this process
        return outcome
    return _outcome(box, timeout)


def _outcome(box: dict[str, Any], timeout: float) -> Outcome:
    head = box.get("head")
    if head is None:
        error = box.get("error")
        return Outcome("retry", None, None, error or f"no answer within {timeout:.1f}s")
    status, retry_after, parsed = head[0], head[1], box.get("answer")
    return Outcome(classify(status), status, retry_after, f"HTTP {status}", parsed)


def _hang_up(conns: list[Any]) -> None:
    """Shut down the sockets of an abandoned request: a ``recv`` blocked in its thread returns at
    once (``close()`` alone would not wake it), the thread ends, and the server sees the hang-up."""
    import socket

    for item in list(conns):
        sock = item if isinstance(item, socket.socket) else getattr(item, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _reset_after_fork() -> None:
    # A child forked while a parent's request thread held the gate would wait on it forever.
    global _gate
    _gate = threading.Lock()


_gate = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _import_requests() -> Any:
    """``import requests`` without touching the host's warnings.

    Importing requests (and urllib3) appends four entries to the process's ``warnings.filters`` and
    may warn (``RequestsDependencyWarning`` with a chardet it does not support, urllib3's
    ``NotOpenSSLWarning``): a daemon's in-process send would change the host's filters, print into
    its stderr, or, under ``-W error``, fail to import at all. So the first import runs inside
    ``catch_warnings`` (which restores the host's filters list and ``showwarning`` on exit) with
    every warning ignored. ``catch_warnings`` swaps process-wide state: it is used only for that one
    import, never around a request."""
    import sys

    module = sys.modules.get("requests")
    if module is not None and hasattr(module, "Session"):
        return module
    import warnings

    from ._log import import_guard

    # A host's fork waits for this import (at most _log.FORK_WAIT): see import_guard.
    with import_guard("requests"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import requests
        import requests.adapters  # used by _session(): imported inside the same guard
    return requests


def _no_auth(request: Any) -> Any:
    """An explicit auth that adds nothing: it keeps requests from using URL or netrc credentials."""
    return request


_local = threading.local()
_TRACKING: dict[type, type] = {}


def _tracking(base: type) -> type:
    """A subclass of urllib3's connection pool ``base`` that records each connection it makes, and
    its socket once connected, in the calling thread's list, so the caller can shut the socket
    down at the deadline."""
    cls = _TRACKING.get(base)
    if cls is None:

        class Tracked(base):  # type: ignore[misc]
            def _new_conn(self) -> Any:
                conn = super()._new_conn()
                sink = getattr(_local, "conns", None)
                if sink is not None:
                    sink.append(conn)
                    connect = conn.connect

                    def connect_and_record() -> None:
                        connect()
                        # The socket itself: http.client drops conn.sock when the answer says
                        # "Connection: close" (the response's file object keeps it open).
                        sink.append(conn.sock)

                    conn.connect = connect_and_record
                return conn

        cls = _TRACKING[base] = Tracked
    return cls


_ADAPTER: list[type] = []


def _session() -> Any:
    """A fresh session (no pooled connection is shared between calls) whose connections are
    tracked, direct or through a proxy from the environment."""
    import requests

    if not _ADAPTER:
        from requests.adapters import HTTPAdapter

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
                super().init_poolmanager(*args, **kwargs)
                _track(self.poolmanager)

            def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
                manager = super().proxy_manager_for(*args, **kwargs)
                _track(manager)
                return manager

        _ADAPTER.append(Adapter)
    session = requests.Session()
    adapter = _ADAPTER[0](max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _track(manager: Any) -> None:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if isinstance(classes, dict):
        manager.pool_classes_by_scheme = {k: _tracking(v) for k, v in classes.items()}


def _post(
    url: str, body: bytes, deadline: float, headers: dict[str, str], box: dict[str, Any], conns: list[Any]
) -> None:
    """The request, on its own thread: fills ``box`` with "head" (status, Retry-After) as soon as
    the status line and headers are in, then "answer" (the parsed JSON object, if any)."""
    try:
        requests = _import_requests()
    except Exception as exc:  # pragma: no cover - requests is a dependency
        box["error"] = f"requests unavailable: {type(exc).__name__}"
        return
    # Exactly the headers TELEMETRY.md lists: Host, Content-Type, Content-Length, User-Agent,
    # Accept-Encoding: identity (http.client adds it when absent), and the app's own. requests'
    # other defaults (Accept, Connection) are removed (a None value removes a session header).
    hdrs: dict[str, str | None] = {
        "Content-Type": "application/json",
        "User-Agent": "telemetry-rollup",
        "Accept-Encoding": "identity",
        "Accept": None,
        "Connection": None,
    }
    hdrs.update(headers)
    _local.conns = conns
    session = _session()
    try:
        left = max(0.01, deadline - time.monotonic())
        # stream=True: the body is read below, at most MAX_ANSWER bytes of it, never all of it.
        # auth=_no_auth: requests would otherwise add an Authorization header from the URL's
        # user:password or from ~/.netrc for the host; only the headers TELEMETRY.md lists are sent.
        resp = session.post(
            url, data=body, headers=hdrs, timeout=left, allow_redirects=False, auth=_no_auth, stream=True
        )
        try:
            box["head"] = (resp.status_code, parse_retry_after(resp.headers.get("Retry-After"), now=time.time()))
            data = _read_capped(resp.raw, MAX_ANSWER)
            if data is not None:
                box["answer"] = parse_answer(data, resp.headers.get("Content-Encoding"))
        finally:
            resp.close()
    except requests.RequestException as exc:
        box["error"] = type(exc).__name__
    except Exception as exc:  # a malformed URL, a hang-up at the deadline: keep the reports
        box["error"] = type(exc).__name__
    finally:
        _local.conns = None
        session.close()


def _read_capped(raw: Any, cap: int) -> bytes | None:
    """At most ``cap`` bytes of the answer as sent (not decompressed); None when it is longer."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = raw.read(min(16384, cap + 1 - size), decode_content=False)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks) if size <= cap else None


def parse_answer(data: bytes, encoding: str | None) -> dict[str, Any] | None:
    """The answer's JSON object, or None. Compressed answers are inflated to at most MAX_ANSWER
    bytes (a small gzip bomb must not become a large allocation); other encodings are ignored."""
    enc = (encoding or "").strip().lower()
    if enc in ("gzip", "x-gzip", "deflate"):
        import zlib

        try:
            inflater = zlib.decompressobj(47 if enc != "deflate" else 15)
            data = inflater.decompress(data, MAX_ANSWER + 1)
        except zlib.error:
            return None
        if len(data) > MAX_ANSWER:
            return None
    elif enc not in ("", "identity"):
        return None
    import json

    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None
