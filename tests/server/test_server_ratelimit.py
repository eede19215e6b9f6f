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
