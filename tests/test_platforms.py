"""The real pipeline where a platform feature is missing (issue 15 item 2): count -> exit ->
claim -> send -> exactly once, with real host processes (forking, concurrent), the detached
sender the library starts, the command-line flush, and a receiver on 127.0.0.1.

Each feature is hidden in every interpreter involved (the hosts, their forked children, the
detached sender, the CLI) by a ``sitecustomize`` on ``PYTHONPATH``, before anything imports it:

- ``fcntl``: the filelock-only locking Windows uses (here filelock's soft lock);
- ``os.O_NOFOLLOW``: opens check ``lstat`` against ``fstat`` instead;
- ``os.register_at_fork``: the PID check resets a forked child instead of the fork hook;
- ``posix_spawn`` and ``start_new_session``: the sender starts through ``subprocess`` without a new
  session, the shape of the Windows path (which adds creation flags this platform cannot take).

docs/design.md ("Platforms") says which guarantee weakens where.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import files_left
from receiver import Receiver, wait_for
from sender_setup import add_lines, day, make_app

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="hides POSIX features to take the other paths")

HIDE = {
    "fcntl": 'sys.modules["fcntl"] = None',
    "O_NOFOLLOW": "del os.O_NOFOLLOW",
    # the standard library's random registers its own hook unconditionally where there is fork:
    # it is imported first (a platform without the hook would have none to register)
    "register_at_fork": "import random\ndel os.register_at_fork",
    "posix_spawn": textwrap.dedent(
        """
        del os.posix_spawn
        import subprocess
        _Popen = subprocess.Popen
        class _NoSession(_Popen):  # the Windows path: no new session (creation flags instead)
            def __init__(self, *args, start_new_session=False, **kwargs):
                open(os.path.join(os.environ["MARKERS"], "popen.%d" % os.getpid()), "w").close()
                super().__init__(*args, **kwargs)
        subprocess.Popen = _NoSession
        """
    ),
}

HOST = """
import os, sys
import telemetry_rollup as tr
tr.configure("acme", endpoint=os.environ["TEST_ENDPOINT"], flush_interval=0)
for _ in range(250):
    tr.count("build")
tr.count("x")
pid = os.fork()
if pid == 0:
    tr.count("child")   # the child's own counts only (the parent's 250 are the parent's to persist)
    tr.count("build")
    sys.exit(0)         # the inherited exit hook
os.waitpid(pid, 0)
"""

HOSTS = 4


@pytest.mark.parametrize("hidden", [*HIDE, "all"])
def test_the_pipeline_is_exact_without(hidden: str, home: Path, tmp_path: Path, receiver: Receiver) -> None:
    site = tmp_path / "site"
    site.mkdir()
    markers = tmp_path / "markers"
    markers.mkdir()
    lines = list(HIDE.values()) if hidden == "all" else [HIDE[hidden]]
    (site / "sitecustomize.py").write_text("import os, sys\n" + "\n".join(lines) + "\n")
    (tmp_path / "host.py").write_text(HOST)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
        TEST_ENDPOINT=receiver.url,
        ACME_TELEMETRY="on",
        MARKERS=str(markers),
    )
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "old"): 2})  # reports are due: an exiting host starts the sender

    hosts = [
        subprocess.Popen(
            [sys.executable, str(tmp_path / "host.py")], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(HOSTS)
    ]
    for p in hosts:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out == b"" and err == b"", err.decode()
    # the detached sender one of them started claimed yesterday's counts and sent them
    assert wait_for(lambda: receiver.totals().get("old") == 2, 60), receiver.totals()
    if hidden in ("posix_spawn", "all"):
        assert list(markers.glob("popen.*")), "the sender was not started through subprocess"

    cli = [sys.executable, "-m", "telemetry_rollup", "flush", "--app", "acme", "--include-today"]
    said = []
    for _ in range(2):  # the second flush finds nothing left to send
        proc = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stderr
        said.append(proc.stdout)
    expected = {"old": 2, "build": HOSTS * 251, "x": HOSTS, "child": HOSTS, "_run:script": 2 * HOSTS}
    if receiver.totals() != expected:  # what each flush said and every file left, should it happen again
        files = files_left(home)
        pytest.fail(f"{receiver.totals()}\n{said}\n{len(receiver.bodies)} bodies\n{files}")
    assert set(receiver.deliveries.values()) == {1}  # every report stored once, none sent twice
    app = home / "acme"
    assert not (app / "buffer.jsonl").exists() or (app / "buffer.jsonl").stat().st_size == 0
    assert not list((app / "spill").glob("*.jsonl")) if (app / "spill").exists() else True


# Found on CI's Python 3.10 (filelock 4.1.0): where there is no fcntl (Windows; here hidden), the
# buffer lock is filelock's, imported at the first persist, for a short CLI in the exit hook. By
# then the interpreter is shutting down, and filelock 4.1.0's import of concurrent.futures.thread
# raised RuntimeError("can't register atexit after shutdown") in any host that had imported
# threading: the persist failed and every count of the run was lost. Whatever the lock's import
# does, a lock that cannot be had must spill, never lose.
BROKEN_FILELOCK = """
import os, sys
sys.modules["fcntl"] = None
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name == "filelock":
            raise RuntimeError("can't register atexit after shutdown")
        return None
sys.meta_path.insert(0, _Refuse())
"""


def test_a_lock_module_that_cannot_be_imported_at_exit_spills_the_counts(
    home: Path, tmp_path: Path, receiver: Receiver
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BROKEN_FILELOCK)
    host = 'import threading, telemetry_rollup as tr\ntr.configure("acme", flush_interval=0)\ntr.count("build", 3)\n'
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, PYTHONPATH=path, ACME_TELEMETRY="on")
    proc = subprocess.run([sys.executable, "-c", host], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == b"", proc.stderr
    store = make_app(home, endpoint=receiver.url)
    assert len(store.spill_files()) == 1  # no lock, so no buffer: the exit hook's lines are in a spill file
    from telemetry_rollup import _sender

    _sender.run(store, timeout=10, force=True, include_today=True)
    assert receiver.totals() == {"build": 3, "_run:script": 1}
