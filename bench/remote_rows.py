"""The remote rows of bench/compare: the packed text archive served over loopback HTTP.

* `shardpack fetch URL -o DIR` against `curl` of the same files, NCPU at once (`xargs -P`);
  both write every byte to a new folder, so both pay the same disk writes.
* random reads over the URL from Python: `archive[i]` one by one (a GET per sample) against
  `archive.get_many(batch)` (the batch's ranges coalesced, several GETs in flight).

The server is a separate process (`python remote_rows.py serve DIR PORT_FILE`): Python's
ThreadingHTTPServer with `Range` support and `sendfile`, so that the bench driver's own
threads never compete with it for the GIL. nginx is used instead when it is installed.

Run as a module by bench/compare (`run`, `tables`), and as a script inside the bench venv
for the Python rows (`python remote_rows.py get URL COUNT BATCH`), one JSON line out.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BATCH = 256


# ---------------------------------------------------------------- the server


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers (40 ms on Linux), which made every small ranged
    # GET cost 45 ms here. Servers people read from (nginx, S3) set TCP_NODELAY too.
    disable_nagle_algorithm = True
    root = Path()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _path(self) -> Path | None:
        rel = self.path.split("?", 1)[0].lstrip("/")
        path = self.root / rel
        return path if ".." not in rel.split("/") and path.is_file() else None

    def _head(self, status: int, length: int, path: Path, extra: dict[str, str]) -> None:
        st = path.stat()
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{st.st_size}-{st.st_mtime_ns}"')
        self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()

    def do_HEAD(self) -> None:
        path = self._path()
        if path is None:
            self.send_error(404)
        else:
            self._head(200, path.stat().st_size, path, {})

    def do_GET(self) -> None:
        path = self._path()
        if path is None:
            self.send_error(404)
            return
        size = path.stat().st_size
        start, end, status, extra = 0, size, 200, {}
        m = re.match(r"bytes=(\d+)-(\d*)$", (self.headers.get("Range") or "").strip())
        if self.headers.get("Range") is not None:
            if m is None or int(m.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, size) if m.group(2) else size
            status, extra = 206, {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
        self._head(status, end - start, path, extra)
        self.wfile.flush()
        with path.open("rb") as f:
            self.connection.sendfile(f, start, end - start)


def serve(root: str, port_file: str) -> None:
    _RangeHandler.root = Path(root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


NGINX_CONF = """daemon off; worker_processes {workers}; pid {work}/nginx.pid;
error_log {work}/error.log; events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy; fastcgi_temp_path {work}/fcgi; uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""


class Served:
    """`root` served on 127.0.0.1 (nginx if installed, else the Python server) while open."""

    def __init__(self, root: Path, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        nginx = _which("nginx")
        if nginx:
            import socket

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            conf = work / "nginx.conf"
            conf.write_text(NGINX_CONF.format(workers=os.cpu_count() or 1, work=work,
                                              port=self.port, root=root))
            self.proc = subprocess.Popen([nginx, "-c", str(conf)], stderr=subprocess.DEVNULL)
            self.kind = "nginx"
            _wait_for_port(self.port, self.proc)
        else:
            port_file = work / "port"
            port_file.unlink(missing_ok=True)
            self.proc = subprocess.Popen([sys.executable, __file__, "serve", str(root),
                                          str(port_file)])
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the range server did not start")
                time.sleep(0.05)
            self.port = int(port_file.read_text())
            self.kind = "Python ThreadingHTTPServer with Range and sendfile"

    def url(self, rel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{rel}"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def _which(name: str) -> str | None:
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def _wait_for_port(port: int, proc: subprocess.Popen) -> None:
    import socket

    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.05)


# ---------------------------------------------------------------- random reads (in the venv)


def get(url: str, count: str, batch: str) -> None:
    """archive[i] one by one, then the same ordinals through get_many in batches."""
    import shardpack
    from peers import emit, ordinals

    a = shardpack.open(url)
    order = ordinals(int(count), len(a))
    b = int(batch)
    clock = time.perf_counter
    t0 = clock()
    one = sum(v.nbytes for o in order for v in a[o].values())
    one_secs = clock() - t0
    t1 = clock()
    many = 0
    for i in range(0, len(order), b):
        for s in a.get_many(order[i:i + b]):
            many += sum(v.nbytes for v in s.values())
    many_secs = clock() - t1
    emit(secs=one_secs, samples=len(order), bytes=one, many_secs=many_secs, many_bytes=many)


# ---------------------------------------------------------------- bench/compare's hooks


def run(bench, ds, outdir: Path, packs, c) -> dict:
    """The remote rows for one dataset (the text one; others have none); `c` is the
    bench/compare module, whose runners and helpers these rows use."""
    NCPU, MB, Outcome, StepError = c.NCPU, c.MB, c.Outcome, c.StepError
    dir_bytes, fresh, not_run, q, run_cmd, sp_dir = (c.dir_bytes, c.fresh, c.not_run, c.q,
                                                      c.run, c.sp_dir)

    if ds.name != "text":
        return {}
    variant = "ssd"
    if not packs[f"shardpack {variant}"].ok:
        return {"(all)": not_run("pack failed")}
    archive = sp_dir(outdir, variant)
    served = Served(outdir, bench.work / "tmp" / "remote-server")
    res: dict[str, Outcome] = {}
    try:
        url = served.url(archive.name)
        names = sorted(p.name for p in archive.iterdir() if p.is_file())
        size = dir_bytes(archive)

        def fetch_once() -> dict:
            out = fresh(outdir / "remote-fetch")
            p = run_cmd([bench.sp, "fetch", url, "-o", str(out)], bench.timeout)
            if dir_bytes(out) != size:
                raise StepError(f"fetched {dir_bytes(out)} bytes of {size}")
            return {"secs": p.wall, "cpu": p.cpu, "maxrss_kb": p.maxrss_kb}

        def curl_once() -> dict:
            out = fresh(outdir / "remote-curl")
            out.mkdir()
            listing = " ".join(names)
            p = run_cmd(f"printf '%s\\n' {listing} | xargs -P {NCPU} -I{{}} "
                        f"curl -s -f -o {q(out)}/{{}} {q(url)}/{{}}", bench.timeout)
            if dir_bytes(out) != size:
                raise StepError(f"curl wrote {dir_bytes(out)} bytes of {size}")
            return {"secs": p.wall, "cpu": p.cpu, "maxrss_kb": p.maxrss_kb}

        attempt, best_of = c.attempt, c.best_of

        def measured(once, method: str) -> Outcome:
            values, how = best_of(once)
            values["mbps"] = size / MB / values["secs"]
            return Outcome(values, method=f"{method}, {how}")

        res["shardpack fetch"] = attempt(measured, fetch_once,
                                         "4 shards at once, each BLAKE3-checked, fsynced")
        if _which("curl"):
            res[f"curl, {NCPU} at once"] = attempt(measured, curl_once,
                                                   f"xargs -P {NCPU} curl -s -o, no check")
        else:
            res[f"curl, {NCPU} at once"] = not_run("curl is not installed")
        count = min(c.RANDOM_SAMPLES, 2_000)
        o = bench.peer_step("shardpack-python", ["get", url, str(count), str(BATCH)],
                            script="remote_rows.py")
        if o.ok:
            if o.values["bytes"] != o.values["many_bytes"]:
                o = Outcome(error=f"failed: archive[i] read {o.values['bytes']} bytes, "
                                  f"get_many {o.values['many_bytes']}")
            else:
                o.values["sps"] = o.values["samples"] / o.values["secs"]
                o.values["many_sps"] = o.values["samples"] / o.values["many_secs"]
        res["random get over HTTP"] = o
        for k in res:
            if res[k].ok and not res[k].method.endswith(served.kind):
                res[k].method += f"; server: {served.kind}"
    finally:
        served.close()
        for d in ("remote-fetch", "remote-curl"):
            fresh(outdir / d)
    return res


def tables(r, table, fmt_num) -> list[str]:
    """The remote section's tables for one dataset's results."""
    rows = r.get("remote") or {}
    if not rows or type(rows).__name__ == "Skipped":
        return []
    copies = [(k, o, [fmt_num(o.get("mbps")), fmt_num(o.get("secs"), 2)])
              for k, o in rows.items() if k != "random get over HTTP"]
    out = [table("Remote copy over loopback HTTP: the text archive (ssd profile)",
                 ["tool", "MB/s", "seconds", "method"], copies)]
    if "random get over HTTP" in rows:
        o = rows["random get over HTTP"]
        out.append(table(f"Random reads over loopback HTTP from Python, batches of {BATCH}",
                         ["reader", "archive[i] samples/s", "get_many samples/s", "method"],
                         [("shardpack", o, [fmt_num(o.get("sps")),
                                            fmt_num(o.get("many_sps"))])]))
    return out


COMMANDS = {"serve": serve, "get": get}

if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    COMMANDS[sys.argv[1]](*sys.argv[2:])
