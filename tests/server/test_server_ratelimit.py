from __future__ import annotations

from telemetry_rollup.server.ratelimit import FixedWindowLimiter


def test_limit_per_key_and_retry_after() -> None:
    limiter = FixedWindowLimiter(limit=3, window=60)
    assert [limiter.hit("a", 100.0) for _ in range(3)] == [None, None, None]
    assert limiter.hit("a", 100.5) == 60
    assert limiter.hit("a", 150.2) == 10  # ceil(160 - 150.2)
    assert limiter.hit("b", 150.2) is None  # keys are independent
    assert limiter.hit("a", 160.0) is None  # a new window


def test_retry_after_is_at_least_one_second() -> None:
    limiter = FixedWindowLimiter(limit=1, window=1)
    limiter.hit("a", 0.0)
    assert limiter.hit("a", 0.99) == 1


def test_keys_are_forgotten_after_their_window() -> None:
    limiter = FixedWindowLimiter(limit=1, window=10)
    for i in range(100):
        limiter.hit(f"127.0.0.{i}", 0.0)
    assert len(limiter) == 100
    limiter.hit("other", 25.0)
    assert len(limiter) == 1


def test_address_keys_group_ipv6_by_64() -> None:
    from telemetry_rollup.server.ratelimit import address_key

    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"  # IPv4-mapped: the IPv4 address
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not-an-ip") == "not-an-ip"


def test_blocked_counts_nothing() -> None:
    limiter = FixedWindowLimiter(limit=2, window=60)
    assert limiter.blocked("a", 0.0) is None
    limiter.hit("a", 0.0)
    limiter.hit("a", 1.0)
    assert limiter.blocked("a", 2.0) == 58
    assert limiter.blocked("a", 60.0) is None  # a new window
