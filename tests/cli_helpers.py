"""Helpers for the CLI, consent and notice tests: a recording HTTP receiver, subprocess runners."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from receiver import Receiver  # noqa: F401 - the CLI tests import it from here

from telemetry_rollup import cli


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any consent, debug or CI variable, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DO_NOT_TRACK" and not k.endswith("_TELEMETRY") and not k.startswith("TELEMETRY_ROLLUP")
    }
    env["TELEMETRY_ROLLUP_HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(home: Path, *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m telemetry_rollup ARGS`` in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "telemetry_rollup", *args],
        env=clean_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_host(home: Path, script: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess[str]:
    """A host program (``python -c script``) in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-c", script],
        env=clean_env(home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def main_inproc(*args: str, app: str | None = None) -> tuple[int, str, str]:
    """``cli.main`` in this process with string streams. Set the environment with monkeypatch."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(args), app=app, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def day(offset: int) -> str:
    return (dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=offset)).isoformat()


def plant(home: Path, app: str, counts: dict[tuple[str, str], int], **config: Any) -> Path:
    """Buffer lines (day, name) -> count and a config.json, as a host's earlier runs would leave."""
    d = home / app
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"app": app, "default": "on", "env_prefix": app.upper().replace("-", "_"), "send_interval": 0}
    cfg.update(config)
    (d / "config.json").write_text(json.dumps(cfg))
    with open(d / "buffer.jsonl", "a") as f:
        for (dday, name), c in sorted(counts.items()):
            f.write(json.dumps({"v": 1, "d": dday, "n": name, "c": c}, separators=(",", ":")) + "\n")
    return d


def notice_shown_yesterday(home: Path, app: str) -> None:
    """As if the notice had been shown on the previous UTC day: the time rule now lets sends go."""
    import time

    (home / app / "notice").write_text(str(int(time.time()) - 86400))


def listing(directory: Path) -> set[str]:
    """Every path below ``directory``, relative, directories included."""
    if not directory.exists():
        return set()
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}
