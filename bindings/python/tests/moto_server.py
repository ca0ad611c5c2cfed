"""moto's S3 server in a process of its own on loopback, for the remote tests, and the AWS_*
variables that point the library's S3 client at it.

Its log goes to a file, never to a pipe: werkzeug writes a line to stderr for every request,
and a pipe nobody reads fills after about 64 KiB (some 600 requests), after which every
request blocks in that write before its answer is sent, and a client waits for its timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ACCESS_KEY_ID = "AKIDSHARDPACKTEST"
SECRET_ACCESS_KEY = "shardpack-test-secret-do-not-print"
START_SECS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving_s3() -> Iterator[str]:
    """Starts the server, sets AWS_ENDPOINT_URL (and region and credentials) while the block
    runs, and yields the endpoint."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=log,
        )
        try:
            wait_for(server, port, log)
            endpoint = f"http://127.0.0.1:{port}"
            env = {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            }
            with environment(env):
                yield endpoint
        finally:
            server.kill()
            server.wait(timeout=30)


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Sets ``env`` in ``os.environ`` while the block runs, then puts back what was there."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wait_for(server: subprocess.Popen[bytes], port: int, log: Any) -> None:
    deadline = time.monotonic() + START_SECS
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                server.wait(timeout=30)
                log.seek(0)
                text = log.read().decode(errors="replace")
                raise RuntimeError(f"moto's server did not start: {text}") from None
            time.sleep(0.1)


def s3(endpoint: str) -> Any:
    """A boto3 client of the server (boto3 comes with moto): set-up and damage."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
