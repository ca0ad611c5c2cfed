"""shardpack.spark on a local Spark (``local[2,3]``: two cores, a failed task retried up to
twice): a task that fails after writing a shard and is retried, and a duplicated attempt,
give every row exactly once; the same input gives the same archive."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shardpack

pyspark = pytest.importorskip("pyspark")

from pyspark import cloudpickle  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql.datasource import WriterCommitMessage  # noqa: E402

import shardpack.spark  # noqa: E402
from shardpack.cluster import StagedWrite, write_task  # noqa: E402

# The test's own data source classes travel to the Python workers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]

ROWS = 200
PARTITIONS = 4


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2,3]")
        .appName("shardpack-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    session.dataSource.register(FailingSource)
    yield session
    session.stop()


def frame(spark: SparkSession) -> DataFrame:
    rows = [
        (f"row/{i:05d}", bytes([i % 256]) * (i % 50 + 1), f"text {i}", i % 7) for i in range(ROWS)
    ]
    return (
        spark.createDataFrame(rows, "id string, jpg binary, txt string, cls int")
        .repartition(PARTITIONS, "id")
        .sortWithinPartitions("id")
    )


def contents(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    return [(s.key, {k: bytes(v) for k, v in s.items()}) for s in shardpack.open(path)]


def check_every_row_once(path: Path) -> None:
    samples = contents(path)
    assert sorted(key for key, _ in samples) == [f"row/{i:05d}" for i in range(ROWS)]
    by_key = dict(samples)
    assert by_key["row/00042"] == {"jpg": bytes([42]) * 43, "txt": b"text 42", "cls": b"0"}
    report = shardpack.verify(path)
    assert report.valid and report.leftovers == [], report
    assert not os.path.exists(path / "_staging")


class FailsOnce(shardpack.spark.PartitionWriter):
    """Partition 1's first attempt fails after 10 rows (a shard of them finished);
    partition 2's task runs twice, as a speculative copy would, and both results reach the
    commit, the copy's first."""

    def _samples(self, data: Iterator[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        task, attempt = self._attempt()
        for n, sample in enumerate(super()._samples(data)):
            if task == 1 and attempt == 0 and n == 10:
                raise RuntimeError("injected failure of partition 1, attempt 0")
            yield sample

    def write_partition(self, data: Iterator[Any]) -> shardpack.cluster.TaskResult:
        task, attempt = self._attempt()
        if task != 2:
            return super().write_partition(data)
        rows = list(self._samples(data))
        options = self.writer_options
        copy = write_task(self.path, self.write_id, task, rows, attempt=attempt + 1, **options)
        with open(self._copy_file(), "w") as f:
            json.dump(copy.__dict__, f)
        return write_task(self.path, self.write_id, task, rows, attempt=attempt, **options)

    def _copy_file(self) -> str:
        return os.path.join(self.path, "_staging", self.write_id, "copy.json")

    def _copy(self) -> shardpack.cluster.TaskResult:
        with open(self._copy_file()) as f:
            return shardpack.cluster.TaskResult(**json.load(f))


class FailingTask(FailsOnce):
    """The tasks of ``shardpack.spark.write``: the copy's result is one more row."""

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        yield from super().__call__(batches)
        if self._attempt()[0] == 2:
            import pyarrow

            yield pyarrow.RecordBatch.from_pydict({"result": [json.dumps(self._copy().__dict__)]})


class FailingWriter(FailsOnce, shardpack.spark.ShardpackWriter):
    """The data source's tasks: the copy's message is one more message."""

    def _results(
        self, messages: list[WriterCommitMessage | None]
    ) -> list[shardpack.cluster.TaskResult | None]:
        return [self._copy(), *super()._results(messages)]


class FailingSource(shardpack.spark.ShardpackDataSource):
    @classmethod
    def name(cls) -> str:
        return "shardpack_failing"

    def writer(self, schema: Any, overwrite: bool) -> FailingWriter:
        inner = super().writer(schema, overwrite)
        return FailingWriter(
            inner.path, inner.write_id, inner.key, inner.fields, inner.writer_options
        )


@pytest.fixture(scope="session")
def clean(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive of a run without failures."""
    path = tmp_path_factory.mktemp("spark") / "clean"
    manifest = shardpack.spark.write(frame(spark), path, key="id", shard_size=4096)
    assert manifest["totals"]["samples"] == ROWS
    return path


def test_write_gives_every_row_once_and_the_same_archive_twice(
    spark: SparkSession, clean: Path, tmp_path: Path
) -> None:
    check_every_row_once(clean)
    again = tmp_path / "again"
    shardpack.spark.write(frame(spark), again, key="id", shard_size=4096)
    assert contents(again) == contents(clean)
    assert shardpack.open(again).root == shardpack.open(clean).root


def test_a_retried_and_a_duplicated_task_give_every_row_once(
    spark: SparkSession, clean: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out"
    monkeypatch.setattr(shardpack.spark, "PartitionWriter", FailingTask)
    shardpack.spark.write(frame(spark), target, key="id", shard_size=1024)
    check_every_row_once(target)
    # Exactly the rows of a clean run, in the same order.
    assert contents(target) == contents(clean)


def test_the_data_source_gives_every_row_once_through_a_retry_and_a_duplicate(
    spark: SparkSession, clean: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    with StagedWrite.begin(target) as staged:
        frame(spark).write.format("shardpack_failing").mode("append").options(
            **shardpack.spark.options(key="id", write_id=staged.write_id, shard_size=1024)
        ).save(str(target))
    check_every_row_once(target)
    assert contents(target) == contents(clean)


def test_a_second_write_appends_a_generation_and_fields_rename(
    spark: SparkSession, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    df = frame(spark)
    shardpack.spark.write(df.filter("cls < 3"), target, key="id", fields={"jpg": "jpg"})
    shardpack.spark.write(df.filter("cls >= 3"), target, key="id", fields={"jpg": "jpg"})
    archive = shardpack.open(target)
    assert archive.generation == 2 and len(archive) == ROWS
    assert set(archive[0].keys()) == {"jpg"}
    assert shardpack.verify(target).valid


def test_a_failed_job_leaves_the_target_as_it_was(spark: SparkSession, tmp_path: Path) -> None:
    target = tmp_path / "out"
    shardpack.spark.write(frame(spark).limit(10), target, key="id")
    before = shardpack.open(target).root
    # Every row's key is null: each attempt of each task fails, and Spark aborts.
    bad = frame(spark).coalesce(1).selectExpr("cast(null as string) as id", "jpg")
    with pytest.raises(Exception, match="null"):
        shardpack.spark.write(bad, target, key="id")
    assert shardpack.open(target).root == before
    assert not os.path.exists(target / "_staging")
    assert shardpack.verify(target).valid
    with pytest.raises(Exception, match="no column"):
        shardpack.spark.write(frame(spark), tmp_path / "new", key="nope")
    assert not (tmp_path / "new").exists()
