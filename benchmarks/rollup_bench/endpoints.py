"""The endpoints on 127.0.0.1: "healthy" is a small in-process HTTP server answering 200 to every
POST; "refused" is a port nobody listens on; "never answering" is a listening socket that never
accepts, so connections hang until the client's own timeout."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Healthy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    posts: dict[str, int] = {}  # noqa: RUF012 - per-process tally, read by the runner
    lock = threading.Lock()

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                self.rfile.read(size + 2)
                if size == 0:
                    break
        with self.lock:
            self.posts[self.path] = self.posts.get(self.path, 0) + 1
        body = b'{"stored":1,"duplicates":0,"refused":0,"status":1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # an SDK's worker thread hanging up mid-request when its process exits is not news


class Endpoints:
    """healthy / refused / never-answering URLs on 127.0.0.1, for the duration of a ``with``."""

    def __enter__(self) -> Endpoints:
        self.http = _QuietServer(("127.0.0.1", 0), _Healthy)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            refused_port = s.getsockname()[1]  # closed again: connections are refused
        self.never = socket.socket()
        self.never.bind(("127.0.0.1", 0))
        self.never.listen(1024)  # never accepted: the kernel completes handshakes, nobody answers
        self.ports = {
            "healthy": self.http.server_address[1],
            "refused": refused_port,
            "never": self.never.getsockname()[1],
        }
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.never.close()

    def url(self, state: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[state]}{path}"

    def posts(self, prefix: str) -> int:
        with _Healthy.lock:
            return sum(n for p, n in _Healthy.posts.items() if p.startswith(prefix))
