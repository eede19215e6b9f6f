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
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from . import _fs, _rollup, _sendstate, _transport
from ._codec import Rollup, decode_lines, decode_report, encode_payload, encode_report
from ._names import CORRUPT
from ._sendstate import SendStats
from ._store import MAX_BUFFER_READ, AppStore

#: The run fact counted once per process that recorded anything on a CI system (_persist.run_facts).
CI_RUN = "_run:ci"


class BuildStats(NamedTuple):
    inputs: int
    new_reports: int
    dropped_counts: int
    changed: bool


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
        with self.store.lock_buffer(timeout):
            try:
                st = os.lstat(self.store.buffer)
            except OSError:
                st = None
            if st is not None:
                if not _fs.planted(st):
                    _fs.replace(self.store.buffer, inputs / f"{_fs.random_name()}.jsonl", rename=True)
                    moved += 1
                else:
                    _fs.remove(self.store.buffer)  # planted link, hard link or FIFO: never followed
        for spill in self.store.spill_files():
            try:
                _fs.replace(spill, inputs / os.path.basename(spill), rename=True)
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
        local: Rollup = {}  # local-only counts: carried, never made into reports
        foreign: list[bytes] = []
        corrupt = 0
        for f in [*inputs, gen / "carry.jsonl"]:
            data = _fs.read_capped(f, MAX_BUFFER_READ)
            if data is None:
                continue
            dec = decode_lines(data)
            rollup = _rollup.merge(rollup, dec.rollup)
            local = _rollup.merge(local, dec.local)
            foreign.extend(dec.foreign)
            corrupt += dec.corrupt
        kept_local = _rollup.drop_expired(local, today=today)
        kept: list[tuple[Path, dict[str, Any]]] = []
        dropped = 0
        changed = bool(inputs) or len(kept_local) != len(local)
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
        carry, _ = _rollup.fit_to_cap(remainder, foreign, today=today, local=kept_local)

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

    def preview(self, *, today: str, include_today: bool = False) -> list[tuple[Path, dict[str, Any]]]:
        """The reports the next send would POST, in order, computed without writing anything.

        For ``show`` and ``view``: looking never changes what will be sent or when, so nothing is
        claimed, rolled up or committed. Reports already closed keep their ids; a report the next
        send will make from the buffer gets its random id then (one is drawn here for the form).
        Mirrors :meth:`prepare`, reading the buffer and spill files where it reads claimed inputs."""
        import uuid

        gen = self._committed()
        files: list[Path] = [Path(self.store.buffer), *map(Path, self.store.spill_files())]
        kept: list[tuple[Path, dict[str, Any]]] = []
        if gen is not None:
            files += [*_list(gen / "inputs", ".jsonl"), gen / "carry.jsonl"]
            kept = [(p, r) for p, r in self.pending_reports(gen) if not _rollup.expired(r["day"], today=today)]
        rollup: Rollup = {}
        for f in files:
            data = _fs.read_capped(f, MAX_BUFFER_READ)
            if data:
                rollup = _rollup.merge(rollup, decode_lines(data).rollup)
        completed, _ = _rollup.split_completed(rollup, today=today, include_today=include_today)
        for day in [d for d in completed if _rollup.expired(d, today=today)]:
            del completed[day]
        new_reports = _rollup.make_reports(completed, lambda: str(uuid.uuid4()))
        excess = {r["id"] for r in _rollup.choose_dropped([*(r for _, r in kept), *new_reports])}
        out = [(p, r) for p, r in kept if r["id"] not in excess]
        out += [(Path(f"{r['id']}.json"), r) for r in new_reports if r["id"] not in excess]
        out.sort(key=lambda pr: (pr[1]["day"], pr[1]["id"]))
        return out

    def request_bodies(
        self, gen: Path, meta: dict[str, Any], pending: list[tuple[Path, dict[str, Any]]] | None = None
    ) -> list[tuple[list[Path], bytes]]:
        """Exactly the bodies the next send would POST, in order, with the report files each covers
        (``pending``: the reports to pack, by default those of ``gen``)."""
        if pending is None:
            pending = self.pending_reports(gen)
        out = []
        # ``ci`` describes the counts, not the sending process: a request holds only reports that
        # count a run on a CI system (``_run:ci``), or only reports that do not.
        for ci in (False, True):
            group = [pr for pr in pending if bool(pr[1]["counts"].get(CI_RUN)) is ci]
            if not group:
                continue
            group_meta = {**meta, "ci": ci}
            sizes = [len(encode_report(r)) for _, r in group]
            overhead = len(encode_payload(group_meta, []))
            for batch in _rollup.pack_requests(sizes, overhead=overhead):
                reports = [group[i][1] for i in batch]
                out.append(([group[i][0] for i in batch], encode_payload(group_meta, reports)))
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
            history.append(_sendstate.history_entry(body, outcome, self.now()))
        stats = SendStats(sent, kept, rejected, refused, outcome)
        _sendstate.record(self.store, history, stats, self.now())
        return stats

    def note_try(self) -> None:
        """An automatic pass is about to send: the next one waits a send interval (state.json)."""
        _sendstate.note_try(self.store, self.now())


def _list(directory: Path, suffix: str) -> list[Path]:
    try:
        return sorted(
            p
            for p in directory.iterdir()
            if p.name.endswith(suffix) and not p.name.startswith(".") and not p.is_symlink()
        )
    except OSError:
        return []


def machine_refused(outcome: _transport.Outcome) -> bool:
    """The server refused this machine's identity (a 403 naming ``machine_id``, which the
    reference server answers to a machine that asked to be forgotten), not its reports."""
    return outcome.status == 403 and outcome.body is not None and outcome.body.get("field") == "machine_id"


def server_too_old(outcome: _transport.Outcome) -> bool:
    """A server that knows only wire format 1 refuses format 2 with a 400 naming ``schema``:
    the reports are fine, the server is not there yet."""
    return outcome.status == 400 and outcome.body is not None and outcome.body.get("field") == "schema"
