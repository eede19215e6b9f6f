"""Fault injection through real processes: disk, hostile files, network, clock, parsers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receiver import Receiver
from sender_setup import add_lines, day, make_app

from telemetry_rollup import _codec, _sender, _store

HOST = """
import os, telemetry_rollup as tr
tr.configure("acme", default="local", flush_interval=0, endpoint=os.environ.get("TEST_ENDPOINT"))
for i in range(100):
    tr.count("build")
print("host ok")
"""


def host(env: dict[str, str] | None = None, preexec: object = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HOST)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec,  # type: ignore[arg-type]
    )


def assert_undisturbed(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "host ok\n"
    assert "Traceback" not in proc.stderr


def buffered(store: _store.AppStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, n), c in _codec.decode_lines(Path(store.buffer).read_bytes()).rollup.items():
        out[n] = out.get(n, 0) + c
    return out


# -- disk ----------------------------------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
def test_read_only_data_directory(home: Path) -> None:  # pragma: no cover - CI runs as root
    home.mkdir()
    home.chmod(0o500)
    assert_undisturbed(host())


def test_read_only_app_directory_keeps_buffered_data(home: Path, tmp_path: Path) -> None:
    assert_undisturbed(host())
    store = _store.AppStore(home / "acme")
    before = Path(store.buffer).read_bytes()
    # a read-only mount: bind-mounting needs privileges we may not have, so use chattr-free means:
    # replace the directory by a path whose parent is a regular file (every write fails with ENOTDIR)
    assert_undisturbed(host({"TELEMETRY_ROLLUP_HOME": str(store.buffer)}))
    assert Path(store.buffer).read_bytes() == before


def test_data_root_is_a_regular_file(home: Path) -> None:
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a directory")
    assert_undisturbed(host())
    assert home.read_text() == "not a directory"


def test_missing_data_root_is_created_with_private_modes(home: Path) -> None:
    assert not home.exists()
    assert_undisturbed(host())
    assert oct((home / "acme").stat().st_mode & 0o777) == "0o700"


def test_full_disk_rlimit_fsize(home: Path) -> None:
    assert_undisturbed(host())
    store = _store.AppStore(home / "acme")
    before = buffered(store)

    def limit() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death, as on a full disk
        size = Path(store.buffer).stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    assert_undisturbed(host(preexec=limit))
    assert buffered(store) == before  # what was buffered survives; the new counts could not be written


@pytest.mark.skipif(not shutil.which("mount") or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_full_tmpfs(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("this sandbox does not allow mounting a tmpfs")
    try:
        (mnt / "filler").write_bytes(b"x" * 60_000)
        env = {"TELEMETRY_ROLLUP_HOME": str(mnt / "home")}
        assert_undisturbed(host(env))
        with open(mnt / "more", "wb") as f:  # fill the rest
            try:
                f.write(b"x" * 64_000)
            except OSError:
                pass
        assert_undisturbed(host(env))
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# -- hostile or damaged files ----------------------------------------------------------------------
HOSTILE = {
    "truncated": lambda p: p.write_bytes(b'{"v":1,"d":"2026-11-2'),
    "random": lambda p: p.write_bytes(os.urandom(5000)),
    "enormous": lambda p: p.write_bytes(b"x" * (100 * 1024 * 1024)),
    "fifo": lambda p: os.mkfifo(p),
    "symlink": lambda p: p.symlink_to("/etc/passwd"),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
@pytest.mark.parametrize(
    "target",
    [
        "buffer.jsonl",
        "state.json",
        "config.json",
        "mode.json",
        "machine_key",
        "machine_id",
        "outbox/CURRENT",
        "report",
        "input",
    ],
)
def test_hostile_files_never_break_the_host_or_the_sender(
    home: Path, receiver: Receiver, kind: str, target: str
) -> None:
    store = make_app(home, endpoint=receiver.url)
    add_lines(store, {(day(-1), "kept"): 3}, spill=True)
    gen = _sender.Pipeline(store).recover()
    if target == "report":
        path = gen / "reports" / "00000000-0000-4000-8000-000000000000.json"
    elif target == "input":
        path = gen / "inputs" / "planted.jsonl"
    else:
        path = Path(store.dir) / target
    if path.exists() or path.is_symlink():
        path.unlink()
    HOSTILE[kind](path)
    passwd = Path("/etc/passwd").read_bytes()
    t0 = time.monotonic()
    proc = host({"ACME_TELEMETRY": "on", "TEST_ENDPOINT": receiver.url})
    assert_undisturbed(proc)
    res = _sender.run(store, timeout=5, force=True, include_today=True, environ={"ACME_TELEMETRY": "on"})
    assert time.monotonic() - t0 < 30
    assert Path("/etc/passwd").read_bytes() == passwd
    if target not in ("config.json",):  # a destroyed config has no endpoint: nothing can be sent
        assert res.sent is not None, res
        got = receiver.totals()
        assert got.get("kept") == 3
        if target != "buffer.jsonl" or kind != "enormous":
            assert got.get("build") == 100


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_parsers_never_raise(data: bytes) -> None:
    dec = _codec.decode_lines(data)
    assert dec.corrupt >= 0
    assert _codec.decode_report(data) is None or isinstance(_codec.decode_report(data), dict)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.builds(
                lambda d, c: json.dumps({"v": 1, "d": d, "n": "a", "c": c}).encode(),
                st.text(max_size=12),
                st.integers(),
            ),
        )
    )
)
def test_decoder_on_mixed_lines(lines: list[bytes]) -> None:
    dec = _codec.decode_lines(b"\n".join(lines))
    assert all(c >= 0 for c in dec.rollup.values())


# -- network ---------------------------------------------------------------------------------------
def _outcome(home: Path, endpoint: str, timeout: float = 3.0) -> tuple[_sender.RunResult, float, _store.AppStore]:
    store = make_app(home, endpoint=endpoint)
    add_lines(store, {(day(-1), "x"): 1})
    t0 = time.monotonic()
    res = _sender.run(store, timeout=timeout, force=True)
    return res, time.monotonic() - t0, store


def test_dns_failure_keeps_reports(home: Path) -> None:
    res, took, _ = _outcome(home, "https://no-such-host.invalid/v1/rollups")
    assert res.sent is not None and res.sent.kept == 1 and took < 4


def test_closed_after_headers(home: Path) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve() -> None:
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    res, took, _ = _outcome(home, f"http://127.0.0.1:{srv.getsockname()[1]}/v1/rollups")
    srv.close()
    assert res.sent is not None and took < 4
    # a 200 whose body was cut short still means the server answered 2xx: acknowledged (the
    # status line is the receiver's commitment); either way the count is never duplicated


def test_redirect_to_another_host_is_not_followed(home: Path, receiver: Receiver) -> None:
    other = Receiver().start()
    try:
        receiver.behaviour, receiver.status = "status", 307
        receiver.headers = {"Location": other.url}
        res, _, _ = _outcome(home, receiver.url)
        assert res.sent is not None and res.sent.kept == 1
        assert other.connections == 0
    finally:
        other.stop()


def test_tls_with_a_bad_certificate_is_refused_never_downgraded(home: Path, tmp_path: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl not installed")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    plain = Receiver()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    plain.server.socket = ctx.wrap_socket(plain.server.socket, server_side=True)
    plain.start()
    try:
        res, took, _ = _outcome(home, f"https://127.0.0.1:{plain.port}/v1/rollups")
        assert res.sent is not None and res.sent.kept == 1 and res.sent.outcome is not None
        assert "SSL" in res.sent.outcome.detail and took < 4
        assert plain.bodies == []
    finally:
        plain.stop()


# -- clock -----------------------------------------------------------------------------------------
@pytest.mark.skipif(not shutil.which("faketime"), reason="faketime not installed")
@pytest.mark.parametrize("jump", ["-3d", "+2d", "-5h", "+30d"])
def test_clock_jumps_between_counting_and_sending_lose_and_duplicate_nothing(
    home: Path, receiver: Receiver, jump: str
) -> None:
    make_app(home, endpoint=receiver.url)
    code = f'import telemetry_rollup as tr; tr.configure("acme", endpoint={receiver.url!r}); tr.count("c", 7)'
    env = dict(os.environ, ACME_TELEMETRY="on")
    subprocess.run(["faketime", "-f", jump, sys.executable, "-c", code], env=env, check=True, timeout=60)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    for _ in range(3):
        subprocess.run(
            ["faketime", "-f", jump, sys.executable, "-m", "telemetry_rollup", "flush", "--app", "acme", "--quiet"],
            env=env,
            timeout=60,
        )
        subprocess.run(
            [sys.executable, "-m", "telemetry_rollup", "flush", "--app", "acme", "--include-today", "--quiet"],
            env=env,
            timeout=60,
        )
    # the clock settles one day past the latest jump: the day counted "in the future" is now past
    final = f"+{int(jump[1:-1]) + 1 if jump.startswith('+') and jump.endswith('d') else 1}d"
    subprocess.run(
        [
            "faketime",
            "-f",
            final,
            sys.executable,
            "-m",
            "telemetry_rollup",
            "flush",
            "--app",
            "acme",
            "--include-today",
            "--quiet",
        ],
        env=env,
        timeout=60,
    )
    got = receiver.totals()
    assert got.get("c") == 14  # both counts, each sent once, whichever way the clock jumped
    assert set(receiver.deliveries.values()) == {1}
