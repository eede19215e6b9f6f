"""Defects found by hiding platform features on Linux (issue 15 item 6), each reproduced in a real
interpreter: fcntl, O_NOFOLLOW, os.register_at_fork or posix_spawn removed before the library is
imported, a lock call that fails with an errno a network or FUSE file system gives, a fork while
another thread is importing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import run_py

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="these reproduce POSIX behaviour")


def buffer_totals(app_dir: Path) -> dict[str, int]:
    """Counter totals over the buffer and the spill files."""
    got: dict[str, int] = {}
    files = [app_dir / "buffer.jsonl", *sorted((app_dir / "spill").glob("*.jsonl"))]
    for f in files:
        if f.exists():
            for line in f.read_text().splitlines():
                x = json.loads(line)
                got[x["n"]] = got.get(x["n"], 0) + x["c"]
    return got


def test_a_fork_while_another_thread_imports_logging_does_not_hang_the_child(home: Path) -> None:
    """The library's request thread imports requests, which imports logging. A host that forks
    at that instant gets a child in which logging is half-imported, its module lock held by a
    thread that does not exist there: any ``import logging`` in the child blocks forever (it did,
    in ``_log.Log``, at the child's first persist). The import is held open deterministically by
    a finder that blocks the importing thread inside logging's own imports."""
    code = """
        import os, sys, threading, time
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("before")
        assert "logging" not in sys.modules
        reached, go = threading.Event(), threading.Event()
        from importlib.machinery import PathFinder
        class Blocker:  # the next module logging imports waits in its loader (not holding the import lock)
            def find_spec(self, name, path=None, target=None):
                if threading.current_thread() is not worker or "logging" not in sys.modules or reached.is_set():
                    return None
                spec = PathFinder.find_spec(name, path)
                if spec is None or spec.loader is None:
                    return None
                real = spec.loader
                class Waiting:
                    def create_module(self, spec):
                        return real.create_module(spec)
                    def exec_module(self, module):
                        reached.set()
                        go.wait()
                        real.exec_module(module)
                spec.loader = Waiting()
                return spec
        sys.meta_path.insert(0, Blocker())
        worker = threading.Thread(target=lambda: __import__("logging"), daemon=True)
        worker.start()
        assert reached.wait(10), "logging imported nothing new: the test cannot hold its import open"
        pid = os.fork()
        if pid == 0:
            tr.count("child")
            tr.flush()
            os._exit(0)
        for _ in range(500):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung")
            go.set()
            sys.exit(1)
        go.set()
        worker.join()
        print("child exited", os.waitstatus_to_exitcode(status))
    """
    proc = run_py(code, check=False, env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert proc.stdout == "child exited 0\n", proc.stdout + proc.stderr
    assert buffer_totals(home / "acme") == {"before": 1, "child": 1, "_run:script": 2}


def run_host(code: str, *, check: bool = True, **env: str) -> str:
    """Run ``code`` in a fresh interpreter; return its stderr (asserting it exited 0 when ``check``)."""
    proc = run_py(code, env=env, check=check)
    assert proc.stdout == "", proc.stdout
    return proc.stderr


@pytest.mark.parametrize("fault", ["ENOLCK", "ENOSYS", "ELOOP"])
def test_a_lock_that_cannot_be_taken_at_all_ends_in_a_spill_file(home: Path, fault: str) -> None:
    """Not only a timeout: flock failing with ENOLCK or ENOSYS (NFS, FUSE), or the lock file's open
    refused with ELOOP (a link planted between the removal of one and the open), used to raise out
    of the append and lose the exiting process's counts."""
    code = f"""
        import errno, os
        import fcntl
        import telemetry_rollup as tr
        from telemetry_rollup import _fs
        fault = {fault!r}
        if fault == "ELOOP":
            def plant(path):  # a planter wins the race: a link stands at the lock path at each open
                if os.path.lexists(path):
                    os.unlink(path)
                os.symlink("/tmp/never-created-by-telemetry", path)
            _fs.clear_planted = plant
        else:
            def flock(fd, op):
                raise OSError(getattr(errno, fault), os.strerror(getattr(errno, fault)))
            fcntl.flock = flock
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("build", 3)
        tr.flush()           # flush(): a spill file too
        tr.count("build")    # and the exit hook
    """
    assert run_host(code) == ""
    app = home / "acme"
    assert len(list((app / "spill").glob("*.jsonl"))) == 2
    assert buffer_totals(app) == {"build": 4, "_run:script": 1}
    assert not os.path.lexists("/tmp/never-created-by-telemetry")


def test_without_register_at_fork_a_child_does_not_resave_the_parents_counts(home: Path) -> None:
    """Where ``os.register_at_fork`` is missing, the fork hook never runs: the child used to hold the
    parent's unsaved counts and persist them again at its exit (2x here; 2-5x with more children).
    The PID check on the slow path and at persist resets the child instead."""
    code = """
        import os, sys
        del os.register_at_fork
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("build", 5)
        tr.count("test")
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                tr.count("child")      # the child's first new name: the PID check resets it
                tr.count("build")
                sys.exit(0)            # the inherited exit hook persists the child's own counts
            os.waitpid(pid, 0)
        tr.count("build")
    """
    assert run_host(code) == ""
    assert buffer_totals(home / "acme") == {"build": 5 + 3 + 1, "test": 1, "child": 3, "_run:script": 4}


def test_without_fcntl_nothing_is_printed_and_a_crashed_holder_does_not_keep_the_lock(home: Path) -> None:
    """Without fcntl (off Windows) filelock warns "only soft file lock is available" on import and
    falls back to a marker file. The warning went into the host's stderr (and under ``-W error``
    the import failed, losing the counts); a holder that died kept the lock for good."""
    crash = """
        import os, sys
        sys.modules["fcntl"] = None
        from telemetry_rollup import _store
        store = _store.AppStore(os.path.join(os.environ["TELEMETRY_ROLLUP_HOME"], "acme"))
        store.lock_buffer(1.0)         # taken ...
        os._exit(9)                    # ... and never released: the process crashed
    """
    run_py(crash, check=False)
    code = """
        import sys
        sys.modules["fcntl"] = None
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("build", 2)
    """
    assert run_host(code, PYTHONWARNINGS="error") == ""
    assert run_host(code) == ""
    app = home / "acme"
    assert not list((app / "spill").glob("*.jsonl")), "the dead holder's lock was still held"
    assert buffer_totals(app) == {"build": 4, "_run:script": 2}


def test_a_failed_spawn_gives_the_send_interval_back(home: Path) -> None:
    """The interval's ``autosend.<n>`` token was taken before the sender was started; when starting
    failed (posix_spawn refused, then subprocess raised), the token stayed and no exiting process
    started a sender until the next interval."""
    from receiver import Receiver, wait_for
    from sender_setup import add_lines, day, make_app

    with Receiver() as receiver:
        store = make_app(home, endpoint=receiver.url)
        add_lines(store, {(day(-1), "old"): 2})
        failing = """
            import os, subprocess
            def refuse(*a, **k):
                raise OSError(11, "Resource temporarily unavailable")
            os.posix_spawn = refuse
            subprocess.Popen = refuse
        """
        host = """
            import os
            import telemetry_rollup as tr
            tr.configure("acme", endpoint=os.environ["TEST_ENDPOINT"])
            tr.count("x")
        """
        env = {"TEST_ENDPOINT": receiver.url, "ACME_TELEMETRY": "on"}
        assert run_host(failing + host, **env) == ""
        assert not list((home / "acme").glob("autosend.*"))
        assert run_host(host, **env) == ""
        assert wait_for(lambda: receiver.totals().get("old") == 2, 30)


def test_without_o_nofollow_no_link_is_followed_out_of_the_data_root(home: Path, tmp_path: Path) -> None:
    """Where ``os.O_NOFOLLOW`` is missing the opens followed a link planted at the path: an append
    created (and wrote) a file the link pointed to outside the data root, a read returned another
    file's bytes."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("not ours")
    code = f"""
        import os
        del os.O_NOFOLLOW
        from telemetry_rollup import _fs
        app = os.path.join(os.environ["TELEMETRY_ROLLUP_HOME"], "acme")
        _fs.ensure_dir(app)
        os.symlink({str(outside / "created")!r}, os.path.join(app, "buffer.jsonl"))
        os.symlink({str(outside / "secret")!r}, os.path.join(app, "mode.json"))
        try:
            _fs.append_bytes(os.path.join(app, "buffer.jsonl"), b"x\\n")
        except OSError:
            pass
        assert _fs.read_capped(os.path.join(app, "mode.json"), 100) is None
        _fs.atomic_write(os.path.join(app, "config.json"), b"1")  # O_CREAT|O_EXCL: no link can be in the way
        assert _fs.read_capped(os.path.join(app, "config.json"), 100) == b"1"
        fd = _fs.flock_with_timeout(os.path.join(app, "buffer.jsonl"), 1.0)  # removes the link, never follows it
        assert fd is not None
        _fs.unlock(fd)
    """
    assert run_host(code) == ""
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "not ours"


def test_every_file_the_library_opens_is_opened_in_binary_mode(home: Path) -> None:
    """On Windows ``os.open`` is in text mode unless ``O_BINARY`` is given: every ``\\n`` written
    becomes ``\\r\\n``. Here a flag bit stands in for ``O_BINARY`` and every open below the data
    root, through a whole count, exit and send, is checked for it."""
    code = """
        import os
        BINARY = 1 << 28
        os.O_BINARY = BINARY
        real_open = os.open
        missing = []
        home = os.environ["TELEMETRY_ROLLUP_HOME"]
        def checked_open(path, flags, *args, **kwargs):
            if str(path).startswith(home) and not flags & BINARY:
                missing.append(os.path.basename(str(path)))
            return real_open(path, flags & ~BINARY, *args, **kwargs)
        os.open = checked_open
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        tr.count("build")
        tr.flush()
        tr.count("build")
        import atexit
        atexit.register(lambda: missing and os.write(2, repr(sorted(set(missing))).encode()))
    """
    assert run_host(code) == ""


def test_renames_are_retried_on_a_transient_permission_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On Windows a rename over a file another process has open fails for a moment; there the
    rename is retried (``RENAME_RETRIES``). The failure is simulated; the retry is the real code."""
    from telemetry_rollup import _fs

    real = os.replace
    failures = [PermissionError(13, "Access is denied")] * 2

    def flaky(src: str, dst: str) -> None:
        if failures:
            raise failures.pop()
        real(src, dst)

    monkeypatch.setattr(_fs, "RENAME_RETRIES", (0.001, 0.001, 0.001))
    monkeypatch.setattr(os, "replace", flaky)
    _fs.atomic_write(str(tmp_path / "f"), b"data")
    assert (tmp_path / "f").read_bytes() == b"data"
    assert not failures


def test_the_windows_sender_breaks_away_from_the_hosts_job() -> None:
    """A CI job object (or a terminal's) kills its processes when it closes: the sender asks to
    break away from it, and starts inside it where the job forbids that (ERROR_ACCESS_DENIED).
    Windows-only code: ``Popen`` is a recording stand-in, the flags are the real ones."""
    from telemetry_rollup import _spawn

    calls: list[int] = []

    class Proc:
        pid = 42

    def popen(argv: list[str], *, creationflags: int, **kwargs: object) -> Proc:
        calls.append(creationflags)
        if creationflags & _spawn.CREATE_BREAKAWAY_FROM_JOB and len(calls) == 1 and refuse:
            raise PermissionError(13, "Access is denied")
        return Proc()

    refuse = False
    assert _spawn.popen_windows(popen, ["python"], {}) == 42
    assert calls == [0x01000208]  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB
    calls.clear()
    refuse = True
    assert _spawn.popen_windows(popen, ["python"], {}) == 42
    assert calls == [0x01000208, 0x00000208]


def test_a_fork_during_the_librarys_own_lazy_import_waits_for_it(home: Path) -> None:
    """A thread's first count imports the lifecycle module; a host that forked at that instant got
    a child blocked for good at its own first count (the module's import lock held by a thread
    that does not exist there; it showed as a rare hang of test_processes' forking test). The
    fork hook now waits (at most ``_log.FORK_WAIT``) for the library's own imports. The import
    is held open 0.3 s here, deterministically."""
    code = """
        import os, sys, threading, time
        from importlib.machinery import PathFinder
        import telemetry_rollup as tr
        tr.configure("acme", default="local", flush_interval=0)
        assert "telemetry_rollup._lifecycle" not in sys.modules
        reached = threading.Event()
        class Slow:
            def find_spec(self, name, path=None, target=None):
                if name != "telemetry_rollup._lifecycle":
                    return None
                spec = PathFinder.find_spec(name, path)
                real = spec.loader
                class Waiting:
                    def create_module(self, spec):
                        return real.create_module(spec)
                    def exec_module(self, module):
                        reached.set()
                        time.sleep(0.3)
                        real.exec_module(module)
                spec.loader = Waiting()
                return spec
        sys.meta_path.insert(0, Slow())
        worker = threading.Thread(target=tr.count, args=("first",))
        worker.start()
        assert reached.wait(10)
        pid = os.fork()
        if pid == 0:
            tr.count("child")
            tr.flush()
            os._exit(0)
        for _ in range(500):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            print("child hung")
            sys.exit(1)
        worker.join()
        print("child exited", os.waitstatus_to_exitcode(status))
    """
    proc = run_py(code, check=False, env={"PYTHONWARNINGS": "ignore::DeprecationWarning"})
    assert proc.stdout == "child exited 0\n", proc.stdout + proc.stderr
    assert buffer_totals(home / "acme") == {"first": 1, "child": 1, "_run:script": 2}
