"""A loopback HTTP file server for the remote tests: GET with ``Range: bytes=a-b`` and HEAD
over one folder, a thread per connection, and the requests it answered counted."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.lock = threading.Lock()
        self.gets: list[tuple[str, int]] = []

    def url(self, rel: str) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/{rel}"

    def requests_for(self, name: str) -> list[int]:
        """The lengths of the GETs answered for files called ``name``."""
        with self.lock:
            return [n for path, n in self.gets if path.rsplit("/", 1)[-1] == name]


class _Handler(BaseHTTPRequestHandler):
    server: RangeServer
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _file(self) -> Path | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        if ".." in rel.split("/"):
            return None
        path = self.server.root / rel
        return path if path.is_file() else None

    def _head(self, status: int, length: int, path: Path, extra: dict[str, str]) -> None:
        stat = path.stat()
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{stat.st_size}-{stat.st_mtime_ns}"')
        self.send_header("Last-Modified", self.date_time_string(int(stat.st_mtime)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self._head(200, path.stat().st_size, path, {})

    def do_GET(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end, status, extra = 0, size, 200, {}
        asked = self.headers.get("Range")
        if asked is not None:
            match = _RANGE.match(asked.strip())
            if match is None or int(match.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(match.group(1))
            end = min(int(match.group(2)) + 1, size) if match.group(2) else size
            status, extra = 206, {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
        with self.server.lock:
            self.server.gets.append((self.path, end - start))
        self._head(status, end - start, path, extra)
        with path.open("rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                chunk = f.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


@contextmanager
def serving(root: Path) -> Iterator[RangeServer]:
    """Serves ``root`` on 127.0.0.1 at a free port while the block runs."""
    server = RangeServer(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def files_of(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}
