"""The hot path: exact across threads, bad input counted not raised, caps, fork."""

from __future__ import annotations

import os
import threading
import time

import pytest

from telemetry_rollup._counters import Counters
from telemetry_rollup._days import day_of


def totals(snap: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, name), c in snap.items():
        out[name] = out.get(name, 0) + c
    return out


def test_threads_counting_at_once_give_exact_totals() -> None:
    c = Counters()
    taken: list[dict] = []
    stop = threading.Event()

    def reader() -> None:  # takes while others count: nothing lost, nothing repeated
        while not stop.is_set():
            taken.append(c.take())

    def worker(k: int) -> None:
        for i in range(20000):
            c.count("a")
            c.count(f"n{i % 7}")
            if i % 100 == 0:
                c.count("b", 3)

    r = threading.Thread(target=reader)
    r.start()
    ws = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for w in ws:
        w.start()
    for w in ws:
        w.join()
    stop.set()
    r.join()
    taken.append(c.take())
    all_: dict[str, int] = {}
    for snap in taken:
        for k, v in totals(snap).items():
            all_[k] = all_.get(k, 0) + v
    assert all_["a"] == 80000
    assert all_["b"] == 4 * 200 * 3
    assert sum(all_[f"n{j}"] for j in range(7)) == 80000


@pytest.mark.parametrize(
    "name,n",
    [
        ("bad name", 1),
        ("", 1),
        ("_reserved", 1),
        (None, 1),
        (["x"], 1),
        ("a" * 65, 1),
        ("ok", -1),
        ("ok", 1.5),
        ("ok", "3"),
        ("é", 1),
        ("a\n", 1),
    ],
)
def test_bad_input_counts_under_invalid_and_never_raises(name: object, n: object) -> None:
    c = Counters()
    c.count(name, n)  # type: ignore[arg-type]
    assert totals(c.take()) == {"_invalid": 1}


def test_allowlist_and_overflow() -> None:
    c = Counters()
    c.allow = lambda n: n.startswith("ok")
    c.count("ok.1")
    c.count("nope")
    for i in range(1100):
        c.count(f"ok{i}")
    t = totals(c.take())
    assert t["_denied"] == 1
    assert t["_overflow"] == 1100 - 999  # ok.1 plus 999 others fill the 1000 slots
    assert sum(v for k, v in t.items() if k.startswith("ok")) == 1000


def test_take_then_restore_keeps_counts() -> None:
    c = Counters()
    c.count("a", 5)
    snap = c.take()
    assert c.take() == {}
    c.restore(snap)
    assert totals(c.take()) == {"a": 5}


def test_off_counts_nothing() -> None:
    c = Counters()
    c.off = True
    c.count("a")
    assert c.take() == {}


def test_day_key_is_utc_day() -> None:
    c = Counters()
    c.count("a")
    ((day, _),) = c.take().keys()
    assert day == day_of(time.time())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_starts_empty() -> None:
    c = Counters()
    os.register_at_fork(after_in_child=c.after_fork_in_child)
    c.count("parent", 7)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        c.count("child")
        os.write(w, repr(totals(c.take())).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    assert os.read(r, 1000) == b"{'child': 1}"
    assert totals(c.take()) == {"parent": 7}
