"""Hostile HTTP endpoints on 127.0.0.1, on raw sockets: what a broken or malicious receiver does.

- ``endless``: answers 200 with no length and streams bytes as fast as the client takes them;
- ``trickle_body``: answers 200 with no length, then one byte every 50 ms, forever;
- ``trickle_head``: sends its status line and headers one byte every 50 ms, never finishing.

Each connection has its own thread; ``open`` counts connections the client has not closed yet
(a send to a closed peer fails, which is how the server notices).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

KINDS = ("endless", "trickle_body", "trickle_head")


class Hostile:
    def __init__(self, kind: str) -> None:
        assert kind in KINDS
        self.kind = kind
        self.connections = 0
        self.open = 0
        self.sent = 0  # bytes written to clients
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/rollups"
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Hostile:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            rest += chunk

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        with self.lock:
            self.sent += len(data)

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._read_request(conn)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            if self.kind == "endless":
                self._send(conn, head)
                block = b"1" * 65536
                while not self.stopping.is_set():
                    self._send(conn, block)
            elif self.kind == "trickle_body":
                self._send(conn, head)
                while not self.stopping.is_set():
                    self._send(conn, b" ")
                    time.sleep(0.05)
            else:  # the status line, then a header that never ends
                for b in b"HTTP/1.1 200 OK\r\nX-Slow: ":
                    self._send(conn, bytes([b]))
                    time.sleep(0.05)
                while not self.stopping.is_set():
                    self._send(conn, b"a")
                    time.sleep(0.05)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"connections": self.connections, "open": self.open, "sent": self.sent}
