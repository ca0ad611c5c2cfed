"""A Spark standalone cluster on loopback for tests that need more than ``local[N]``: a
master on 127.0.0.1 and one worker per further loopback address (127.0.0.2, ...).

Spark's local mode never speculates (``TaskSchedulerImpl.start`` starts the speculation
thread only when not local), and it launches a speculative copy only on a host where the
task has no attempt yet (``TaskSetManager``'s ``hasAttemptOnHost``), so a speculation test
needs executors on two hosts: workers bound to two loopback addresses are two hosts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def standalone(folder: Path, workers: int = 2) -> Iterator[str]:
    """Runs the cluster's JVMs while the block runs; yields the master's URL."""
    import pyspark

    home = os.path.dirname(pyspark.__file__)
    env = dict(
        os.environ,
        SPARK_HOME=home,
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOG_DIR=str(folder / "log"),
        SPARK_LOCAL_IP="127.0.0.1",
    )
    folder.mkdir(parents=True, exist_ok=True)
    spark_class = os.path.join(home, "bin", "spark-class")
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str, host: str) -> Path:
        log = folder / f"{name}.log"
        with open(log, "wb") as out:
            processes.append(
                subprocess.Popen(
                    [spark_class, *args, "--host", host, "--port", "0", "--webui-port", "0"],
                    env={**env, "SPARK_LOCAL_IP": host},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        return log

    def wait_for(log: Path, pattern: str) -> str:
        for _ in range(240):
            found = re.search(pattern, log.read_text(errors="replace"))
            if found:
                return found.group(1)
            if any(p.poll() is not None for p in processes):
                break
            time.sleep(0.25)
        raise RuntimeError(f"{log}: no {pattern!r}:\n{log.read_text(errors='replace')}")

    try:
        master = start("master", "org.apache.spark.deploy.master.Master", host="127.0.0.1")
        url = wait_for(master, r"Starting Spark master at (spark://\S+)")
        for n in range(workers):
            work = folder / f"work-{n}"
            log = start(
                f"worker-{n}",
                "org.apache.spark.deploy.worker.Worker",
                *("--cores", "1", "--memory", "1g", "--work-dir", str(work), url),
                host=f"127.0.0.{n + 2}",
            )
            wait_for(log, r"(Successfully registered with master)")
        yield url
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
