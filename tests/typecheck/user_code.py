"""A host tool's typical use of the public API: must type-check under ``mypy --strict`` and pyright
(strict). tests/test_typing_users.py checks it against the installed package, as a user's project
would see it. Never run, only checked."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import telemetry_rollup as tr
from telemetry_rollup import SendResult, Telemetry
from telemetry_rollup.cli import add_telemetry_command, main


def setup() -> Telemetry:
    tr.configure("acme", endpoint="https://telemetry.example.com/v1/rollups", app_version="1.4.0")
    tr.configure(
        "acme",
        endpoint=None,
        app_version="1.4.0",
        allow=["build", "lint", "cmd.*"],
        default="local",
        env_prefix="ACME",
        flush_interval=30,
        send_interval=3600.0,
        notice="acme counts which commands are used",
        notice_url="https://example.com/telemetry",
        home="/tmp/acme-telemetry",
        headers={"Authorization": "Bearer token"},
    )
    return tr.configure("acme", headers=lambda: {"Authorization": "Bearer fresh"})


def counting(command: str) -> None:
    tr.count("build")
    tr.count("lint", 3)
    tr.count(command, n=2)
    tr.count("deploy", outcome="error", error_code="invalid_manifest")
    with tr.timed("build") as timer:
        timer.error("no_space")


@tr.timed("deploy")
def deploy(target: str, retries: int = 1) -> bool:
    return bool(target) and retries > 0


@tr.timed("fetch")
async def fetch(url: str) -> bytes:
    await asyncio.sleep(0)
    return url.encode()


def deliver() -> int:
    tr.flush()
    result: SendResult = tr.send(timeout=2.0)
    sent: int = result.sent + result.kept + result.dropped
    status: dict[str, Any] = tr.status()
    version: str = tr.__version__
    return sent + len(status) + len(version)


def own_instance() -> SendResult:
    mine = Telemetry("acme-daemon", endpoint="https://telemetry.example.com/v1/rollups")
    mine.configure("acme-daemon", flush_interval=10.0)
    mine.count("tick")
    with mine.timed("job"):
        pass
    mine.flush()
    return mine.send(5.0)


def build(args: argparse.Namespace) -> int:
    tr.count("build")
    return 0


def cli(argv: list[str]) -> int:
    ok = deploy("prod", retries=2)
    data = asyncio.run(fetch("https://example.com"))
    parser = argparse.ArgumentParser(prog="acme")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build").set_defaults(func=build)
    add_telemetry_command(sub, app="acme")
    add_telemetry_command(parser, "acme", name="usage", aliases={"enable": "on", "disable": "off"})
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code + main(["status", "--json"], app="acme") + int(ok) + len(data)
