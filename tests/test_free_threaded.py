"""Free-threaded CPython (3.13t and later): ``count()``'s lock-free exactness rests on ``next()`` of
an ``itertools.count`` being atomic under the GIL, which a build without it does not promise. Such
a build or run is detected and gets the locked path (``ExactCounters``); here that path is forced
on this build and checked for exact totals from 8 threads, with the flusher persisting meanwhile."""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

from helpers import run_py

from telemetry_rollup import _counters


def test_detection_agrees_with_sysconfig_and_the_running_interpreter() -> None:
    build = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    running = not sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else False
    assert ("t" in getattr(sys, "abiflags", "")) == build or sys.platform == "win32"
    assert _counters.gil_disabled() == (build or running)
    assert _counters.FREE_THREADED == _counters.gil_disabled()
    expected = _counters.ExactCounters if _counters.FREE_THREADED else _counters.Counters
    assert type(_counters.new_counters()) is expected


def test_the_exact_path_forced_here_keeps_exact_totals_from_8_threads(home: Path) -> None:
    code = """
        import sys, threading
        sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
        from telemetry_rollup import _counters
        _counters.FREE_THREADED = True
        from telemetry_rollup import Telemetry
        t = Telemetry("acme", default="local", flush_interval=0.02)  # the flusher persists meanwhile
        assert type(t._counters) is _counters.ExactCounters
        N = 20000
        start = threading.Barrier(8)
        def work(i):
            start.wait()
            for k in range(N):
                t.count("hot")
                t.count(f"per.{i}")
                if k % 100 == 0:
                    t.count("bulk", 3)
                    with t.timed("op"):
                        pass
        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for th in threads: th.start()
        for th in threads: th.join()
        t.flush()
    """
    run_py(code, timeout=300)
    got: dict[str, int] = {}
    for line in (home / "acme" / "buffer.jsonl").read_text().splitlines():
        x = json.loads(line)
        got[x["n"]] = got.get(x["n"], 0) + x["c"]
    n = 20000
    assert got.pop("hot") == 8 * n
    for i in range(8):
        assert got.pop(f"per.{i}") == n
    assert got.pop("bulk") == 8 * (n // 100) * 3
    assert got.pop("op") == got.pop("op:ok") == 8 * (n // 100)
    assert got.pop("op:dur:lt10ms", 0) + got.pop("op:dur:lt100ms", 0) + got.pop("op:dur:lt1s", 0) == 8 * (n // 100)
    assert got == {"_run:script": 1}
