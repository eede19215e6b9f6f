"""The process lifecycle of one Telemetry instance: the exit hook, the fork hook, the
multiprocessing finaliser, the SIGTERM handler, the background flusher and the detached sender.

Everything here runs at an instant the host did not choose, so it keeps these rules:

**Signal handler** (SIGTERM; installed only in a multiprocessing child whose SIGTERM action was
still the default, because ``with Pool()`` ends idle workers with it). It runs in the main thread
between two bytecodes of whatever it interrupted, which may hold any lock (the counters' lock,
the persist lock, the import lock, logging's, a stream's). So it takes no lock and calls nothing
that may: it sets a flag, restores the default action (a second SIGTERM kills at once, as without
the library) and starts a thread that runs the exit path and then kills the process with SIGTERM.
The interrupted code gets on and releases what it held, so that thread can wait for it. (It used
to run the exit path itself and blocked forever on a lock the interrupted exit path held; a
``with Pool(4)`` then hung in ``terminate()``: issue 12.)

**Re-entry without locks**: the exit path runs once per process. It is claimed with ``next()`` on
an ``itertools.count`` (one C call, atomic under the GIL); a second caller (the atexit hook after
the finaliser, the signal's thread while the main thread exits) waits at most ``EXIT_BUDGET`` for
the first to finish, on a lock only that first caller releases.

**At exit** (atexit, the multiprocessing finaliser, or the SIGTERM thread): the flusher stands down
(it is not woken, which would cost a thread switch while the interpreter shuts down; it checks on
waking); wait at most 0.5 s for a persist in progress elsewhere; persist with the raw flock (1 s
for the lock, then a spill file); if reports are due, one exiting process per send interval starts
the detached sender (``_spawn``). Within 2 s in all; never a byte to stdout; nothing on stderr but
the notice.

**After fork** (``os.register_at_fork``, in the child): only reset state. New locks (one held by
another thread at the fork stays held forever in the child), empty counters, no flusher; no I/O
and no thread start (the child starts its flusher at its first count).

**Locks, and who takes them**:

- ``Counters._lock``: the counters' slow path, ``take``, ``restore``; short, never around I/O.
- ``persist_lock``: one persist at a time (flusher, ``flush()``, ``send()``, the exit path). The
  exit path waits for it at most 0.5 s and then persists anyway: a snapshot is taken atomically,
  so two persists never write the same count. Taken before the counters' lock, never inside it.
- the buffer's flock (``buffer.jsonl.lock``): between processes, and between threads (each
  persist opens its own descriptor); 1 s at most on the exit path.
- ``_stop``: held while the flusher should run; released (from any thread, never waited for) to
  stop it. ``_done``: held until the exit path finished; waited for only by a second caller.

The flusher is a raw ``_thread`` thread: ``threading`` (~3 ms with what it loads) is never imported
on a short CLI's path, and like a daemon thread it never delays exit. It must never be the first
to import ``threading`` either (on Python <= 3.12 that thread becomes ``threading``'s main thread
and interpreter shutdown waits for it forever): until the host has imported ``threading``, its
pass persists with the raw flock and leaves sending to the detached sender (where there is no
flock, Windows, ``threading`` is imported when the flusher starts, by the counting thread).

Test checkpoints (``_log.step``; ``TELEMETRY_ROLLUP_TEST_SIGTERM_AT=<name>`` signals there):
``exit:claimed``, ``exit:stopped``, ``exit:waited``, ``persist:taken``, ``persist:locked``,
``persist:appended``, ``persist:done``, ``exit:due``, ``exit:spawned``.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from _thread import allocate_lock, get_ident, start_new_thread

from ._log import debug_enabled, log, step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._telemetry import Telemetry

EXIT_BUDGET = 2.0  # seconds the exit hook may take, everything included
EXIT_LOCK_WAIT = 1.0  # then the lines go to a spill file
PERSIST_WAIT = 0.5  # the exit path waits this long for a persist in progress elsewhere


class Lifecycle:
    """The hooks of one :class:`Telemetry`. Once registered, the exit hook holds the instance (and
    so its counts) until the process exits: a host that drops its instance still has its counts
    persisted at exit."""

    def __init__(self, owner: Telemetry) -> None:
        self._owner = owner
        self._registered = False
        self._signal: Any = None  # the signal module, once a handler is installed
        self._main_ident: int | None = None  # the thread that may restore SIGTERM's default action
        self._reset()

    def _reset(self) -> None:
        self.persist_lock = allocate_lock()
        self._stop = allocate_lock()
        self._stop.acquire()  # held: the flusher runs until it is released
        self._done = allocate_lock()
        self._done.acquire()  # held until the exit path has finished
        self._claim = itertools.count()
        self._exiting = False
        self._flusher = False
        self._mp_hooked = False
        self._term = False  # SIGTERM arrived: the exit path ends by dying of it
        self._finished = False
        self._watched = False  # an exit path was started for a SIGTERM

    # -- installing ---------------------------------------------------------------------------
    def register(self) -> None:
        """The exit hook and the fork hook, once per instance (at its first ``configure`` that is not off)."""
        if self._registered:
            return
        self._registered = True
        import atexit

        atexit.register(self.exit_path)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork_in_child)

    def on_first_count(self) -> None:
        """Called (outside the fast path) when a name is first seen on a day."""
        if not self._mp_hooked:
            self._install_mp_child_hooks()
        if not self._flusher and not self._exiting:
            owner = self._owner
            if not owner._counters.off and owner._options.get("flush_interval", 0) > 0:
                from . import _fs

                if not _fs.have_flock() and "threading" not in sys.modules:
                    import threading  # noqa: F401 - Windows: the flusher locks through filelock, which needs it
                self._flusher = True
                start_new_thread(self._flush_loop, (self._stop,))

    def _install_mp_child_hooks(self) -> None:
        """In a multiprocessing child, persist at the child's exit too.

        Pool workers leave through ``os._exit`` (no atexit), and ``with Pool()`` terminates idle
        workers with SIGTERM (no finaliser). So: a ``multiprocessing.util.Finalize`` (run by the
        child's bootstrap before ``os._exit``), and, only where SIGTERM still has its default
        action, the handler described in the module docstring.
        """
        mp = sys.modules.get("multiprocessing")
        if mp is None:
            return
        try:
            if mp.parent_process() is None:
                return
        except Exception:
            return
        self._mp_hooked = True
        import signal
        import threading  # loaded already: multiprocessing imports it
        from multiprocessing import util

        # Workers leave sending to the parent's exit hook: no burst of senders from a pool.
        util.Finalize(None, self.exit_path, args=(False,), exitpriority=10)
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            self._signal = signal  # the handler must not even run an import statement
            self._main_ident = threading.main_thread().ident
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._watch_signals(signal)

    def _watch_signals(self, signal: Any) -> None:
        """The self-pipe trick: Python runs a signal handler only when the main thread reaches a
        check, and a SIGTERM that lands just before the main thread blocks (an idle pool worker
        waiting for its queue's lock: ``sem_trywait`` failed, ``sem_wait`` not yet entered) is never
        acted on: ``terminate()`` then waits forever. The C-level handler also writes each caught
        signal's number to the wakeup descriptor; a thread blocked reading it acts on SIGTERM
        whatever the main thread is doing. A wakeup descriptor set before (an event loop's) keeps
        getting its bytes: they are passed on."""
        if os.name == "nt":
            return  # Pool.terminate() does not send SIGTERM there
        r, w = os.pipe()
        previous = None
        try:
            os.set_blocking(w, False)
            previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            start_new_thread(self._signal_watcher, (r, previous))
        except (OSError, ValueError, RuntimeError):
            if previous is not None:
                signal.set_wakeup_fd(previous)
            os.close(r)
            os.close(w)

    def _signal_watcher(self, r: int, forward: int) -> None:
        term = self._signal.SIGTERM
        while True:
            try:
                data = os.read(r, 512)
            except OSError:
                return
            if not data:
                return
            if forward >= 0:
                try:
                    os.write(forward, data)
                except OSError:
                    pass
            if term in data:
                self._watched = True
                self._term = True
                self.exit_path(False)  # claims it, or waits for whoever runs it (they die at its end)
                return

    # -- the signal handler ---------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """SIGTERM in a multiprocessing child, in the main thread. No lock, nothing that may take
        one (see above): a flag, and a thread that runs the exit path (unless the watcher does)."""
        self._term = True
        if self._finished:
            signal = self._signal
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)  # the exit path is done: die now, as the default would
            return
        if self._exiting or self._watched:
            return  # the exit path is running (here, interrupted, or in another thread): it ends by dying
        self._watched = True
        try:
            start_new_thread(self.exit_path, (False,))
        except RuntimeError:  # the interpreter is shutting down: no thread can start
            signal = self._signal
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def _die_of_sigterm(self) -> None:
        """End the process as SIGTERM's default action would. Only the main thread may restore that
        action, so another thread prompts it (its handler sees the exit path finished and does),
        and exits with SIGTERM's status if the main thread never gets to run a handler."""
        import signal

        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:  # not the main thread
            main = self._main_ident
            for _ in range(50):
                if main is None:
                    break
                signal.pthread_kill(main, signal.SIGTERM)
                time.sleep(0.02)
            os._exit(128 + signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)

    # -- the exit path -------------------------------------------------------------------------
    def exit_path(self, spawn: bool = True) -> None:
        """Persist what is in memory and, if reports are due, start the detached sender. Once per
        process, within ``EXIT_BUDGET``; never raises."""
        if next(self._claim):
            # Another caller runs it (or ran it): wait for it, so the interpreter does not tear
            # down under it. Never from the signal handler (it only starts a thread that may).
            if self._done.acquire(True, EXIT_BUDGET):
                self._done.release()
            return
        self._exiting = True
        start = time.monotonic()
        try:
            step("exit:claimed")
            # The flusher is not woken (a thread switch while the interpreter shuts down, for
            # nothing): it sees _exiting if it wakes, and dies with the process.
            step("exit:stopped")
            owner = self._owner
            if owner.app is None or owner._counters.off:
                return
            # A persist in progress (the flusher, flush()) finishes first: its counts are not ours to drop.
            waited = self.persist_lock.acquire(True, PERSIST_WAIT)
            if waited:
                self.persist_lock.release()
            step("exit:waited")
            left = EXIT_BUDGET - (time.monotonic() - start)
            owner._persist(timeout=max(0.0, min(EXIT_LOCK_WAIT, left - 0.5)), lock_wait=0.0)
            if spawn and owner._due():
                step("exit:due")
                self.start_sender()
        except Exception as exc:
            log.debug("exit hook failed: %r", exc)
        finally:
            self._finished = True
            self._done.release()
            if self._term:
                self._die_of_sigterm()

    def start_sender(self, *, subprocess_ok: bool = True) -> None:
        """Start the detached sender, if this process is the one of this send interval to do it.
        ``subprocess_ok`` False (the raw flusher of a host without ``threading``): only
        ``posix_spawn``, since ``subprocess`` imports ``threading`` (see the module docstring)."""
        from . import _spawn
        from ._due import claim_autosend, release_autosend

        owner = self._owner
        store = owner._store
        argv = _spawn.sender_argv(str(owner.app), store.dir)
        if argv is None:
            log.debug("no detached sender: %s is not a Python interpreter", sys.executable)
            return
        now = time.time()
        if not claim_autosend(store, owner._options["send_interval"], now):
            return
        env = dict(os.environ)
        env["TELEMETRY_ROLLUP_HOME"] = owner._options["home"]
        try:
            pid = _spawn.start(argv, env=env, cwd=store.dir, keep_stderr=debug_enabled(), subprocess_ok=subprocess_ok)
        except Exception as exc:  # subprocess could not start it either (EAGAIN, ENOMEM, a broken executable)
            log.debug("could not start the detached sender: %r", exc)
            pid = None
        if pid is None:
            release_autosend(store, owner._options["send_interval"], now)  # the exit hook may start it
            return
        step("exit:spawned")
        log.debug("started a detached sender for %s (pid %d)", owner.app, pid)

    # -- the flusher ---------------------------------------------------------------------------
    def stop_flusher(self) -> None:
        """Stop the flusher (if any); a later first count may start a new one (not after exit)."""
        stop, self._stop = self._stop, allocate_lock()
        self._stop.acquire()
        self._flusher = False
        try:
            stop.release()
        except RuntimeError:
            pass  # already released

    def _flush_loop(self, stop: Any) -> None:
        try:
            self._flush_until_stopped(stop)
        except BaseException as exc:
            log.debug("flusher stopped: %r", exc)

    def _flush_until_stopped(self, stop: Any) -> None:
        owner = self._owner
        while True:
            # Wake at each UTC day's end too: count() reads no clock, so a new day begins here.
            wait = min(owner._options.get("flush_interval", 60.0), owner._counters.roll())
            if stop.acquire(True, wait):
                stop.release()  # stays released: the flusher is stopped for good
                return
            if self._exiting:
                return  # the exit path persists what is left
            try:
                self._background_pass()
            except Exception as exc:
                log.debug("background flush failed: %r", exc)

    def _background_pass(self) -> None:
        """The flusher's work, every ``flush_interval``: persist, and send when due.

        While the host has not imported ``threading``, this pass imports nothing that does (see
        the module docstring): it persists (the raw flock) and leaves sending to the detached
        sender, started with ``posix_spawn`` only."""
        owner = self._owner
        threaded = "threading" in sys.modules
        owner.flush()
        if not owner._due():
            return
        if not threaded:
            self.start_sender(subprocess_ok=False)
            return
        from ._sender import run

        run(owner._store, timeout=5.0, headers=owner._headers_now())

    # -- fork ----------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        self._reset()
        if self._signal is not None:  # the handler is inherited; this thread is the child's main one
            self._main_ident = get_ident()
        self._owner._after_fork_in_child()
