"""A model-based test of the whole pipeline, driving the real code on a real directory.

Rules: count from one of several simulated processes, flush, crash a process, start a sender,
advance it one step, crash it (between steps, or after a POST before its acknowledgement), make
the receiver fail (5xx, 4xx, store-then-hang-up), move the clock by hours or days. After every
step: counts delivered (deduplicated by report id) + on disk + in live memory + rejected by the
receiver + lost with a crashed process's memory never exceed the counts made (nothing duplicated),
and fall short of them by no more than what is recorded under ``_dropped`` (nothing lost silently).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from receiver import Receiver

from telemetry_rollup import _codec, _counters, _fs, _rollup, _sender, _store
from telemetry_rollup._days import SECONDS_PER_DAY, iso

NAMES = ["build", "lint", "test"]
RECEIVER = Receiver().start()


class Crash(Exception):
    pass


def user_total(counts: dict[Any, int]) -> int:
    return sum(c for k, c in counts.items() if not (k[1] if isinstance(k, tuple) else k).startswith("_"))


class Pipeline(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.store = _store.AppStore(Path(self.tmp.name) / "acme")
        self.store.ensure()
        RECEIVER.reports.clear()
        RECEIVER.deliveries.clear()
        RECEIVER.rejected.clear()
        RECEIVER.behaviour = "ok"
        self.clock = 1_795_000_000.0
        _counters._time = lambda: self.clock  # the hot path's clock, moved by the model
        self.procs: list[_counters.Counters] = [_counters.Counters() for _ in range(3)]
        self.made = 0
        self.lost_in_memory = 0
        self.sender: Iterator[str] | None = None
        self.meta = {
            "app": "acme",
            "app_version": None,
            "lib_version": "0",
            "os": "linux",
            "arch": "x",
            "python": "3.11",
            "ci": False,
            "machine_id": "00000000-0000-4000-8000-000000000001",
            "machine_key": "0" * 64,
        }

    def teardown(self) -> None:
        _counters._time = time.time
        self.tmp.cleanup()

    # -- processes ------------------------------------------------------------------------------
    @rule(p=st.integers(0, 2), name=st.sampled_from(NAMES), n=st.integers(1, 5))
    def count(self, p: int, name: str, n: int) -> None:
        self.procs[p].count(name, n)
        self.made += n

    @rule(p=st.integers(0, 2))
    def flush(self, p: int) -> None:
        snap = self.procs[p].take()
        today = iso(int(self.clock // SECONDS_PER_DAY))
        _store.append(self.store, _rollup.from_day_numbers(snap), today=today, timeout=1)

    @rule(p=st.integers(0, 2))
    def crash_process(self, p: int) -> None:
        self.lost_in_memory += user_total(self.procs[p].take())  # its memory is gone; disk stays
        self.procs[p] = _counters.Counters()

    # -- the sender -------------------------------------------------------------------------------
    def _steps(self, include_today: bool) -> Iterator[str]:
        pipe = _sender.Pipeline(self.store, now=lambda: self.clock)
        today = iso(int(self.clock // SECONDS_PER_DAY))
        gen = pipe.recover()
        yield "recover"
        pipe.claim(gen, timeout=1)
        yield "claim"
        new, _ = pipe.prepare(gen, today=today, include_today=include_today)
        yield "prepare"
        if new is not None:
            pipe.commit(new)
            yield "commit"
            pipe.cleanup(gen)
            yield "cleanup"
            gen = new
        pipe.send(gen, endpoint=RECEIVER.url, meta=self.meta, deadline=time.monotonic() + 2)
        yield "send"

    @precondition(lambda self: self.sender is None)
    @rule(include_today=st.booleans())
    def start_sender(self, include_today: bool) -> None:
        self.sender = self._steps(include_today)

    @precondition(lambda self: self.sender is not None)
    @rule()
    def advance_sender(self) -> None:
        assert self.sender is not None
        if next(self.sender, None) is None:
            self.sender = None

    @rule(include_today=st.booleans())
    def run_sender_to_the_end(self, include_today: bool) -> None:
        steps = self.sender or self._steps(include_today)
        self.sender = None
        for _ in steps:
            pass

    @precondition(lambda self: self.sender is not None)
    @rule()
    def crash_sender(self) -> None:
        self.sender = None  # what it wrote stays exactly as it is

    @rule()
    def crash_sender_after_a_post(self) -> None:
        pipe = _sender.Pipeline(self.store, now=lambda: self.clock)
        gen = pipe.recover() if self.sender is None else None
        if gen is None:
            return
        self.sender = None

        def die(body: bytes, outcome: Any) -> None:
            raise Crash

        try:
            pipe.send(gen, endpoint=RECEIVER.url, meta=self.meta, deadline=time.monotonic() + 2, on_body=die)
        except Crash:
            pass

    # -- the world --------------------------------------------------------------------------------
    @rule(behaviour=st.sampled_from(["ok", "ok", "500", "400", "store_then_hangup"]))
    def receiver_behaves(self, behaviour: str) -> None:
        if behaviour in ("500", "400"):
            RECEIVER.behaviour, RECEIVER.status = "status", int(behaviour)
        else:
            RECEIVER.behaviour = behaviour

    @rule(hours=st.sampled_from([1, 7, 23, 24, 24 * 3, 24 * 20, 24 * 31]))
    def advance_clock(self, hours: int) -> None:
        self.clock += hours * 3600

    # -- the invariant ----------------------------------------------------------------------------
    def _on_disk(self) -> tuple[dict[str, int], set[str]]:
        rollup: dict[tuple[str, str], int] = {}
        files = [self.store.buffer, *self.store.spill_files()]
        current = _fs.read_capped(self.store.current, 128)
        reports: list[dict[str, Any]] = []
        if current:
            gen = Path(self.store.outbox) / current.decode().strip()
            files += sorted((gen / "inputs").glob("*.jsonl")) + [gen / "carry.jsonl"]
            for p in sorted((gen / "reports").glob("*.json")):
                r = _codec.decode_report(p.read_bytes())
                assert r is not None
                reports.append(r)
        for f in files:
            data = _fs.read_capped(f, 1 << 22)
            if data:
                dec = _codec.decode_lines(data)
                assert dec.corrupt == 0
                rollup = _rollup.merge(rollup, dec.rollup)
        out: dict[str, int] = {}
        for (_, n), c in rollup.items():
            out[n] = out.get(n, 0) + c
        for r in reports:
            if r["id"] in RECEIVER.reports:
                continue  # delivered but not yet acknowledged: counted once, as delivered
            for n, c in r["counts"].items():
                out[n] = out.get(n, 0) + c
        return out, {r["id"] for r in reports}

    @invariant()
    def every_count_is_somewhere_exactly_once(self) -> None:
        delivered = RECEIVER.totals()
        disk, disk_ids = self._on_disk()
        # a report refused with a final 4xx counts as gone once it left the disk (a sender killed
        # after the answer, before deleting it, leaves it to be sent again)
        refused = {
            rid: r for rid, r in RECEIVER.rejected.items() if rid not in RECEIVER.reports and rid not in disk_ids
        }
        memory = sum(user_total(_peek(p)) for p in self.procs)
        # a report answered with a final 4xx is deleted (state.json records it); one the receiver
        # had already stored before hanging up counts as delivered, not as rejected
        rejected = sum(c for r in refused.values() for n, c in r["counts"].items() if not n.startswith("_"))
        dropped = delivered.get("_dropped", 0) + disk.get("_dropped", 0)
        # a _dropped record the receiver then refused was still recorded (state.json shows the refusal)
        dropped += sum(r["counts"].get("_dropped", 0) for r in refused.values())
        present = (
            sum(c for n, c in delivered.items() if not n.startswith("_"))
            + sum(c for n, c in disk.items() if not n.startswith("_"))
            + memory
        )
        lost = self.made - present - rejected - self.lost_in_memory
        info = (self.made, present, delivered, disk, memory, dropped, rejected, self.lost_in_memory)
        # Never duplicated: what exists is at most what was made.
        assert lost >= 0, info
        # Never lost silently: every loss is recorded under _dropped. (_dropped can over-report in
        # one corner: a report the receiver stored while the answer was lost, later aged out.)
        assert lost <= dropped, info


def _peek(c: _counters.Counters) -> dict[Any, int]:
    """What a take() would hand out, without taking it."""
    snap = c.take()
    c.restore(snap)
    return snap


Pipeline.TestCase.settings = settings(
    max_examples=int(os.environ.get("MODEL_EXAMPLES", "150")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestPipeline = Pipeline.TestCase
