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
from _thread import allocate_lock

from ._counters import Counters
from ._log import log, setup_debug, step
from ._names import env_prefix_for

TYPE_CHECKING = False  # typing costs ~5 ms at ``import telemetry_rollup``; only mypy needs it here
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any, Callable, NamedTuple

    from ._consent import Decision
    from ._lifecycle import Lifecycle
    from ._timed import Timer

    class SendResult(NamedTuple):
        """What a :meth:`Telemetry.send` call did, in reports."""

        sent: int = 0
        kept: int = 0
        dropped: int = 0

#: flush() and send() wait this long for the buffer lock, then write a spill file
LOCK_WAIT = 1.0
#: makes an instance's lifecycle once (never taken on the hot path or in a signal handler)
_LIFE_LOCK = allocate_lock()


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
            doc="What a :meth:`Telemetry.send` call did, in reports.",
        )
    return cls(sent, kept, dropped)  # type: ignore[no-any-return]


if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name == "SendResult":
            return type(_result())
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _allow_matcher(allow: Iterable[str] | None) -> Callable[[str], bool] | None:
    if allow is None:
        return None
    exact = set()
    patterns = []
    for a in allow:
        if any(ch in a for ch in "*?["):
            patterns.append(a)
        else:
            exact.add(a)
    if not patterns:
        return exact.__contains__
    import fnmatch

    def allowed(name: str) -> bool:
        return name in exact or any(fnmatch.fnmatchcase(name, p) for p in patterns)

    return allowed


class Telemetry:
    """Counts for one app. ``count()`` is the hot path; everything else is rare.

    Two instances for two apps in one process share nothing.
    """

    def __init__(self, app: str | None = None, **options: Any) -> None:
        self._counters = Counters()
        #: ``count(name, n=1)``: add to an in-memory counter. Never raises, never does I/O.
        self.count = self._counters.count
        self.app: str | None = None
        self._options: dict[str, Any] = {}
        self._decision: Decision | None = None  # None: not configured (off)
        self._store: Any = None
        self._life: Lifecycle | None = None
        self._config_written = False
        self.told_this_run = False
        self._run_counted = False
        self._timer_class: type[Timer] | None = None
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
            self._counters.allow = _allow_matcher(allow)
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
        with _LIFE_LOCK:  # two threads' first counts: one lifecycle
            life = self._life
            if life is None:
                from ._lifecycle import Lifecycle

                life = self._life = Lifecycle(self)
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
        self._persist(fast=False, timeout=LOCK_WAIT)

    def _persist(self, *, fast: bool, timeout: float, lock_wait: float | None = None) -> str | None:
        """One persist: take what was counted and append it. ``lock_wait``: how long to wait for a
        persist in progress elsewhere (None: until it ends); then go on without it (the exit path)."""
        if self.app is None or self._counters.off or self._life is None:
            return None
        lock = self._life.persist_lock
        held = lock.acquire() if lock_wait is None else lock.acquire(True, lock_wait)
        try:
            snap = self._counters.take()
            step("persist:taken")
            if not snap:
                return None
            try:
                return self._write(snap, fast=fast, timeout=timeout)
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

    def _write(self, snap: dict[Any, int], *, fast: bool, timeout: float) -> str | None:
        from . import _store
        from ._days import today_iso
        from ._line import encode_snapshot

        store = self._store
        if not self._still_on():
            return None
        store.ensure()
        self._add_run_facts(snap)
        data, rollup = encode_snapshot(snap)

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
            store, rollup, today=today_iso(time.time()), timeout=timeout, fast=fast, check=check, data=data
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
                self._decision = latest
                self._apply_mode()
        return self._decision.mode != "off"

    def _add_run_facts(self, snap: dict[Any, int]) -> None:
        """Once per process that records anything: interactive or not, CI or not (never per call)."""
        if self._run_counted:
            return
        self._run_counted = True
        from ._days import day_of
        from ._persist import run_facts

        day = day_of(time.time())
        for name in run_facts(os.environ):
            snap[(day, name)] = snap.get((day, name), 0) + 1

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
        if self.decision.source != "default" or self.decision.mode != "on":
            return
        from ._consent import notice_text
        from ._persist import show_notice

        text = notice_text(
            self.app or "", self._options["env_prefix"], self._options["notice"], self._options["notice_url"]
        )
        if show_notice(self._store, text):
            self.told_this_run = True
        elif not os.path.lexists(self._store.notice_file):
            log.debug("the notice could not be written to standard error: not shown, nothing is sent")

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
            self._persist(fast=False, timeout=min(LOCK_WAIT, timeout))
            if self.app is None or self._counters.off:
                return _result()
            from ._sender import run

            left = max(0.0, timeout - (time.monotonic() - start))
            res = run(
                self._store,
                timeout=left,
                include_today=include_today,
                allow_send=not self.told_this_run,
                headers=self._headers_now(),
            )
            dropped = res.built.dropped_counts if res.built else 0
            if res.sent is None:
                return _result(0, 0, dropped)
            return _result(res.sent.sent, res.sent.kept, res.sent.rejected)
        except Exception as exc:
            log.debug("send failed: %r", exc)
            return _result()

    def _headers_now(self) -> dict[str, str] | None:
        """The configured headers, the callable evaluated now; None if absent, empty or invalid."""
        from ._transport import clean_headers

        h = self._headers
        try:
            return clean_headers(h() if callable(h) else h)
        except Exception as exc:
            log.debug("headers callable failed, sending without headers: %s", type(exc).__name__)
            return None

    def _due(self) -> bool:
        """Cheap test for the exit hook and the flusher: may an automatic send be worth starting?"""
        decision = self.decision
        if decision.mode != "on" or not self._options.get("endpoint") or self.told_this_run:
            return False
        if decision.source == "default" and not os.path.lexists(self._store.notice_file):
            return False  # nothing is sent before the notice was shown
        from ._due import auto_due

        return auto_due(self._store, self._options["send_interval"], time.time())

    def _background_pass(self) -> None:
        """The flusher's work, every ``flush_interval``: persist, and send when due.

        The flusher is a raw thread, and on Python <= 3.12 the first thread to import
        ``threading`` becomes its "main thread", which interpreter shutdown then waits for. So
        while the host has not imported ``threading``, this pass imports nothing that does: it
        persists with the raw flock and leaves sending to the detached sender."""
        threaded = "threading" in sys.modules
        self._persist(fast=not threaded, timeout=LOCK_WAIT)
        if not self._due():
            return
        if not threaded:
            if self._life is not None:
                self._life.start_sender(subprocess_ok=False)
            return
        from ._sender import run

        run(self._store, timeout=5.0, allow_send=not self.told_this_run, headers=self._headers_now())

    def _after_fork_in_child(self) -> None:
        self._counters.after_fork_in_child()
        self._run_counted = False
