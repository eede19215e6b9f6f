"""A real HTTP receiver on 127.0.0.1 for delivery tests, with switchable behaviour.

It deduplicates by report id, as the reference server does, and keeps every body it was sent
(``bodies``, whatever it answered), so a test can assert what was delivered and how often. It
answers a deletion request with ``{"forgotten": true}``. Use it started (``Receiver().start()``)
or as a context manager.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.bodies: list[bytes] = []
        self.request_headers: list[dict[str, str]] = []  # every POST's headers, in order
        self.reports: dict[str, dict[str, Any]] = {}  # id -> report (first copy)
        self.deliveries: dict[str, int] = {}  # id -> times received
        self.rejected: dict[str, dict[str, Any]] = {}  # id -> report, for bodies answered with a final 4xx
        self.connections = 0
        self.behaviour: str = "ok" if status == 200 else "status"  # ok | status | hang | store_then_hangup | trickle
        self.status = status
        self.headers: dict[str, str] = {}
        self.answer: dict[str, Any] | None = None  # a JSON answer instead of the usual one
        self.lock = threading.Lock()
        self.release = threading.Event()
        recv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with recv.lock:
                    recv.bodies.append(body)
                    recv.request_headers.append(dict(self.headers.items()))
                mode = recv.behaviour
                if mode == "hang":
                    recv.release.wait(30)
                    return
                if mode in ("ok", "store_then_hangup"):
                    recv._store(body)
                if mode == "store_then_hangup":
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    for _ in range(100):
                        if recv.release.wait(0.2):
                            return
                        self.wfile.write(b" ")
                        self.wfile.flush()
                    return
                status = 200 if mode == "ok" else recv.status
                if mode == "status" and status in (400, 401, 403, 404, 410, 413, 422):
                    with recv.lock:
                        for r in json.loads(body).get("reports", []):
                            recv.rejected.setdefault(r["id"], r)
                forget = b'"forget"' in body
                usual = {"forgotten": True} if forget else {"stored": 1, "duplicates": 0, "refused": 0}
                out = json.dumps(recv.answer if recv.answer is not None else usual).encode()
                self.send_response(status)
                for k, v in recv.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> Any:
                conn = super().get_request()
                with recv.lock:
                    recv.connections += 1
                return conn

        self.server = Server(("127.0.0.1", 0), Handler)
        # The listening socket never blocks: a connection the selector reported but that was gone
        # by accept() (a client's hang-up at its deadline) left serve_forever blocked in accept()
        # for good, and stop() waited for it (a full-suite run hung there). socketserver takes the
        # BlockingIOError as "no request"; accepted connections are blocking as before.
        self.server.socket.setblocking(False)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/rollups"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _store(self, body: bytes) -> None:
        obj = json.loads(body)
        with self.lock:
            for r in obj.get("reports", []):
                self.deliveries[r["id"]] = self.deliveries.get(r["id"], 0) + 1
                self.reports.setdefault(r["id"], r)

    def totals(self) -> dict[str, int]:
        """Counter totals over distinct reports (what a deduplicating receiver stores)."""
        out: dict[str, int] = {}
        for r in self.reports.values():
            for k, v in r["counts"].items():
                out[k] = out.get(k, 0) + v
        return out

    def json_bodies(self) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.bodies]

    def wait_for(self, n: int, timeout: float = 15.0) -> bool:
        """Wait until ``n`` bodies have arrived."""
        return wait_for(lambda: len(self.bodies) >= n, timeout)

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def wait_for(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())
