"""Helpers shared by the client tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator


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
