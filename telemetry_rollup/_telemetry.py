"""The Telemetry class: one app's counters, its exit hook, its background flusher."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Mapping

from ._consent import Decision, env_decision, notice_text, resolve
from ._counters import Counters
from ._names import env_prefix_for

TYPE_CHECKING = False  # typing costs ~5 ms at ``import telemetry_rollup``; only mypy needs it here
if TYPE_CHECKING:
    from typing import Any, Callable, NamedTuple

    from ._timed import Timer

    class SendResult(NamedTuple):
        """What a :meth:`Telemetry.send` call did, in reports."""

        sent: int = 0
        kept: int = 0
        dropped: int = 0

else:
    from collections import namedtuple

    SendResult = namedtuple("SendResult", ["sent", "kept", "dropped"], defaults=(0, 0, 0))
    SendResult.__doc__ = "What a :meth:`Telemetry.send` call did, in reports."


from ._log import log  # noqa: E402 - after the SendResult definition it belongs beside

EXIT_BUDGET = 2.0  # seconds the exit hook may take, everything included
EXIT_LOCK_WAIT = 1.0  # then the lines go to a spill file


def _debug_enabled() -> bool:
    return os.environ.get("TELEMETRY_ROLLUP_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _setup_debug() -> None:
    if not _debug_enabled():
        return
    import logging

    log = logging.getLogger("telemetry_rollup")
    if not any(getattr(h, "_telemetry_rollup", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stderr)
        from ._log import debug_formatter

        handler.setFormatter(debug_formatter())
        handler._telemetry_rollup = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)


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
        self._decision = Decision("off", "unconfigured")
        self._store: Any = None
        self._persist_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._hooks_registered = False
        self._config_written = False
        self.told_this_run = False
        self._run_counted = False
        self._timer_class: type[Timer] | None = None
        self._mp_hooked = False
        self._persisting_in: int | None = None  # thread ident inside _persist, for the SIGTERM handler
        self._term_pending = False
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
        home: str | None = None,
        headers: Mapping[str, str] | Callable[[], Mapping[str, str] | None] | None = None,
    ) -> None:
        """Attach this instance to ``app`` (or reconfigure it). Counts made before are kept.

        ``headers``: extra request headers (a bearer token for a signed-in user), as a mapping or a
        callable evaluated at each send. They live only in this process: never written to disk,
        never shown; sends made by this process (``send()``, the background flusher) carry them,
        the detached sender started at exit sends without them. While an app declares headers, a
        401 answer keeps the reports for a later try instead of dropping them.

        Invalid arguments never raise: telemetry is switched off and the reason logged at debug level.
        """
        try:
            _setup_debug()
            from ._validate import configure_problem

            problem = configure_problem(app, default=default, env_prefix=env_prefix, endpoint=endpoint)
            if problem is not None:
                raise ValueError(problem)
            if self.app is not None and self.app != app:
                self.flush()  # what was counted belongs to the previous app
            from pathlib import Path

            from . import _paths
            from ._store import AppStore

            prefix = env_prefix or env_prefix_for(app)
            root = Path(home) if home else _paths.data_root()
            self.app = app
            self._store = AppStore(root / app)
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
                "home": str(root),
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
        prefix = self._options["env_prefix"]
        decided = env_decision(os.environ, prefix)
        if decided is not None:
            return decided
        return resolve({}, prefix, self._store.stored_mode(), self._options["default"])

    def _apply_mode(self) -> None:
        if self._decision.mode == "off":
            self._counters.off = True
            self._counters.clear()
            self._stop.set()
            return
        self._counters.off = False
        if not self._hooks_registered:
            self._hooks_registered = True
            ref = weakref.ref(self)

            def at_exit() -> None:
                obj = ref()
                if obj is not None:
                    obj._at_exit()

            def after_fork() -> None:
                obj = ref()
                if obj is not None:
                    obj._after_fork_in_child()

            atexit.register(at_exit)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=after_fork)
        if self._options["flush_interval"] > 0:
            self._counters.on_new_name = self._on_first_count
        else:
            self._counters.on_new_name = self._install_mp_child_hooks

    @property
    def mode(self) -> str:
        return self._decision.mode

    @property
    def decision(self) -> Decision:
        return self._decision

    # -- persisting ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Append the in-memory counts to the buffer now. Never raises."""
        self._persist(fast=False, timeout=EXIT_LOCK_WAIT)

    def _persist(self, *, fast: bool, timeout: float) -> str | None:
        if self.app is None or self._counters.off:
            return None
        with self._persist_lock:
            self._persisting_in = threading.get_ident()
            try:
                snap = self._counters.take()
                if not snap:
                    return None
                try:
                    return self._write(snap, fast=fast, timeout=timeout)
                except Exception as exc:
                    log.debug("persist failed, counts kept in memory: %r", exc)
                    self._counters.restore(snap)
                    return None
            finally:
                self._persisting_in = None
                if self._term_pending:
                    self._die_of_sigterm()

    def _write(self, snap: dict[Any, int], *, fast: bool, timeout: float) -> str | None:
        from . import _store
        from ._days import today_iso
        from ._rollup import from_day_numbers

        store = self._store
        if not self._still_on():
            return None
        store.ensure()
        self._add_run_facts(snap)

        def under_lock() -> bool:
            # Checked again under the buffer lock, which ``off`` holds while it deletes: a
            # process that raced with ``off`` recreates nothing, not even the notice or config.
            if not self._still_on():
                try:
                    os.unlink(store.buffer_lock)
                except OSError:
                    pass
                return False
            self._maybe_notice()
            self._write_config()
            return True

        result = _store.append(
            store, from_day_numbers(snap), today=today_iso(time.time()), timeout=timeout, fast=fast, check=under_lock
        )
        log.debug("persisted %d counters (%s)", len(snap), result)
        return None if result == "off" else result

    def _still_on(self) -> bool:
        """A choice stored by another process (``off`` above all) wins before anything is written."""
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
        from ._due import is_ci

        day = day_of(time.time())
        try:
            interactive = sys.stdin.isatty() and sys.stderr.isatty()
        except Exception:
            interactive = False
        facts = ["_run:tty" if interactive else "_run:script"]
        if is_ci(os.environ):
            facts.append("_run:ci")
        for name in facts:
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
        if self._decision.source != "default" or self._decision.mode != "on":
            return
        store = self._store
        try:
            fd = os.open(store.notice_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        os.write(fd, str(int(time.time())).encode())
        os.close(fd)
        self.told_this_run = True
        text = notice_text(
            self.app or "", self._options["env_prefix"], self._options["notice"], self._options["notice_url"]
        )
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: S110 - a closed stderr must not break the host
            pass

    def _write_config(self) -> None:
        if self._config_written:
            return
        store = self._store
        wanted = {
            "app": self.app,
            "endpoint": self._options["endpoint"],
            "app_version": self._options["app_version"],
            "allow": self._options["allow"],
            "default": self._options["default"],
            "env_prefix": self._options["env_prefix"],
            "send_interval": self._options["send_interval"],
            "notice_url": self._options["notice_url"],
        }
        if self._headers is not None:
            # Only the fact that the app authenticates (so a 401 keeps reports), never a value.
            wanted["auth_headers"] = True
        if store.config() != wanted:
            store.write_json(store.config_file, wanted)
        self._config_written = True

    # -- sending -------------------------------------------------------------------------------
    def send(self, timeout: float = 5.0, *, include_today: bool = False) -> SendResult:
        """Flush, then deliver the reports that are due, within ``timeout`` for the whole call."""
        start = time.monotonic()
        try:
            self._persist(fast=False, timeout=min(EXIT_LOCK_WAIT, timeout))
            if self.app is None or self._counters.off:
                return SendResult()
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
                return SendResult(0, 0, dropped)
            return SendResult(res.sent.sent, res.sent.kept, res.sent.rejected)
        except Exception as exc:
            log.debug("send failed: %r", exc)
            return SendResult()

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
        if self._decision.mode != "on" or not self._options.get("endpoint") or self.told_this_run:
            return False
        from ._due import auto_due

        return auto_due(self._store, self._options["send_interval"], time.time())

    # -- background and exit -------------------------------------------------------------------
    def _on_first_count(self) -> None:
        self._install_mp_child_hooks()
        self._ensure_thread()

    def _install_mp_child_hooks(self) -> None:
        """In a multiprocessing child, persist at the child's exit too.

        Pool workers leave through ``os._exit`` (no atexit), and ``with Pool()`` terminates idle
        workers with SIGTERM (no finaliser). So: a ``multiprocessing.util.Finalize`` (run by the
        child's bootstrap before ``os._exit``), and, only where SIGTERM still has its default
        action, a handler that persists and then dies of SIGTERM as the default would.
        """
        if self._mp_hooked:
            return
        mp = sys.modules.get("multiprocessing")
        if mp is None:
            return
        try:
            if mp.parent_process() is None:
                return
        except Exception:
            return
        self._mp_hooked = True
        from multiprocessing import util

        # Workers leave sending to the parent's exit hook: no burst of senders from a pool.
        util.Finalize(None, self._at_exit, args=(False,), exitpriority=10)
        import signal

        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        if self._persisting_in == threading.get_ident():
            self._term_pending = True  # never interrupt a persist: it re-raises when done
            return
        self._at_exit(False)
        self._die_of_sigterm()

    def _die_of_sigterm(self) -> None:
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    def _ensure_thread(self) -> None:
        if self._thread is not None or self._counters.off:
            return
        t = threading.Thread(target=self._loop, name="telemetry_rollup-flush", daemon=True)
        self._thread = t
        t.start()

    def _loop(self) -> None:
        interval = self._options["flush_interval"]
        # Wake at each UTC day's end too: count() reads no clock, so a new day begins here.
        while not self._stop.wait(min(interval, self._counters.roll())):
            try:
                self._persist(fast=False, timeout=EXIT_LOCK_WAIT)
                if self._due():
                    from ._sender import run

                    run(self._store, timeout=5.0, allow_send=not self.told_this_run, headers=self._headers_now())
            except Exception as exc:
                log.debug("background flush failed: %r", exc)

    def _at_exit(self, spawn: bool = True) -> None:
        start = time.monotonic()
        try:
            self._stop.set()
            if self.app is None or self._counters.off:
                return
            # A background persist in progress finishes first; its counts are not ours to drop.
            if self._persist_lock.acquire(timeout=0.5):
                self._persist_lock.release()
            left = EXIT_BUDGET - (time.monotonic() - start)
            self._persist(fast=True, timeout=max(0.0, min(EXIT_LOCK_WAIT, left - 0.5)))
            if spawn and self._due():
                from ._due import claim_autosend

                if claim_autosend(self._store, self._options["send_interval"], time.time()):
                    self._spawn_sender()
        except Exception as exc:
            log.debug("exit hook failed: %r", exc)

    def _spawn_sender(self) -> None:
        """Start ``python -m telemetry_rollup flush --if-due`` detached, and return at once."""
        if not sys.executable:
            return
        import subprocess

        env = dict(os.environ)
        env["TELEMETRY_ROLLUP_HOME"] = self._options["home"]
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True
        else:  # pragma: no cover - Windows
            kwargs["creationflags"] = 0x00000008 | 0x00000200  # DETACHED_PROCESS | NEW_PROCESS_GROUP
        subprocess.Popen(
            [sys.executable, "-m", "telemetry_rollup", "flush", "--app", str(self.app), "--if-due", "--quiet"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=None if _debug_enabled() else subprocess.DEVNULL,  # debug mode: its log too
            close_fds=True,
            env=env,
            **kwargs,
        )
        log.debug("started a detached sender for %s", self.app)

    def _after_fork_in_child(self) -> None:
        self._counters.after_fork_in_child()
        self._run_counted = False
        self._mp_hooked = False
        self._persisting_in = None
        self._term_pending = False
        self._persist_lock = threading.Lock()
        self._thread = None
        self._stop = threading.Event()
