"""A new UTC day begins without the fast path reading a clock: at a new name, a take() or a roll()."""

from __future__ import annotations

import pytest

from telemetry_rollup import _counters
from telemetry_rollup._counters import Counters

DAY = 20_000  # a day number
END = (DAY + 1) * 86400.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [END - 1.0]
    monkeypatch.setattr(_counters, "_time", lambda: now[0])
    return now


def test_a_seen_name_stays_on_its_day_until_the_day_rolls(clock: list[float]) -> None:
    c = Counters()
    c.count("a")
    assert c.roll() == pytest.approx(1.0)  # the flusher sleeps until the day's end
    clock[0] = END + 1.0
    c.count("a")  # fast path, no clock read: still the current (previous) day's counter
    assert c.roll() == pytest.approx(86399.0)
    c.count("a")
    assert c.take() == {(DAY, "a"): 2, (DAY + 1, "a"): 1}


def test_a_new_name_or_a_take_begins_the_new_day(clock: list[float]) -> None:
    c = Counters()
    c.count("a")
    clock[0] = END + 5.0
    c.count("b")  # slow path: reads the clock and rolls
    c.count("a")
    assert c.take() == {(DAY, "a"): 1, (DAY + 1, "b"): 1, (DAY + 1, "a"): 1}
    clock[0] = END + 86400.0 + 5.0
    assert c.take() == {}  # rolled: today's dict is new and empty
    c.count("a")
    assert c.take() == {(DAY + 2, "a"): 1}


def test_roll_on_a_fresh_instance_creates_nothing(clock: list[float]) -> None:
    c = Counters()
    assert c.roll() == pytest.approx(1.0)
    assert c.take() == {}
    assert c._cur_day == -1
