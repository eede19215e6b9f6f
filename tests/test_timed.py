"""timed() and outcomes: the exact counters, the code cap, async, and no message ever stored or sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import run_py
from receiver import Receiver

import telemetry_rollup
from telemetry_rollup._counters import Counters, duration_bucket
from telemetry_rollup._timed import Timer


def totals(c: Counters) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, name), n in c.take().items():
        out[name] = out.get(name, 0) + n
    return out


class ManifestError(Exception):
    pass


def test_success_counts_name_ok_and_one_bucket() -> None:
    c = Counters()
    with Timer(c, "build"):
        pass
    assert totals(c) == {"build": 1, "build:ok": 1, "build:dur:lt10ms": 1}


def test_exception_counts_its_class_name_and_propagates_unchanged() -> None:
    c = Counters()
    err = ManifestError("secret /home/alice/project")
    with pytest.raises(ManifestError) as info, Timer(c, "build"):
        raise err
    assert info.value is err
    assert totals(c) == {"build": 1, "build:error": 1, "build:error:ManifestError": 1, "build:dur:lt10ms": 1}


def test_explicit_code_without_raising_and_count_with_outcome() -> None:
    c = Counters()
    with Timer(c, "deploy") as t:
        t.error("invalid_manifest")
    c.count("deploy", outcome="error", error_code="invalid_manifest")
    c.count("deploy", outcome="ok")
    assert totals(c) == {
        "deploy": 3,
        "deploy:error": 2,
        "deploy:error:invalid_manifest": 2,
        "deploy:ok": 1,
        "deploy:dur:lt10ms": 1,
    }


def test_codes_are_capped_per_name_and_invalid_codes_are_other() -> None:
    c = Counters()
    for i in range(25):
        c.count("x", outcome="error", error_code=f"code{i}")
    c.count("x", outcome="error", error_code="has space")
    c.count("x", outcome="error", error_code="/etc/passwd")
    t = totals(c)
    assert sum(1 for k in t if k.startswith("x:error:code")) == 20
    assert t["x:error:other"] == 5 + 2


@pytest.mark.parametrize(
    "seconds,bucket", [(0.0, "lt10ms"), (0.05, "lt100ms"), (0.5, "lt1s"), (5, "lt10s"), (30, "lt1m"), (61, "ge1m")]
)
def test_buckets(seconds: float, bucket: str) -> None:
    assert duration_bucket(seconds) == bucket


def test_decorator_sync_and_async() -> None:
    c = Counters()

    @Timer(c, "work")
    def work(x: int) -> int:
        return x * 2

    @Timer(c, "awork")
    async def awork(x: int) -> int:
        await asyncio.sleep(0.02)
        if x < 0:
            raise ValueError("no")
        return x

    assert work(2) == 4
    assert asyncio.run(awork(3)) == 3
    with pytest.raises(ValueError):
        asyncio.run(awork(-1))
    t = totals(c)
    assert t["work:ok"] == 1 and t["awork"] == 2 and t["awork:ok"] == 1 and t["awork:error:ValueError"] == 1
    assert t["awork:dur:lt100ms"] == 2


def test_allowlist_covers_derived_counters() -> None:
    c = Counters()
    c.allow = lambda n: n == "build"
    with Timer(c, "build"):
        pass
    with Timer(c, "other"):
        pass
    t = totals(c)
    assert t["build:ok"] == 1 and t["_denied"] == 3 and "other" not in t


def test_a_message_or_path_never_reaches_disk_or_wire(
    home: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_TELEMETRY", "on")  # explicit consent, for the in-process sender too
    marker = "MARKER-7f3a9c"
    run_py(
        f"""
        import telemetry_rollup as tr
        tr.configure("acme", endpoint={receiver.url!r}, default="on")
        class DeployFailed(Exception):
            pass
        for i in range(3):
            try:
                with tr.timed("deploy"):
                    raise DeployFailed("{marker} /home/alice/secret.txt")
            except DeployFailed:
                pass
        """,
        env={"ACME_TELEMETRY": "on"},
    )
    run_py("import telemetry_rollup as tr; tr.configure('acme'); print(tr.send(5))", env={"ACME_TELEMETRY": "on"})
    from telemetry_rollup import _sender, _store

    _sender.run(_store.AppStore(home / "acme"), timeout=5, force=True, include_today=True)
    assert receiver.totals()["deploy:error:DeployFailed"] == 3
    for p in home.rglob("*"):
        if p.is_file():
            assert marker.encode() not in p.read_bytes() and b"alice" not in p.read_bytes(), p
    for body in receiver.bodies:
        assert marker.encode() not in body and b"alice" not in body


def test_run_facts_are_counted_once_per_process(home: Path) -> None:
    run_py(
        "import telemetry_rollup as tr; tr.configure('acme', default='local', flush_interval=0)\n"
        "for i in range(5):\n    tr.count('x'); tr.flush()",
        env={"CI": "true"},
    )
    text = (home / "acme" / "buffer.jsonl").read_text()
    assert text.count('"_run:script"') == 1 and text.count('"_run:ci"') == 1


def test_module_level_timed_is_the_default_instance() -> None:
    t = telemetry_rollup.timed("x")
    assert isinstance(t, Timer)


@pytest.mark.parametrize("outcome", ["success", "OK", "Ok", "failed", "", 1, 0, True, None.__class__, ["ok"]])
def test_an_outcome_that_is_not_ok_or_error_counts_invalid_and_nothing_else(outcome: object) -> None:
    """A typo (``outcome="success"``) used to count ``op:error``: an outcome is "ok" or "error", and
    anything else is the caller's mistake, recorded as ``_invalid`` with no other counter touched."""
    c = Counters()
    c.count("op")  # already seen today: the fast path must not catch a bad outcome either
    c.take()
    c.count("op", outcome=outcome, error_code="x")  # type: ignore[arg-type]
    c.count("op", 3, outcome=outcome)  # type: ignore[arg-type]
    c.record("op", outcome, None, 0.5)  # type: ignore[arg-type]
    assert totals(c) == {"_invalid": 3}


def test_the_public_count_rejects_a_bad_outcome_too() -> None:
    t = telemetry_rollup.Telemetry()
    t._counters.off = False  # counting without a configured app: in memory only
    t.count("op", outcome="success")
    t.count("op", outcome="error", error_code="E")
    assert totals(t._counters) == {"_invalid": 1, "op": 1, "op:error": 1, "op:error:E": 1}
