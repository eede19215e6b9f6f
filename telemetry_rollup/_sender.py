"""Orchestration: recover -> claim -> build (roll up, commit) -> send -> acknowledge or keep.

The steps are public so tests (and the model-based test) drive the real code one step at a
time. Every step runs while holding ``sender.lock``: a sender that holds it knows that any
claimed input it finds belongs to a sender that died, because a live one would hold the lock.

Crash safety rests on one commit point. Claimed inputs are moved (renamed) into the committed
generation directory named by ``outbox/CURRENT``. ``build`` writes the next generation (kept
reports, new reports, the carried remainder) into a fresh directory, then replaces CURRENT
atomically, then deletes the old generation with its inputs. A kill before the replace leaves
the old generation, inputs included, as the truth (the half-built one is garbage); a kill after
it leaves the new one. No count can be in both, so none is duplicated or lost. See
docs/design.md for the full argument.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import _fs, _rollup, _transport
from ._codec import Rollup, decode_lines, decode_report, encode_payload, encode_report
from ._days import today_iso
from ._due import is_ci
from ._endpoint import endpoint_problem
from ._names import CORRUPT
from ._store import MAX_BUFFER_READ, AppStore
from ._version import __version__

HISTORY_LEN = 30
MIN_BACKOFF = 60.0
MAX_BACKOFF = 86400.0


class BuildStats(NamedTuple):
    inputs: int
    new_reports: int
    dropped_counts: int
    changed: bool


class SendStats(NamedTuple):
    sent: int = 0
    kept: int = 0
    rejected: int = 0
    refused_counters: int = 0
    outcome: _transport.Outcome | None = None


class Pipeline:
    """The sender's steps over one app directory. Call only while holding its sender lock."""

    def __init__(self, store: AppStore, *, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.now = now

    # -- step 1: recover --------------------------------------------------------------------
    def recover(self) -> Path:
        """The committed generation (made if there is none); everything else in outbox/ is garbage
        left by a sender that died before or after its commit, and is removed."""
        outbox = Path(self.store.outbox)
        _fs.ensure_dir(outbox, replace=True)  # a planted link or file there is removed, never followed
        gen = self._committed()
        if gen is None:
            gen = self._new_gen()
            self._commit(gen)
        for p in list(outbox.iterdir()):
            if p.name in ("CURRENT", gen.name):
                continue
            if p.is_dir() and not p.is_symlink():
                import shutil  # here, not at the top: a CLI's exit hook imports this module

                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()
        return gen

    def _committed(self) -> Path | None:
        data = _fs.read_capped(self.store.current, 128)
        if not data:
            return None
        name = data.decode("ascii", "replace").strip()
        gen = Path(self.store.outbox) / name
        if not name.startswith("gen-") or "/" in name or not gen.is_dir() or gen.is_symlink():
            return None
        return gen

    def _new_gen(self) -> Path:
        gen = Path(self.store.outbox) / f"gen-{_fs.random_name()}"
        os.mkdir(gen, 0o700)
        os.mkdir(gen / "inputs", 0o700)
        os.mkdir(gen / "reports", 0o700)
        return gen

    def _commit(self, gen: Path) -> None:
        _fs.atomic_write(self.store.current, gen.name.encode() + b"\n", fsync=True)

    # -- step 2: claim ------------------------------------------------------------------------
    def claim(self, gen: Path, *, timeout: float) -> int:
        """Move the buffer and any spill files into the committed generation's inputs/.

        Under the buffer lock, so no append is half-way through the file being moved. Each is a
        rename (atomic); the name is random, never a PID."""
        moved = 0
        inputs = gen / "inputs"
        with self.store.lock_buffer(timeout, fast=False):
            try:
                st = os.lstat(self.store.buffer)
            except OSError:
                st = None
            if st is not None:
                if not _fs.planted(st):
                    os.rename(self.store.buffer, inputs / f"{_fs.random_name()}.jsonl")
                    moved += 1
                else:
                    _fs.remove(self.store.buffer)  # planted link, hard link or FIFO: never followed
        for spill in self.store.spill_files():
            try:
                os.rename(spill, inputs / os.path.basename(spill))
                moved += 1
            except OSError:
                pass
        return moved

    # -- step 3: build and commit ---------------------------------------------------------------
    def build(self, gen: Path, *, today: str, include_today: bool = False) -> tuple[Path, BuildStats]:
        """prepare + commit + cleanup: roll the generation into its successor and make that the truth."""
        new, stats = self.prepare(gen, today=today, include_today=include_today)
        if new is None:
            return gen, stats
        self.commit(new)
        self.cleanup(gen)
        return new, stats

    def prepare(self, gen: Path, *, today: str, include_today: bool = False) -> tuple[Path | None, BuildStats]:
        """Write the next generation (kept reports, new reports, carried remainder) into a new
        directory. Nothing is committed yet: a kill now leaves ``gen`` the truth. Returns None
        when nothing would change."""
        inputs = _list(gen / "inputs", ".jsonl")
        rollup: Rollup = {}
        foreign: list[bytes] = []
        corrupt = 0
        for f in [*inputs, gen / "carry.jsonl"]:
            data = _fs.read_capped(f, MAX_BUFFER_READ)
            if data is None:
                continue
            dec = decode_lines(data)
            rollup = _rollup.merge(rollup, dec.rollup)
            foreign.extend(dec.foreign)
            corrupt += dec.corrupt
        kept: list[tuple[Path, dict[str, Any]]] = []
        dropped = 0
        changed = bool(inputs)
        for p in _list(gen / "reports", ".json"):
            report = decode_report(_fs.read_capped(p, MAX_BUFFER_READ, links_ok=True) or b"")
            if report is None:
                corrupt += 1
                changed = True
            elif _rollup.expired(report["day"], today=today):
                dropped += _rollup.totals([report])
                changed = True
            else:
                kept.append((p, report))
        completed, remainder = _rollup.split_completed(rollup, today=today, include_today=include_today)
        if not changed and not completed and not corrupt:
            return None, BuildStats(0, 0, 0, False)
        for day in [d for d in completed if _rollup.expired(d, today=today)]:
            dropped += sum(completed.pop(day).values())
        import uuid

        new_reports = _rollup.make_reports(completed, lambda: str(uuid.uuid4()))
        excess = _rollup.choose_dropped([*(r for _, r in kept), *new_reports])
        excess_ids = {r["id"] for r in excess}
        dropped += _rollup.totals(excess)
        if corrupt:
            remainder[(today, CORRUPT)] = remainder.get((today, CORRUPT), 0) + corrupt
        _rollup.add_dropped(remainder, dropped, today)
        carry, _ = _rollup.fit_to_cap(remainder, foreign, today=today)

        new = self._new_gen()
        for p, r in kept:
            if r["id"] in excess_ids:
                continue
            try:
                os.link(p, new / "reports" / p.name)
            except OSError:
                _fs.atomic_write(new / "reports" / p.name, encode_report(r), fsync=True)
        for r in new_reports:
            if r["id"] not in excess_ids:
                _fs.atomic_write(new / "reports" / f"{r['id']}.json", encode_report(r), fsync=True)
        if carry:
            _fs.atomic_write(new / "carry.jsonl", carry, fsync=True)
        return new, BuildStats(len(inputs), len(new_reports), dropped, True)

    def commit(self, new: Path) -> None:
        """The commit point: one atomic replace of outbox/CURRENT makes ``new`` the truth."""
        self._commit(new)

    def cleanup(self, old: Path) -> None:
        """Remove the superseded generation, with the inputs it consumed (recover() would too)."""
        import shutil

        shutil.rmtree(old, ignore_errors=True)

    # -- step 4: send ---------------------------------------------------------------------------
    def pending_reports(self, gen: Path) -> list[tuple[Path, dict[str, Any]]]:
        out = []
        for p in _list(gen / "reports", ".json"):
            r = decode_report(_fs.read_capped(p, MAX_BUFFER_READ, links_ok=True) or b"")
            if r is not None:
                out.append((p, r))
        out.sort(key=lambda pr: (pr[1]["day"], pr[1]["id"]))
        return out

    def request_bodies(self, gen: Path, meta: dict[str, Any]) -> list[tuple[list[Path], bytes]]:
        """Exactly the bodies the next send would POST, in order, with the report files each covers."""
        pending = self.pending_reports(gen)
        if not pending:
            return []
        sizes = [len(encode_report(r)) for _, r in pending]
        overhead = len(encode_payload(meta, []))
        out = []
        for batch in _rollup.pack_requests(sizes, overhead=overhead):
            out.append(([pending[i][0] for i in batch], encode_payload(meta, [pending[i][1] for i in batch])))
        return out

    def send(
        self,
        gen: Path,
        *,
        endpoint: str,
        meta: dict[str, Any],
        deadline: float,
        headers: dict[str, str] | None = None,
        on_body: Callable[[bytes, _transport.Outcome], None] | None = None,
        keep_on_401: bool = False,
    ) -> SendStats:
        """POST the due reports; acknowledge (delete) on 2xx, drop on a final 4xx, keep otherwise.

        ``keep_on_401``: the app authenticates (it declared headers), so a 401 means "this token,
        not these reports": they are kept and retried later (with a fresh token or anonymously).

        ``deadline`` is a ``time.monotonic()`` instant bounding the whole call."""
        sent = rejected = kept = refused = 0
        outcome: _transport.Outcome | None = None
        bodies = self.request_bodies(gen, meta)
        history: list[dict[str, Any]] = []
        for i, (paths, body) in enumerate(bodies):
            remaining = deadline - time.monotonic()
            outcome = _transport.post(endpoint, body, timeout=remaining, headers=headers)
            if keep_on_401 and outcome.status == 401:
                outcome = outcome._replace(kind="retry", detail=outcome.detail + " (credentials refused: kept)")
            elif machine_refused(outcome):
                # Never "delete 30 days of reports": a new identity, and the reports go out under it.
                from . import _identity

                _identity.reset(self.store.dir)
                detail = outcome.detail + " (machine id refused: a new one made)"
                outcome = outcome._replace(kind="retry", detail=detail)
            elif server_too_old(outcome):
                outcome = outcome._replace(kind="retry", detail=outcome.detail + " (server too old for format 2: kept)")
            if on_body is not None:
                on_body(body, outcome)
            if outcome.kind == "retry":
                kept = sum(len(p) for p, _ in bodies[i:])
                break
            for p in paths:
                with contextlib.suppress(OSError):
                    os.unlink(p)
            if outcome.kind == "sent":
                sent += len(paths)
                if outcome.body and type(outcome.body.get("refused")) is int:
                    refused += outcome.body["refused"]
            else:
                rejected += len(paths)
            history.append(_history_entry(body, outcome, self.now()))
        self._record(history, sent, rejected, kept, refused, outcome)
        return SendStats(sent, kept, rejected, refused, outcome)

    def _record(
        self,
        history: list[dict[str, Any]],
        sent: int,
        rejected: int,
        kept: int,
        refused: int,
        outcome: _transport.Outcome | None,
    ) -> None:
        state = self.store.state()
        now = self.now()
        raw_totals = state.get("totals")
        totals: dict[str, Any] = raw_totals if isinstance(raw_totals, dict) else {}
        for key, n in (("reports_sent", sent), ("reports_rejected", rejected), ("counters_refused", refused)):
            totals[key] = int(totals.get(key, 0) or 0) + n
        for h in history:
            key = "counts_sent" if h["result"] == "sent" else "counts_rejected"
            totals[key] = int(totals.get(key, 0) or 0) + h["counts"]
        state["totals"] = totals
        raw_history = state.get("history")
        old: list[Any] = raw_history if isinstance(raw_history, list) else []
        state["history"] = (old + history)[-HISTORY_LEN:]
        if outcome is not None:
            state["last_attempt"] = {
                "at": now,
                "result": outcome.kind,
                "status": outcome.status,
                "detail": outcome.detail,
                "sent": sent,
                "rejected": rejected,
                "kept": kept,
            }
            if outcome.kind == "retry":
                prev = float(state.get("backoff_s", 0) or 0)
                backoff = MIN_BACKOFF if prev <= 0 else min(MAX_BACKOFF, prev * 2)
                import random

                delay = backoff * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto
                if outcome.retry_after is not None:
                    delay = max(delay, min(outcome.retry_after, MAX_BACKOFF))
                state["backoff_s"] = backoff
                state["next_attempt_at"] = now + delay
            else:
                state["backoff_s"] = 0
                state["next_attempt_at"] = 0
        self.store.write_state(state)

    def note_try(self) -> None:
        state = self.store.state()
        state["last_auto_try_at"] = self.now()
        self.store.write_state(state)


def _history_entry(body: bytes, outcome: _transport.Outcome, now: float) -> dict[str, Any]:
    import orjson

    obj = orjson.loads(body)
    reports = obj["reports"]
    return {
        "at": now,
        "result": outcome.kind,
        "status": outcome.status,
        "reports": len(reports),
        "days": sorted({r["day"] for r in reports}),
        "counts": sum(sum(r["counts"].values()) for r in reports),
    }


def _list(directory: Path, suffix: str) -> list[Path]:
    try:
        return sorted(
            p
            for p in directory.iterdir()
            if p.name.endswith(suffix) and not p.name.startswith(".") and not p.is_symlink()
        )
    except OSError:
        return []


def run_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The machine facts of wire format v1: coarse tokens only (TELEMETRY.md)."""
    plat = sys.platform
    os_name = {"darwin": "macos", "win32": "windows", "cygwin": "windows"}.get(
        plat, plat.rstrip("0123456789") or "unknown"
    )
    import platform

    arch = "".join(ch for ch in platform.machine().lower() if ch.isalnum() or ch in "_.+-")[:32] or "unknown"
    return {
        "os": os_name,
        "arch": arch,
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "ci": is_ci(environ),
        "lib_version": __version__,
    }


#: Shown by ``show`` before the first send has made the machine's key and id.
NO_ID = "00000000-0000-4000-8000-000000000000"


def meta_for(
    store: AppStore, config: Mapping[str, Any], environ: Mapping[str, str], *, create_id: bool
) -> dict[str, Any]:
    """The envelope of a request; ``create_id`` makes the machine's key (under the sender lock)."""
    from . import _identity

    ident = _identity.load(store.dir, create=create_id)
    meta = run_environment(environ)
    meta.update(
        app=store.app,
        app_version=config.get("app_version") if isinstance(config.get("app_version"), str) else None,
        machine_id=ident.machine_id if ident else NO_ID,
        machine_key=ident.key if ident else "0" * 64,
    )
    return meta


def machine_refused(outcome: _transport.Outcome) -> bool:
    """The server refused this machine's identity (a 403 naming ``machine_id``, which the
    reference server answers to a machine that asked to be forgotten), not its reports."""
    return outcome.status == 403 and outcome.body is not None and outcome.body.get("field") == "machine_id"


def server_too_old(outcome: _transport.Outcome) -> bool:
    """A server that knows only wire format 1 refuses format 2 with a 400 naming ``schema``:
    the reports are fine, the server is not there yet."""
    return outcome.status == 400 and outcome.body is not None and outcome.body.get("field") == "schema"


class RunResult(NamedTuple):
    app: str
    mode: str
    busy: bool = False
    built: BuildStats | None = None
    sent: SendStats | None = None
    skipped: str = ""  # why nothing was sent, when nothing was


def decide(store: AppStore, environ: Mapping[str, str]) -> Any:
    from ._consent import Decision, resolve
    from ._names import env_prefix_for

    if store.unsafe() is not None:  # a directory others can write to: nothing in it is used
        return Decision("off", "unsafe")
    config = store.config()
    prefix = config.get("env_prefix") if isinstance(config.get("env_prefix"), str) else env_prefix_for(store.app)
    default = config.get("default") if config.get("default") in ("on", "local", "off") else "on"
    return resolve(environ, str(prefix), store.stored_mode(), str(default))


def run(
    store: AppStore,
    *,
    timeout: float,
    include_today: bool = False,
    force: bool = False,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], float] = time.time,
    allow_send: bool = True,
    headers: dict[str, str] | None = None,
) -> RunResult:
    """One sender pass over an app: recover, claim, roll up, and send what is due.

    ``force`` (an explicit flush) waits for the sender lock and ignores the back-off; an
    automatic pass takes the lock only if it is free and respects it. Bounded by ``timeout``.
    """
    env = os.environ if environ is None else environ
    deadline = time.monotonic() + timeout
    decision = decide(store, env)
    if decision.mode == "off":
        why = f": {store.unsafe()}" if decision.source == "unsafe" else ""
        return RunResult(store.app, "off", skipped=f"off ({decision.source}{why})")
    from ._store import LockTimeout

    try:
        held = store.lock_sender(max(0.0, deadline - time.monotonic()) if force else 0.0)
    except LockTimeout:
        return RunResult(store.app, decision.mode, busy=True, skipped="another sender is running")
    with held:
        if store.stored_mode() == "off":  # switched off while we waited: never recreate anything
            with contextlib.suppress(OSError):
                os.unlink(store.sender_lock)  # held: a lock file made after off's deletion goes too
            return RunResult(store.app, "off", skipped="off (stored)")
        pipe = Pipeline(store, now=now)
        gen = pipe.recover()
        try:
            pipe.claim(gen, timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        except LockTimeout:
            pass  # appenders hold it; their lines wait for the next pass
        gen, built = pipe.build(gen, today=today_iso(now()), include_today=include_today)
        config = store.config()
        endpoint = config.get("endpoint")
        why = ""
        if decision.mode != "on":
            why = f"mode is {decision.mode} ({decision.source})"
        elif not isinstance(endpoint, str) or not endpoint:
            why = "no endpoint configured"
        elif endpoint_problem(endpoint) is not None:
            why = f"the endpoint in config.json is refused ({endpoint_problem(endpoint)})"
        elif not allow_send:
            why = "the notice was shown in this run: nothing is sent before the user could say no"
        elif decision.source == "default" and not os.path.isfile(store.notice_file):
            why = "the notice has not been shown yet"
        elif not force and now() < float(store.state().get("next_attempt_at", 0) or 0):
            why = "backing off after a failed attempt"
        elif not pipe.pending_reports(gen):
            why = "nothing due"
        if why:
            return RunResult(store.app, decision.mode, built=built, skipped=why)
        if not force:
            pipe.note_try()
        meta = meta_for(store, config, env, create_id=True)
        keep_on_401 = bool(headers) or config.get("auth_headers") is True
        stats = pipe.send(
            gen, endpoint=str(endpoint), meta=meta, deadline=deadline, headers=headers, keep_on_401=keep_on_401
        )
        return RunResult(store.app, decision.mode, built=built, sent=stats)
