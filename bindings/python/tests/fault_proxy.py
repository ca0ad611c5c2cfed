"""An HTTP proxy between shardpack and a loopback test server (moto's S3, the range server)
that spends queued faults on the ranged GETs of shard objects, one a GET: a 503, a delay, a
body cut short, a byte flipped, the answer held until the test lets it go, or none. Every
other request passes unchanged. Every wait in it has a bound, so that no test through it
can hang."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["none", "503", "delay", "cut", "flip", "hold"]

# Headers of one connection, not of the message (RFC 9110 §7.6.1): never forwarded.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

# Longer than a request normally takes, far shorter than the client's own timeout (60 s), so
# that a stalled upstream shows here as a 504 instead of as a client retrying for minutes.
UPSTREAM_TIMEOUT_SECS = 20.0
# An idle kept-alive client connection is closed after this, ending its thread.
CLIENT_IDLE_SECS = 30.0
DELAY_SECS = 1.0
# The longest a held answer waits for `release()`.
HOLD_SECS = 20.0


@dataclass(frozen=True)
class Spent:
    """A fault spent: on which object and which bytes (the request's ``Range``)."""

    fault: Fault
    path: str
    first: int
    last: int


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.lock = threading.Lock()
        self.queued: list[Fault] = []
        self.spent: list[Spent] = []
        self.requests = 0
        self.held = threading.Event()
        self.released = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def queue(self, *faults: Fault) -> None:
        """Faults for the next shard GETs, one each, in order."""
        with self.lock:
            self.queued.extend(faults)
            self.spent.clear()

    def left(self) -> list[Fault]:
        with self.lock:
            return list(self.queued)

    def spent_faults(self) -> list[Fault]:
        with self.lock:
            return [s.fault for s in self.spent]

    def release(self) -> None:
        self.released.set()

    def _next_fault(self, command: str, path: str, asked: str | None) -> Fault | None:
        with self.lock:
            self.requests += 1
            # Shard reads only: a fault on the manifest would test opening, not reading.
            if command != "GET" or "shard-" not in path or not asked or not self.queued:
                return None
            first, _, last = asked.removeprefix("bytes=").partition("-")
            fault = self.queued.pop(0)
            self.spent.append(Spent(fault, path, int(first), int(last or -1)))
            return fault


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = CLIENT_IDLE_SECS

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if size == 0:
                    # Trailer fields, up to the empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        body = self._body()
        named = {
            h.strip().lower() for h in self.headers.get("Connection", "").split(",") if h.strip()
        }
        # Host stays the client's: an S3 request's signature covers it.
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in HOP_BY_HOP | named and k.lower() != "content-length"
        }
        if body is not None:
            headers["Content-Length"] = str(len(body))
        fault = self.server._next_fault(self.command, self.path, self.headers.get("Range"))
        if fault == "503":
            self._answer(503, [], b"")
            return
        if fault == "delay":
            time.sleep(DELAY_SECS)
        if fault == "hold":
            self.server.held.set()
            self.server.released.wait(HOLD_SECS)
        try:
            status, answer_headers, data = self._upstream(body, headers)
        except (OSError, http.client.HTTPException) as e:
            self._answer(504, [], f"upstream: {e!r}".encode())
            return
        if fault == "flip" and data:
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0x01
            data = bytes(flipped)
        if self.command == "HEAD":
            # A HEAD's Content-Length is the object's, not that of the empty body.
            self._answer(status, answer_headers, b"", keep_length=True)
            return
        self._answer(status, answer_headers, data, cut=fault == "cut")

    def _upstream(
        self, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=UPSTREAM_TIMEOUT_SECS)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def _answer(
        self,
        status: int,
        headers: list[tuple[str, str]],
        data: bytes,
        *,
        keep_length: bool = False,
        cut: bool = False,
    ) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() in HOP_BY_HOP or (k.lower() == "content-length" and not keep_length):
                continue
            self.send_header(k, v)
        if not keep_length:
            self.send_header("Content-Length", str(len(data)))
        if cut:
            # The length announced, half the bytes sent, the connection closed.
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = _forward
    do_HEAD = _forward
    do_PUT = _forward
    do_POST = _forward
    do_DELETE = _forward


@contextmanager
def proxying(upstream: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of ``upstream`` (``http://host:port``) while the block runs."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.shutdown()
        proxy.server_close()
        thread.join(timeout=10)
