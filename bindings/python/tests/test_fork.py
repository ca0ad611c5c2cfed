"""Fork safety: no thread at import, and the hashing pool rebuilt in a forked child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import shardpack

CHILD_VERIFIES_AFTER_PARENT = """
import os, sys, shardpack
assert shardpack.verify(sys.argv[1]).valid
pid = os.fork()
if pid == 0:
    os._exit(0 if shardpack.verify(sys.argv[1]).valid else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_verifies_after_its_parent_did(tmp_path: Path) -> None:
    path = tmp_path / "a"
    with shardpack.Writer(path, compression="none") as writer:
        for i in range(8):
            writer.write(f"{i}", {"bin": bytes([i]) * (1 << 20)})
    done = subprocess.run(
        [sys.executable, "-c", CHILD_VERIFIES_AFTER_PARENT, str(path)], timeout=120
    )
    assert done.returncode == 0


def test_importing_starts_no_thread() -> None:
    code = "import threading, shardpack, shardpack.torch; print(threading.active_count())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "1", out.stderr
