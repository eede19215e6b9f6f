"""The Telemetry class: one app's public API over its counters, store, consent and lifecycle.

Counting is ``_counters``; the app directory is ``_store``; when and how the process persists
(exit, fork, multiprocessing, SIGTERM, the flusher thread, the detached sender) is
``_lifecycle``. What is left here: configuration, the consent decision, one persist (re-check the
stored choice, show the notice, write the config, append), and ``send()``.
"""

from __future__ import annotations

import os
import sys
import time

from ._counters import new_counters
from ._log import import_guard, log, setup_debug, step
from ._names import env_prefix_for

TYPE_CHECKING = False  # typing costs ~5 ms at ``import telemetry_rollup``; only mypy needs it here
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Callable, NamedTuple

    from ._consent import Decision
    from ._lifecycle import Lifecycle
    from ._timed import Timer

    class SendResult(NamedTuple):
        """What a :meth:`Telemetry.send` call did, in reports: ``sent`` acknowledged by the
        receiver (2xx), ``kept`` for a later attempt, ``dropped`` refused by the receiver for good
        (a final 4xx: deleted, never retried; ``status()`` counts them as rejected)."""

        sent: int = 0
        kept: int = 0
        dropped: int = 0


#: flush() and send() wait this long for the buffer lock, then write a spill file
LOCK_WAIT = 1.0
#: Set by a telemetry command (``acme telemetry status|show|view|off|...``, cli.py): a run that
#: only looks at or controls telemetry starts no automatic send, in any instance (counts made
#: are still persisted, and sent by a later run).
NO_AUTOSEND = False


# ``import telemetry_rollup`` loads the hot path only (_counters): consent, the lifecycle and the
# SendResult type are loaded by the first configure() or send() that needs them.
def _result(sent: int = 0, kept: int = 0, dropped: int = 0) -> SendResult:
    cls = globals().get("SendResult")
    if cls is None:
        from ._record import record

        cls = globals()["SendResult"] = record(
            "SendResult",
            ("sent", "kept", "dropped"),
            module=__name__,
            defaults=(0, 0, 0),
            doc=(
                "What a :meth:`Telemetry.send` call did, in reports: ``sent`` acknowledged by the"
                " receiver (2xx), ``kept`` for a later attempt, ``dropped`` refused by the receiver for"
                " good (a final 4xx: deleted, never retried; ``status()`` counts them as rejected)."
            ),
        )
    return cls(sent, kept, dropped)  # type: ignore[no-any-return]


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name == "SendResult":
            return type(_result())
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Telemetry:
    """Counts for one app. ``count()`` is the hot path; everything else is rare.

    Two instances for two apps in one process share nothing.
    """

    def __init__(self, app: str | None = None, **options: Any) -> None:
        self._counters = new_counters()
        self._counters.on_fork = self._forked_without_hook
        #: ``count(name, n=1)``: add to an in-memory counter. Never raises, never does I/O.
        self.count = self._counters.count
        self.app: str | None = None
        self._options: dict[str, Any] = {}
        self._decision: Decision | None = None  # None: not configured (off)
        self._store: Any = None
        self._life: Lifecycle | None = None
        self._life_box: dict[int, Lifecycle] = {}
        self._config_written = False
        self.told_this_run = False  # this process showed the notice (the send rule is in time: _due)
        self._run_counted = False
        self._timer_class: type[Timer] | None = None
        self._tag_local = False  # the next persist's counts were made before a switch to on
        self._headers: Any = None
        if app is not None:
            self.configure(app, **options)

    # -- configuration ----------------------------------------------------------------------
    def configure(
        self,
        app: str,
        *,
        endpoint: str | None = None,
        app_version: str | None = None,
        allow: Iterable[str] | None = None,
        default: str = "on",
        env_prefix: str | None = None,
        flush_interval: float = 60.0,
        send_interval: float = 3600.0,
        notice: str | None = None,
        notice_url: str | None = None,
        home: str | os.PathLike[str] | None = None,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str] | None] | None = None,
    ) -> None:
        """Attach this instance to ``app`` (or reconfigure it). Counts made before are kept.

        ``headers``: extra request headers (a bearer token for a signed-in user), as a mapping or a
        callable evaluated at each send. They live only in this process: never written to disk,
        never shown; sends made by this process (``send()``, the background flusher) carry them,
        the detached sender started at exit sends without them. While an app declares headers, a
        401 answer keeps the reports for a later try instead of dropping them.

        ``home`` (or ``TELEMETRY_ROLLUP_HOME``), if relative, is resolved now: a later ``chdir``
        does not move the data. Writes nothing; invalid arguments never raise: telemetry is
        switched off and the reason logged at debug level.
        """
        try:
            setup_debug()
            from ._validate import configure_problem

            problem = configure_problem(app, default=default, env_prefix=env_prefix, endpoint=endpoint)
            if problem is not None:
                raise ValueError(problem)
            if self.app is not None and self.app != app:
                self.flush()  # what was counted belongs to the previous app
            from . import _paths
            from ._store import AppStore

            prefix = env_prefix or env_prefix_for(app)
            root = os.path.abspath(os.fspath(home)) if home else _paths.data_root()
            self.app = app
            self._store = AppStore(os.path.join(root, app))
            self._config_written = False
            self._options = {
                "endpoint": endpoint,
                "app_version": app_version,
                "allow": sorted(allow) if allow is not None else None,
                "default": default,
                "env_prefix": prefix,
                "flush_interval": float(flush_interval),
                "send_interval": float(send_interval),
                "notice": notice,
                "notice_url": notice_url,
                "home": root,
            }
            self._headers = headers
            from ._validate import allow_matcher

            self._counters.allow = allow_matcher(allow)
            self._decision = self._decide()
            self._apply_mode()
        except Exception as exc:
            log.debug("telemetry is off for %r in this process: %s", app, exc)
            self._counters.off = True
            self._counters.clear()

    def _decide(self) -> Decision:
        from ._consent import Decision, env_decision, resolve

        prefix = self._options["env_prefix"]
        decided = env_decision(os.environ, prefix)
        if decided is not None and decided.mode == "off":
            return decided
        unsafe = self._store.unsafe()
        if unsafe is not None:  # anyone else could plant files or forge counts there
            log.debug("telemetry is off: %s", unsafe)
            return Decision("off", "unsafe")
        if decided is not None:
            return decided
        return resolve({}, prefix, self._store.stored_mode(), self._options["default"])

    def _apply_mode(self) -> None:
        decision = self._decision
        assert decision is not None  # configure() made it
        if decision.mode == "off":
            self._counters.off = True
            self._counters.clear()
            if self._life is not None:
                self._life.stop_flusher()
            return
        self._counters.off = False
        if self._life is not None or self._counters.pending():  # counted before configure()
            self._first_count()
        else:
            self._counters.on_new_name = self._first_count

    def _first_count(self) -> None:
        """The lifecycle (exit and fork hooks, the flusher) from the first count on: a run that
        records nothing (``--help``, ``--version``) loads, registers and starts none of it."""
        # A fork waits for this (it imports the lifecycle, atexit, maybe threading): see import_guard.
        with import_guard("lifecycle"):
            life = self._life
            if life is None:
                from ._lifecycle import Lifecycle

                # Two threads' first counts make one lifecycle: dict.setdefault is one atomic step.
                # Not a lock of our own: a host that forked while another thread held it left the
                # child blocked on it for good (its first count runs this again).
                life = self._life = self._life_box.setdefault(0, Lifecycle(self))
            life.register()
            self._counters.on_new_name = life.on_first_count
            life.on_first_count()

    @property
    def mode(self) -> str:
        return self.decision.mode

    @property
    def decision(self) -> Decision:
        if self._decision is None:
            from ._consent import Decision

            return Decision("off", "unconfigured")
        return self._decision

    # -- persisting ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Append the in-memory counts to the buffer now. Never raises."""
        self._persist(timeout=LOCK_WAIT)

    def _persist(self, *, timeout: float, lock_wait: float | None = None) -> str | None:
        """One persist: take what was counted and append it. ``lock_wait``: how long to wait for a
        persist in progress elsewhere (None: until it ends); then go on without it (the exit path)."""
        if self.app is None or self._counters.off or self._life is None:
            return None
        self._counters.forked()  # no fork hook here: a child must not persist its parent's counts
        lock = self._life.persist_lock
        held = lock.acquire() if lock_wait is None else lock.acquire(True, lock_wait)
        try:
            snap = self._counters.take()
            step("persist:taken")
            if not snap:
                return None
            try:
                return self._write(snap, timeout=timeout)
            except BaseException as exc:
                self._counters.restore(snap)  # a later flush retries them
                if not isinstance(exc, Exception):
                    raise  # KeyboardInterrupt, SystemExit: the counts are back, the host decides
                log.debug("persist failed, counts kept in memory: %r", exc)
                return None
        finally:
            if held:
                lock.release()
            step("persist:done")

    def _write(self, snap: dict[Any, int], *, timeout: float) -> str | None:
        from . import _store
        from ._days import today_iso
        from ._line import encode_snapshot

        store = self._store
        if not self._still_on():
            return None
        store.ensure()
        self._add_run_facts(snap)
        # Go's rule: what was counted while local, just before a switch to on, or before the
        # notice was shown (it is shown in this persist at the earliest) stays on this machine.
        decision = self.decision
        local = (
            self._tag_local
            or decision.mode != "on"
            or (decision.source == "default" and not os.path.lexists(store.notice_file))
        )
        self._tag_local = False
        data, rollup = encode_snapshot(snap, local=local)

        def check(locked: bool) -> bool:
            # Checked again under the buffer lock, which ``off`` holds while it deletes: a
            # process that raced with ``off`` recreates nothing, not even the notice or config.
            if not self._still_on():
                if locked:
                    try:
                        os.unlink(store.buffer_lock)
                    except OSError:
                        pass
                return False
            if locked:  # shown by the holder of the buffer lock only: exactly one process shows it
                self._maybe_notice()
            self._write_config()
            return True

        result = _store.append(
            store, rollup, today=today_iso(time.time()), timeout=timeout, check=check, data=data, local=local
        )
        log.debug("persisted %d counters (%s)", len(snap), result)
        return None if result == "off" else result

    def _still_on(self) -> bool:
        """A choice stored by another process (``off`` above all) wins before anything is written."""
        from ._consent import resolve

        assert self._decision is not None
        if self._decision.source in ("stored", "default"):
            latest = resolve({}, self._options["env_prefix"], self._store.stored_mode(), self._options["default"])
            if latest != self._decision:
                prev = self._decision
                if prev.mode != "on" or (prev.source == "default" and not os.path.lexists(self._store.notice_file)):
                    self._tag_local = True  # counted while local, or unannounced, before the switch: never sent
                self._decision = latest
                self._apply_mode()
        return self._decision.mode != "off"

    def _add_run_facts(self, snap: dict[Any, int]) -> None:
        """Once per process that records anything: interactive or not, CI or not (never per call)."""
        if not self._run_counted:
            self._run_counted = True
            from ._persist import add_run_facts

            add_run_facts(snap, os.environ, time.time())

    def timed(self, name: str) -> Timer:
        """``with t.timed("build"):`` or ``@t.timed("build")``: count ``name`` with its outcome,
        error code (the exception's class name) and duration bucket. Exceptions propagate unchanged."""
        timer = self._timer_class
        if timer is None:
            from ._timed import Timer

            timer = self._timer_class = Timer
        return timer(self._counters, name)

    def _maybe_notice(self) -> None:
        """Under the buffer lock: the first persist of an app on by default shows the notice."""
        from ._persist import maybe_notice

        if maybe_notice(
            self._store, self.decision, str(self.app), self._options, authenticates=self._headers is not None
        ):
            self.told_this_run = True

    def _write_config(self) -> None:
        """config.json, written only when its bytes would change (once per app version)."""
        if self._config_written:
            return
        from ._persist import config_bytes, write_config

        write_config(self._store, config_bytes(str(self.app), self._options, authenticates=self._headers is not None))
        self._config_written = True

    # -- sending -------------------------------------------------------------------------------
    def send(self, timeout: float = 5.0, *, include_today: bool = False) -> SendResult:
        """Flush, then deliver the reports that are due, within ``timeout`` for the whole call."""
        start = time.monotonic()
        try:
            self._persist(timeout=min(LOCK_WAIT, timeout))
            if self.app is None or self._counters.off:
                return _result()
            from ._sender import run

            left = max(0.0, timeout - (time.monotonic() - start))
            res = run(self._store, timeout=left, include_today=include_today, headers=self._headers_now())
            if res.sent is None:
                return _result()
            # dropped: reports the receiver refused for good (a final 4xx), deleted, never retried
            return _result(res.sent.sent, res.sent.kept, res.sent.rejected)
        except Exception as exc:
            log.debug("send failed: %r", exc)
            return _result()

    def _headers_now(self) -> dict[str, str] | None:
        """The configured headers, the callable evaluated now; None if absent, empty or invalid."""
        from ._transport import headers_now

        return headers_now(self._headers)

    def _due(self) -> bool:
        """Cheap test for the exit hook and the flusher: may an automatic send be worth starting?"""
        from ._due import autosend_due

        return not NO_AUTOSEND and autosend_due(self.decision, self._options, self._store, time.time())

    def _after_fork_in_child(self) -> None:
        self._counters.after_fork_in_child()
        self._run_counted = False

    def _forked_without_hook(self) -> None:
        """A forked child's first slow-path count or persist, where ``os.register_at_fork`` is
        missing: what the fork hooks would have done (the counters are reset already). Imports
        nothing: the parent may have forked in the middle of an import."""
        if self._life is not None:
            self._life._after_fork_in_child()
        else:
            self._run_counted = False
        transport = sys.modules.get("telemetry_rollup._transport")
        if transport is not None:
            transport._reset_after_fork()
