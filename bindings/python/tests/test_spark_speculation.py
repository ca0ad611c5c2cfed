"""shardpack.spark under real speculation: a standalone Spark cluster of two workers on
loopback (see spark_standalone.py for why not ``local[N]``), a partition whose first
attempt is slow, and Spark launching a speculative copy that wins. The archive holds every
row once, in the order of a clean run, and verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shardpack

pytest.importorskip("pyspark")

from spark_standalone import standalone

ROWS = 200
SLOW_PARTITION = 1

# The job runs in a process of its own: a Python process has one SparkContext, and the
# other Spark tests hold a local one.
JOB = r"""
import json, os, sys, time
from pyspark import TaskContext
from pyspark.sql import SparkSession
import shardpack.spark

master, target, markers = sys.argv[1:4]
slow, way = int(sys.argv[4]), sys.argv[5]


class SlowFirstAttempt(shardpack.spark.PartitionWriter):
    def _samples(self, data):
        task, attempt = self._attempt()
        open(os.path.join(markers, f"task-{task}-attempt-{attempt}"), "w").close()
        if task == slow and attempt == 0:
            time.sleep(60)
        yield from super()._samples(data)


class SlowWriter(SlowFirstAttempt, shardpack.spark.ShardpackWriter):
    pass


class SlowSource(shardpack.spark.ShardpackDataSource):
    def writer(self, schema, overwrite):
        inner = super().writer(schema, overwrite)
        return SlowWriter(inner.path, inner.write_id, inner.key, inner.fields, inner.writer_options)


shardpack.spark.PartitionWriter = SlowFirstAttempt
spark = (
    SparkSession.builder.master(master)
    .config("spark.ui.enabled", "false")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.executor.memory", "512m")
    .config("spark.cores.max", "2")
    .config("spark.pyspark.python", sys.executable)
    .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    .config("spark.speculation", "true")
    .config("spark.speculation.interval", "100ms")
    .config("spark.speculation.multiplier", "1.5")
    .config("spark.speculation.quantile", "0.5")
    .config("spark.speculation.minTaskRuntime", "200ms")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
rows = [(f"row/{i:05d}", bytes([i % 256]) * (i % 50 + 1), f"text {i}") for i in range(200)]
df = (
    spark.createDataFrame(rows, "id string, jpg binary, txt string")
    .repartition(4, "id")
    .sortWithinPartitions("id")
)
if way == "write":
    manifest = shardpack.spark.write(df, target, key="id", shard_size=1024)
else:
    spark.dataSource.register(SlowSource)
    with shardpack.cluster.StagedWrite.begin(target) as staged:
        df.write.format("shardpack").mode("append").options(
            **shardpack.spark.options(key="id", write_id=staged.write_id, shard_size=1024)
        ).save(target)
    manifest = json.loads(shardpack.open(target).manifest_json())
spark.stop()
print(json.dumps({"samples": manifest["totals"]["samples"]}))
"""


def run_job(master: str, target: Path, markers: Path, slow: int, way: str) -> dict[str, int]:
    """Runs the job, through ``shardpack.spark.write`` (``way="write"``) or the data
    source (``way="source"``)."""
    markers.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", JOB, master, str(target), str(markers), str(slow), way],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_speculative_copy_that_wins_gives_every_row_once(tmp_path: Path) -> None:
    with standalone(tmp_path / "cluster") as master:
        clean = tmp_path / "clean"
        run_job(master, clean, tmp_path / "clean-markers", slow=-1, way="write")
        for way in ("write", "source"):
            target = tmp_path / way
            markers = tmp_path / f"{way}-markers"
            result = run_job(master, target, markers, slow=SLOW_PARTITION, way=way)
            check_speculated(target, markers, clean, result)


def check_speculated(target: Path, markers: Path, clean: Path, result: dict[str, int]) -> None:
    # Spark ran a second attempt of the slow partition only, while its first still slept.
    attempts = sorted(p.name for p in markers.iterdir())
    assert f"task-{SLOW_PARTITION}-attempt-1" in attempts, attempts
    assert [a for a in attempts if a.endswith("attempt-1")] == [f"task-{SLOW_PARTITION}-attempt-1"]
    assert result["samples"] == ROWS
    archive = shardpack.open(target)
    assert sorted(archive.key(i) for i in range(len(archive))) == [
        f"row/{i:05d}" for i in range(ROWS)
    ]
    # The same rows in the same order as a run without speculation.
    assert [(s.key, bytes(s["jpg"])) for s in archive] == [
        (s.key, bytes(s["jpg"])) for s in shardpack.open(clean)
    ]
    report = shardpack.verify(target)
    assert report.valid and report.leftovers == [], report
    assert not (target / "_staging").exists()
