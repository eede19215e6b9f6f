"""uvicorn's h11 protocol with TCP_NODELAY on every connection.

With ``--workers N`` uvicorn binds the listening socket itself as ``socket.socket(family)``
(proto 0), and asyncio only sets TCP_NODELAY on accepted sockets whose proto is
IPPROTO_TCP. Without it, a keep-alive client's second request waits for Nagle's
algorithm and the peer's delayed ACK: measured here at 44 ms per request instead of 4 ms
(benchmarks/server_load.py --workers 2). Setting the option per connection fixes both modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A connection already closing may refuse the option; h11 then handles it.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
