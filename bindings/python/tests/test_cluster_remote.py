"""The commit protocol of shardpack.cluster with an object-store target (a local S3
server): tasks push their staging archives to ``URL/_staging/``, the commit composes and
pushes the archive with the manifest last, and removes the staging objects."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import shardpack
from shardpack.cluster import StagedWrite, TaskResult, write_task

pytest.importorskip("moto.server")

from object_store import names, s3_server
from test_cluster import OPTIONS, PER_TASK, expected, failing, rows

BUCKET = "data"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with s3_server(BUCKET) as env:
        yield env


def contents(url: str) -> list[tuple[str, bytes, bytes]]:
    return [(s.key, bytes(s["bin"]), bytes(s["txt"])) for s in shardpack.open(url)]


def test_a_write_into_s3_commits_each_task_once(s3: dict[str, str], tmp_path: Path) -> None:
    url = f"s3://{BUCKET}/first"
    write = StagedWrite.begin(url)
    results: list[TaskResult | None] = []
    with pytest.raises(RuntimeError):
        write_task(url, write.write_id, 1, failing(1, 20), attempt=0, **OPTIONS)
    results.append(write_task(url, write.write_id, 1, rows(1), attempt=1, **OPTIONS))
    results.append(write_task(url, write.write_id, 0, rows(0), attempt=1, **OPTIONS))
    results.append(write_task(url, write.write_id, 0, rows(0), attempt=0, **OPTIONS))
    # Ray's attempts have no numbers: each takes one of its own.
    results.append(write_task(url, write.write_id, 2, rows(2), **OPTIONS))
    assert all(r is not None and r.path.startswith(write.staging) for r in results)
    staged = names(s3, BUCKET, "first/_staging/")
    assert not any("task-000001-attempt-0" in n for n in staged), staged
    manifest = write.commit(results, tasks=3, **OPTIONS)
    assert manifest["totals"]["samples"] == 3 * PER_TASK
    assert contents(url) == expected(range(3))
    assert names(s3, BUCKET, "first/_staging/") == []
    report = shardpack.verify(url)
    assert report.valid, report
    # The same write id committed again adds nothing and answers the same.
    assert StagedWrite(url, write.write_id).commit(results, tasks=3) == manifest
    assert shardpack.open(url).generation == 1
    # A second write adds a generation, pushing its own shards only.
    before = set(names(s3, BUCKET, "first/shard-"))
    write = StagedWrite.begin(url)
    results = [write_task(url, write.write_id, 3, rows(3), **OPTIONS)]
    write.commit(results)
    archive = shardpack.open(url)
    assert archive.generation == 2
    assert contents(url) == expected(range(4))
    assert before < set(names(s3, BUCKET, "first/shard-"))
    assert shardpack.verify(url).valid
    # Fetched back, the archive is the same.
    local = tmp_path / "copy"
    assert shardpack.fetch(url, local)["root"] == archive.root
    assert shardpack.open(local).root == archive.root


def test_an_aborted_write_into_s3_leaves_nothing(s3: dict[str, str]) -> None:
    url = f"s3://{BUCKET}/aborted"
    write = StagedWrite.begin(url)
    write_task(url, write.write_id, 0, rows(0), **OPTIONS)
    assert names(s3, BUCKET, "aborted/") != []
    write.abort()
    assert names(s3, BUCKET, "aborted/") == []
    with pytest.raises(shardpack.errors.IncompleteError, match="404"):
        shardpack.open(url)
    # A server that fails is an error with its status, never "no archive".
    with pytest.raises(shardpack.errors.RemoteError) as failed:
        shardpack.fetch(f"s3://no-such-bucket-{BUCKET}/x", "unused")
    assert failed.value.status == 404


def test_push_sends_only_the_shards_the_remote_lacks(s3: dict[str, str], tmp_path: Path) -> None:
    local = tmp_path / "archive"
    with shardpack.Writer(local, **OPTIONS) as writer:
        for key, fields in rows(0):
            writer.write(key, fields)
    assert writer.manifest is not None
    shards = writer.manifest["shards"]
    url = f"s3://{BUCKET}/pushed"
    assert shardpack.push(local, url) == sum(s["size"] for s in shards)
    assert shardpack.push(local, url) == 0
    with shardpack.Writer(local, append=True) as appending:
        for key, fields in rows(1):
            appending.write(key, fields)
    assert appending.manifest is not None
    new = appending.manifest["shards"][len(shards) :]
    assert shardpack.push(local, url) == sum(s["size"] for s in new) > 0
    assert contents(url) == expected(range(2))
    with pytest.raises(shardpack.errors.InvalidInputError, match="bucket"):
        shardpack.remove_remote(f"s3://{BUCKET}")
    count = len(names(s3, BUCKET, "pushed/"))
    assert shardpack.remove_remote(url) == count > len(new)
    assert names(s3, BUCKET, "pushed/") == []


SPARK_JOB = r"""
import json, os, sys
from pyspark.sql import SparkSession
import shardpack.spark

spark = (
    SparkSession.builder.master("local[2,3]")
    .config("spark.ui.enabled", "false")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .getOrCreate()
)
rows = [(f"row/{i:05d}", f"text {i}") for i in range(100)]
df = spark.createDataFrame(rows, "id string, txt string").repartition(3, "id")
manifest = shardpack.spark.write(df, sys.argv[1], key="id", shard_size=512)
spark.stop()
print(json.dumps(manifest["totals"]))
"""


def test_spark_writes_into_s3(s3: dict[str, str]) -> None:
    pytest.importorskip("pyspark")
    import subprocess
    import sys

    url = f"s3://{BUCKET}/spark"
    # A process of its own: the Python workers of a running local Spark do not see
    # variables set after it started.
    done = subprocess.run(
        [sys.executable, "-c", SPARK_JOB, url],
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "PYSPARK_PYTHON": sys.executable,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    archive = shardpack.open(url)
    assert sorted(archive.key(i) for i in range(len(archive))) == [
        f"row/{i:05d}" for i in range(100)
    ]
    assert shardpack.verify(url).valid
    assert names(s3, BUCKET, "spark/_staging/") == []
