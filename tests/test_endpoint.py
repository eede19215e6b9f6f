"""The endpoint rule (issues 12.6 and 18.5): https anywhere, plain http only to this machine, no
credentials, query or fragment; enforced by configure() and again by the transport, so that no
secret is ever written, shown or sent, and nothing goes over plain http to another machine."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest
from cli_helpers import Receiver, clean_env, day, plant, run_cli
from helpers import run_py
from hypothesis import example, given
from hypothesis import strategies as st

from telemetry_rollup import _transport
from telemetry_rollup._endpoint import CREDENTIALS_RULE, HTTP_RULE, QUERY_RULE, endpoint_problem

ACCEPTED = [
    "https://telemetry.example.com/v1/rollups",
    "HTTPS://Telemetry.Example.com:8443/v1/rollups",
    "https://example.com",
    "https://203.0.113.5/x",
    "https://[2001:db8::1]:443/x",
    "http://127.0.0.1:8787/v1/rollups",
    "http://127.5.6.7/",
    "http://localhost:9/x",
    "http://LOCALHOST/x",
    "http://[::1]:9/v1/rollups",
    "https://example.com/a%20b/c;v=1",
]
REFUSED = {
    "https://user:pw@example.com/v1": CREDENTIALS_RULE,
    "https://user@example.com/v1": CREDENTIALS_RULE,
    "http://u:p@127.0.0.1/v1": CREDENTIALS_RULE,
    "https://example.com/v1?api_key=K": QUERY_RULE,
    "https://example.com/v1?": QUERY_RULE,
    "https://example.com/v1#token": QUERY_RULE,
    "http://example.com/v1": HTTP_RULE,
    "http://10.0.0.1/v1": HTTP_RULE,
    "http://0x7f000001/v1": HTTP_RULE,  # loopback to inet_aton, but not spelled as such: fail closed
    "http://2130706433/v1": HTTP_RULE,
    "http://127.1/v1": HTTP_RULE,
    "http://0177.0.0.1/v1": HTTP_RULE,
    "http://localhost.example.com/v1": HTTP_RULE,
    "http://127.0.0.1.nip.io/v1": HTTP_RULE,
    "http://localhost./v1": HTTP_RULE,
    "http://[::ffff:127.0.0.1]/v1": HTTP_RULE,
    "http://127.0.0.256/v1": HTTP_RULE,
}
MALFORMED = [
    "",
    "example.com/v1",
    "ftp://example.com/v1",
    "javascript:alert(1)",
    "https:///v1",
    "https://exa mple.com/",
    "https://exämple.com/",
    "https://example.com/\n",
    "https://example.com:99999/",
    "https://example.com:0/",
    "https://example.com:x/",
    "https://example.com:/",
    "https://evil.com\\.127.0.0.1/",
    "https://[::1%25eth0]/",
    "https://[::1/",
    "https://-x.com/",
    "https://a..b/",
    "https://example.com/<script>",
    "https://" + "a" * 2048,
]


@pytest.mark.parametrize("url", ACCEPTED)
def test_accepted(url: str) -> None:
    assert endpoint_problem(url) is None


@pytest.mark.parametrize(("url", "reason"), REFUSED.items())
def test_refused_with_its_reason(url: str, reason: str) -> None:
    assert endpoint_problem(url) == reason


@pytest.mark.parametrize("url", [*MALFORMED, None, 3, b"https://example.com/"])
def test_malformed(url: object) -> None:
    problem = endpoint_problem(url)
    assert problem is not None and "endpoint" in problem


def test_a_reason_never_quotes_the_url() -> None:
    for url in [*REFUSED, *MALFORMED]:
        problem = endpoint_problem(url)
        assert problem is not None
        for secret in ("pw", "api_key", "token", "evil", "nip.io"):
            if secret in url:
                assert secret not in problem


def _urllib3_view(url: str) -> tuple[str | None, str | None, int | None, str | None, str | None, str | None]:
    from urllib3.util import parse_url

    u = parse_url(url)
    host = u.host.strip("[]").lower() if u.host else None
    return u.scheme, host, u.port, u.auth, u.query, u.fragment


urlish = st.text(alphabet=st.sampled_from("htps:/@?#.[]%\\-_aeol1270x:L "), max_size=40)


@given(st.one_of(urlish, st.text(max_size=60), st.sampled_from([*ACCEPTED, *REFUSED, *MALFORMED])))
@example("http://127.0.0.1:80/")
@example("https://a/@b")
def test_what_the_rule_accepts_requests_reads_the_same_way(url: str) -> None:
    """An accepted URL has, to urllib3's parser (the one requests uses), no credentials, query or
    fragment, and over plain http a host that is a loopback address."""
    if endpoint_problem(url) is not None:
        return
    scheme, host, _port, auth, query, fragment = _urllib3_view(url)
    assert scheme in ("http", "https") and host and auth is None and query is None and fragment is None
    if scheme == "http":
        assert host == "localhost" or ipaddress.ip_address(host).is_loopback


# -- configure() refuses: nothing written, nothing shown, one debug line -------------------------
SECRET_URLS = [
    "https://tool:SECRETPW@telemetry.example.com/v1/rollups",
    "https://telemetry.example.com/v1/rollups?api_key=APIKEY123",
    "http://telemetry.example.com/v1/rollups",
]


@pytest.mark.parametrize("url", SECRET_URLS)
def test_configure_refuses_and_writes_nothing(home: Path, url: str) -> None:
    proc = run_py(
        "import threading, telemetry_rollup as tr\n"
        f"tr.configure('acme', endpoint={url!r})\n"
        "tr.count('x'); tr.flush(); print(tr.send(timeout=1).sent, tr._default.mode, threading.active_count())",
        env={"TELEMETRY_ROLLUP_DEBUG": "1", "ACME_TELEMETRY": "on"},
    )
    assert proc.stdout.split() == ["0", "off", "1"]
    assert not home.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "telemetry is off" in lines[0] and "endpoint refused" in lines[0], proc.stderr
    assert "SECRETPW" not in proc.stderr and "APIKEY123" not in proc.stderr and "example.com" not in proc.stderr


# -- a config.json edited by hand cannot bypass it -----------------------------------------------
def _tampered(home: Path, url: str) -> None:
    d = plant(home, "acme", {(day(-1), "build"): 3}, endpoint=url)
    (d / "machine_id").write_text("0f8b6e5a-2c3d-4e5f-8a9b-0c1d2e3f4a5b\n")
    (d / "notice").write_text("0")


def _everything_printed(home: Path, tmp_path: Path) -> str:
    outputs = []
    for args in (["status"], ["status", "--json"], ["show"], ["show", "--raw"], ["flush"]):
        res = run_cli(home, *args, TELEMETRY_ROLLUP_DEBUG="1")
        outputs += [res.stdout, res.stderr]
    page = tmp_path / "view.html"
    res = run_cli(home, "view", "--no-open", "--out", str(page))
    outputs += [res.stdout, res.stderr, page.read_text()]
    res = run_cli(home, "off", "--app", "acme", TELEMETRY_ROLLUP_DEBUG="1")
    outputs += [res.stdout, res.stderr]
    return "\n".join(outputs)


@pytest.mark.parametrize(
    "template",
    [
        "http://tool:SECRETPW@127.0.0.1:{port}/v1/rollups",
        "http://127.0.0.1:{port}/v1/rollups?api_key=APIKEY123",
        "http://127.0.0.1:{port}/v1/rollups#APIKEY123",
        "http://0x7f000001:{port}/v1/rollups",  # plain http to a host not spelled as loopback
    ],
)
def test_a_hand_edited_config_sends_nothing_and_shows_no_secret(home: Path, tmp_path: Path, template: str) -> None:
    with Receiver() as receiver:
        _tampered(home, template.format(port=receiver.port))
        printed = _everything_printed(home, tmp_path)
        assert receiver.connections == 0, "the transport reached a refused endpoint"
    for secret in ("SECRETPW", "APIKEY123", "0x7f000001"):
        assert secret not in printed
    assert "endpoint" in printed and "refused" in printed
    assert not (home / "acme" / "forget.json").exists()  # the deletion request is not stored for it


def test_status_json_says_why_an_endpoint_is_refused(home: Path) -> None:
    _tampered(home, "http://telemetry.example.com/v1/rollups")
    app = json.loads(run_cli(home, "status", "--json").stdout)["apps"][0]
    assert app["endpoint"] is None and app["endpoint_refused"] == HTTP_RULE
    assert "refused" in app["next_attempt"]["why"]
    ok = plant(home, "beta", {(day(-1), "x"): 1}, endpoint="https://telemetry.example.com/v1/rollups")
    beta = json.loads(run_cli(home, "status", "--json", "--app", ok.name).stdout)["apps"][0]
    assert beta["endpoint"] == "https://telemetry.example.com/v1/rollups" and beta["endpoint_refused"] is None


def test_the_transport_refuses_before_any_socket() -> None:
    with Receiver() as receiver:
        for url in (f"http://u:p@127.0.0.1:{receiver.port}/x", f"http://127.0.0.1:{receiver.port}/x?k=v"):
            out = _transport.post(url, b"{}", timeout=2.0)
            assert out.kind == "retry" and out.status is None and out.detail.startswith("endpoint refused")
        assert receiver.connections == 0
        assert _transport.post(receiver.url, b"{}", timeout=2.0).kind == "sent"


def test_netrc_never_becomes_an_authorization_header(home: Path, tmp_path: Path) -> None:
    """requests adds Basic credentials from ~/.netrc for a matching host unless told otherwise:
    a header TELEMETRY.md does not promise, with the user's password in it."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password NETRCSECRET\n")
    netrc.chmod(0o600)
    with Receiver() as receiver:
        proc = run_py(
            "from telemetry_rollup import _transport\n"
            f"print(_transport.post({receiver.url!r}, b'{{}}', timeout=5.0).kind)",
            env={**clean_env(home), "NETRC": str(netrc), "HOME": str(tmp_path)},
        )
        assert proc.stdout.strip() == "sent"
        assert len(receiver.request_headers) == 1
        headers = {k.lower(): v for k, v in receiver.request_headers[0].items()}
    assert "authorization" not in headers, headers


def test_a_hand_edited_deletion_request_is_neither_sent_nor_shown(home: Path, tmp_path: Path) -> None:
    with Receiver() as receiver:
        _tampered(home, receiver.url)
        secret = f"http://tool:SECRETPW@127.0.0.1:{receiver.port}/v1/rollups?api_key=APIKEY123"
        request = {"machine_id": "1f8b6e5a-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "endpoint": secret, "created_at": time.time()}
        (home / "acme" / "forget.json").write_text(json.dumps({"schema": 1, "requests": [request]}))
        outputs = []
        for args in (["status"], ["status", "--json"], ["show"], ["flush", "--app", "acme"]):
            res = run_cli(home, *args, TELEMETRY_ROLLUP_DEBUG="1")
            outputs += [res.stdout, res.stderr]
        # the reports went to the good endpoint; the deletion request to nowhere
        assert [b.get("forget") for b in receiver.json_bodies()] == [None]
    printed = "\n".join(outputs)
    assert "SECRETPW" not in printed and "APIKEY123" not in printed
    assert "a refused endpoint" in printed, printed
    assert "endpoint refused" in printed, printed
