"""uvicorn's h11 protocol with TCP_NODELAY, connection caps and a deadline per request.

**Idle and slow connections.** uvicorn closes an idle keep-alive connection after
``timeout_keep_alive``, but nothing bounds a connection that sends half a request and waits:
its timer is disarmed by the first byte. A few hundred such sockets held every file
descriptor of an earlier version, and the server refused real clients (and logged a
traceback per failed ``accept``) until they were closed. Here, per process:

* a request must arrive complete (headers and body) within ``request_seconds`` (10 s) of its
  first byte, or of the connection opening; otherwise the connection is closed;
* at most ``connections_per_address`` (32) connections per client address (an IPv6 client
  per /64; addresses of trusted proxies are exempt) and ``connections`` in all (1000, and
  never so many that the descriptor limit could be reached); a connection beyond either is
  reset at once, so its descriptor is free again before it can hold anything;
* ``serve`` raises the process's soft descriptor limit to its hard limit (as Go programs
  do), and asyncio accepts at most :data:`BACKLOG` connections per wake-up, so the room kept
  free is known: 64 descriptors plus two batches of accepts;
* should ``accept`` fail for want of descriptors anyway, asyncio would log a traceback per
  failed call (thousands a second); :func:`quiet_accept_errors` turns that into one line a
  minute.

uvicorn's own ``limit_concurrency`` is not used: it counts the same connections but answers
503 only once a request's headers are in, so it frees no descriptor an idle socket holds.

**TCP_NODELAY.** With ``--workers N`` uvicorn binds the listening socket itself as
``socket.socket(family)`` (proto 0), and asyncio only sets TCP_NODELAY on accepted sockets
whose proto is IPPROTO_TCP. Without it, a keep-alive client's second request waits for
Nagle's algorithm and the peer's delayed ACK: measured here at 44 ms per request instead of
4 ms (benchmarks/server_load.py --workers 2). Setting the option per connection fixes both modes.

The limits are set by :func:`configure`, which ``create_app`` calls in every worker before
uvicorn accepts anything (the protocol class is loaded by uvicorn from an import string).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import resource
import socket
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from telemetry_rollup.server.ratelimit import address_key

#: The listen backlog, which is also how many connections asyncio accepts per wake-up.
BACKLOG = 128
#: Descriptors kept free: the database, the log and the listening socket, and two batches of
#: accepts that arrive before the cap can reset any of them.
RESERVED_FDS = 64 + 2 * BACKLOG
#: uvicorn's and h11's limit on a request's head (line and headers), set explicitly.
MAX_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    connections: int = 1000
    per_address: int = 32
    request_seconds: float = 10.0
    trusted: tuple[str, ...] = field(default_factory=tuple)  # proxy addresses or networks

    def effective_connections(self) -> int:
        """``connections``, but never within :data:`RESERVED_FDS` of the descriptor limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.connections
        return max(8, min(self.connections, soft - RESERVED_FDS))


class _State:
    limits = ConnectionLimits()
    cap = ConnectionLimits().effective_connections()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    open_per_key: dict[str, int] = {}  # noqa: RUF012 - one process's live table, not a default


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _AcceptErrors:
    """Counts the accept failures asyncio reports and logs one line a minute about them."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.count = 0
        self.logged_at = 0.0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "out of system resource" not in message:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.count += 1
        now = loop.time()
        if now - self.logged_at >= 60:
            self.logged_at = now
            exc = context.get("exception")
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else message
            logging.getLogger("telemetry_rollup.server").warning(
                "accept failed %d time(s) so far (%s): raise the descriptor limit (ulimit -n)"
                " or lower limits.connections",
                self.count,
                why,
            )


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Install the accept-error counter as ``loop``'s exception handler (other errors pass on)."""
    current = loop.get_exception_handler()
    if not isinstance(current, _AcceptErrors):
        loop.set_exception_handler(_AcceptErrors(current))


def configure(limits: ConnectionLimits) -> None:
    """Set this process's limits (``create_app`` calls it)."""
    _State.limits = limits
    _State.cap = limits.effective_connections()
    _State.networks = tuple(ipaddress.ip_network(t, strict=False) for t in limits.trusted)


def _trusted(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in net for net in _State.networks)


class NoDelayH11Protocol(H11Protocol):
    """The protocol ``serve`` runs (the name is kept from when it only set TCP_NODELAY)."""

    _key = ""
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A connection already closing may refuse the option; h11 then handles it.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        peer: Any = transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not _trusted(host):
            self._key = address_key(host)
            _State.open_per_key[self._key] = _State.open_per_key.get(self._key, 0) + 1
        over_address = bool(self._key) and _State.open_per_key[self._key] > _State.limits.per_address
        if over_address or len(self.connections) > _State.cap:
            # Reset now: the descriptor is free before the peer can hold it.
            transport.abort()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._key:
            left = _State.open_per_key.get(self._key, 1) - 1
            if left > 0:
                _State.open_per_key[self._key] = left
            else:
                _State.open_per_key.pop(self._key, None)
            self._key = ""
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a new request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            self._disarm()  # the request is complete (or the connection is done)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(_State.limits.request_seconds, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
            # Half a request after request_seconds: no answer is owed to it.
            self.transport.abort()
