"""``codegraph``: a codegraph-like tool rebuilt on telemetry_rollup (seed 002).

A CLI whose subcommands are counted, plus ``codegraph serve``: an MCP-style stdio server (one
JSON object per line on stdin, one reply per line on stdout) that counts each tool call after
the reply is on the wire, persists on an interval and never writes a byte of telemetry to
stdout (stdout is the protocol channel; the first-run notice goes to stderr).

Run it::

    python examples/codegraph_like/codegraph.py index examples
    python examples/codegraph_like/codegraph.py telemetry status
    printf '%s\\n' '{"id":1,"method":"initialize","params":{"clientInfo":{"name":"claude-code"}}}' \\
        '{"id":2,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"}}}' \\
        | python examples/codegraph_like/codegraph.py serve

Consent: ``DO_NOT_TRACK=1`` > ``CODEGRAPH_TELEMETRY=0|1`` > ``codegraph telemetry off|on`` > on.
What is counted (and nothing else): ``command:<name>``, ``index.lang:<language>``,
``index.files:<bucket>``, ``install.target:<target>``, ``install.scope:<scope>``, ``uninstall``,
``mcp.tool:<tool>`` and ``mcp.client:<known agent>``. Never code, paths, file or symbol names,
queries or tool arguments: languages, tools, targets and agents come from fixed lists.
``CODEGRAPH_TELEMETRY_ENDPOINT`` overrides the receiver URL (the tests use 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import telemetry_rollup as tr
from telemetry_rollup.cli import add_telemetry_command

APP = "codegraph"
LANGUAGES = {".py": "python", ".ts": "typescript", ".js": "javascript", ".go": "go", ".rs": "rust", ".md": "markdown"}
TOOLS = ("search", "callers", "callees", "definition", "impact")
TARGETS = ("claude", "cursor", "vscode")
AGENTS = ("claude-code", "cursor", "vscode", "codex")  # clientInfo.name outside this list counts as "other"


def files_bucket(n: int) -> str:
    for bound, label in ((10, "lt10"), (100, "lt100"), (1000, "lt1k"), (10000, "lt10k")):
        if n < bound:
            return label
    return "ge10k"


def setup() -> None:
    tr.configure(
        APP,
        endpoint=os.environ.get("CODEGRAPH_TELEMETRY_ENDPOINT", "https://telemetry.example.com/v1/rollups"),
        app_version="0.9.0",
        env_prefix="CODEGRAPH",
        allow=["command:*", "index.lang:*", "index.files:*", "install.*", "uninstall", "mcp.tool:*", "mcp.client:*"],
        flush_interval=float(os.environ.get("CODEGRAPH_FLUSH_INTERVAL", "60")),
        notice=(
            "codegraph collects anonymous usage counts (commands, MCP tools, languages; per day), never code, "
            "paths, names or queries. Turn off: `codegraph telemetry off`, CODEGRAPH_TELEMETRY=0 or DO_NOT_TRACK=1."
        ),
    )


def cmd_index(args: argparse.Namespace) -> int:
    files = [p for p in Path(args.path).rglob("*") if p.is_file()]
    langs = sorted({LANGUAGES[p.suffix] for p in files if p.suffix in LANGUAGES})
    for lang in langs:
        tr.count(f"index.lang:{lang}")
    tr.count(f"index.files:{files_bucket(len(files))}")
    print(f"indexed {len(files)} files ({', '.join(langs) or 'no known language'})")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    print(f"no results for {args.text!r}")  # the query is the user's: printed, never counted
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    tr.count(f"install.target:{args.target}")
    tr.count(f"install.scope:{args.scope}")
    print(f"installed for {args.target} ({args.scope})")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    tr.count("uninstall")
    print("uninstalled")
    return 0


def handle(request: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """One protocol request -> (reply, counter to add once the reply is written)."""
    method = request.get("method")
    rid = request.get("id")
    raw = request.get("params")
    params: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if method == "initialize":
        info = params.get("clientInfo")
        name = info.get("name") if isinstance(info, dict) else None
        agent = name if name in AGENTS else "other"
        return {"id": rid, "result": {"serverInfo": {"name": APP}}}, f"mcp.client:{agent}"
    if method == "tools/list":
        return {"id": rid, "result": {"tools": [{"name": t} for t in TOOLS]}}, None
    if method == "tools/call":
        tool = params.get("name")
        if tool not in TOOLS:
            return {"id": rid, "error": {"code": -32602, "message": "unknown tool"}}, None
        return {"id": rid, "result": {"content": [{"type": "text", "text": f"{tool}: 0 results"}]}}, f"mcp.tool:{tool}"
    return {"id": rid, "error": {"code": -32601, "message": "method not found"}}, None


def serve(stdin: IO[str], stdout: IO[str]) -> int:
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            reply, counter = handle(request if isinstance(request, dict) else {})
        except ValueError:
            reply, counter = {"id": None, "error": {"code": -32700, "message": "parse error"}}, None
        stdout.write(json.dumps(reply) + "\n")
        stdout.flush()
        if counter is not None:
            tr.count(counter)  # after the reply is on the wire: zero latency added to the call
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    setup()
    parser = argparse.ArgumentParser(prog=APP, description="A codegraph-like code index.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("index", help="index a directory")
    p.add_argument("path")
    p.set_defaults(func=cmd_index)
    p = sub.add_parser("query", help="query the index")
    p.add_argument("text")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("install", help="register with an agent")
    p.add_argument("--target", choices=TARGETS, default="claude")
    p.add_argument("--scope", choices=("global", "project"), default="project")
    p.set_defaults(func=cmd_install)
    sub.add_parser("uninstall", help="unregister").set_defaults(func=cmd_uninstall)
    sub.add_parser("serve", help="MCP-style stdio server").set_defaults(func=lambda a: serve(sys.stdin, sys.stdout))
    add_telemetry_command(sub, app=APP)  # codegraph telemetry status|on|off|local|show|reset-id|flush
    args = parser.parse_args(argv)
    if args.command != "telemetry":
        tr.count(f"command:{args.command}")  # the subcommand's name only, never its arguments
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
