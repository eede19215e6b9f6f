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


# "all" failed once (Python 3.10, CI's version matrix, 2026-12-02): only the pre-seeded "old" line
# arrived, the hosts' counts did not; the same class of loss as the crash test's (docs/design.md,
# faults table, under investigation). It still runs and its result shows (x or X).
_ALL = pytest.param(
    "all",
    marks=pytest.mark.xfail(strict=False, reason="under investigation: hosts' counts lost once on 3.10 (design.md)"),
)


@pytest.mark.parametrize("hidden", [*HIDE, _ALL])
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
        files = {str(p.relative_to(home)): p.read_bytes()[:300] for p in sorted(home.rglob("*")) if p.is_file()}
        pytest.fail(f"{receiver.totals()}\n{said}\n{len(receiver.bodies)} bodies\n{files}")
    assert set(receiver.deliveries.values()) == {1}  # every report stored once, none sent twice
    app = home / "acme"
    assert not (app / "buffer.jsonl").exists() or (app / "buffer.jsonl").stat().st_size == 0
    assert not list((app / "spill").glob("*.jsonl")) if (app / "spill").exists() else True
