"""Helpers shared by the client tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path


def run_py(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with the test's environment (plus ``env``)."""
    full = dict(os.environ)
    full.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=full, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr}")
    return proc


def run_py_timing_exit(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``run_py(code)``, and how long the child took to exit: from the end of ``code`` to the moment
    its end was seen here. A bound on exit is checked on that alone, not on the interpreter's start-up
    and imports, which take seconds on a loaded machine while the exit path itself is a few ms of CPU.
    (``time.monotonic`` is the system-wide monotonic clock, so the two processes' readings compare.)"""
    fd, mark = tempfile.mkstemp(prefix="exit-mark-")
    os.close(fd)
    try:
        body = textwrap.dedent(code) + f"\nimport time as _t\nopen({mark!r}, 'w').write(repr(_t.monotonic()))\n"
        proc = run_py(body, env=env, timeout=timeout)
        seen = time.monotonic()
        return proc, seen - float(Path(mark).read_text())
    finally:
        os.unlink(mark)


@contextlib.contextmanager
def lock_held_elsewhere(lock_path: object) -> Iterator[None]:
    """Another process holds filelock's lock on ``lock_path`` for the duration of the block."""
    code = (
        f"import filelock,time; l=filelock.FileLock({str(lock_path)!r}); l.acquire(); "
        "print('held', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def identity(app_dir: object) -> tuple[str, str]:
    """(machine id, machine key) as the library stored them for an app (its key file)."""
    import json

    from telemetry_rollup._identity import derive_id

    key = json.loads(open(os.path.join(str(app_dir), "machine_key")).read())["key"]
    return derive_id(key), key


def files_left(root: Path, head: int = 300) -> dict[str, bytes]:
    """Every file under ``root`` and its first bytes: what a delivery test shows when totals differ."""
    return {str(p.relative_to(root)): p.read_bytes()[:head] for p in sorted(root.rglob("*")) if p.is_file()}
