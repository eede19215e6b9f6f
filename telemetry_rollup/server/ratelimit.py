"""In-memory fixed-window rate limits per key (machine id, client address).

Keys live only in this process's memory, for at most two windows, and are never written
anywhere: that is what lets the limiter see client addresses without the server storing
them. With ``--workers N`` each worker has its own limiter, so the effective limit is up to
N times the configured one (documented in docs/server.md).

Addresses are keyed by :func:`address_key`: an IPv6 client is one /64 (one host usually has a
whole /64 to pick addresses from, so a per-address key would let it send from 2^64 "clients").
"""

from __future__ import annotations

import ipaddress
import math
import threading


def address_key(host: str) -> str:
    """The rate-limit key of a client address: IPv4 as is, IPv6 as its /64 (an IPv4-mapped
    IPv6 address as the IPv4 address). Anything unparseable (a Unix socket) is its own key."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FixedWindowLimiter:
    """``limit`` hits per ``window`` seconds per key. Time is always passed in (``now``)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, tuple[float, int]] = {}
        self._last_sweep = 0.0
        self._lock = threading.Lock()

    def hit(self, key: str, now: float) -> int | None:
        """Count one request; None when allowed, else seconds to wait (for Retry-After)."""
        with self._lock:
            self._sweep(now)
            start, count = self._hits.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            if count >= self.limit:
                return max(1, math.ceil(start + self.window - now))
            self._hits[key] = (start, count + 1)
            return None

    def blocked(self, key: str, now: float) -> int | None:
        """Seconds to wait when ``key`` has used up its window, else None; counts nothing."""
        with self._lock:
            start, count = self._hits.get(key, (now, 0))
            if now - start >= self.window or count < self.limit:
                return None
            return max(1, math.ceil(start + self.window - now))

    def _sweep(self, now: float) -> None:
        # Forget keys whose window has ended, at most once a window: memory stays bounded by
        # the keys seen in the last window, and no address outlives it by more than one more.
        if now - self._last_sweep < self.window:
            return
        self._last_sweep = now
        expired = [k for k, (start, _) in self._hits.items() if now - start >= self.window]
        for key in expired:
            del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)
