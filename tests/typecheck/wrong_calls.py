"""Calls a type checker must refuse: each line marked ``# wrong`` is an error under ``mypy --strict``
and pyright, and no other line is (tests/test_typing_users.py)."""

from __future__ import annotations

import telemetry_rollup as tr
from telemetry_rollup import Telemetry

tr.count(3)  # wrong
tr.count("build", "3")  # wrong
tr.count("build", n=1.5)  # wrong
tr.count("build", outcom="ok")  # wrong
tr.configure(app=None)  # wrong
tr.configure("acme", endpont="https://telemetry.example.com/v1/rollups")  # wrong
tr.configure("acme", "https://telemetry.example.com/v1/rollups")  # wrong
tr.configure("acme", flush_interval="60")  # wrong
tr.configure("acme", headers={"Authorization": 1})  # wrong
tr.send(timeout="5")  # wrong
tr.flush(True)  # wrong
sent: str = tr.send().sent  # wrong
with tr.timed("build") as timer:
    timer.eror("code")  # wrong
tr.timed(7)  # wrong
Telemetry("acme").count(None)  # wrong
