"""shardpack.ray on a local Ray (two CPUs, no dashboard, on 127.0.0.1 only): a retried
failing write task and a duplicated one give every row exactly once; reading back gives
the rows."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import shardpack

pytest.importorskip("ray.data")

import ray
import ray.data
from ray import cloudpickle
from ray.data.datasource import WriteResult

import shardpack.ray
from shardpack.cluster import TaskResult, write_task

# The test's own sink travels to the workers by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]

ROWS = 120


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    # conftest.py keeps Ray on loopback: every server of this node on 127.0.0.1.
    from ray._private import ray_constants

    assert not ray_constants.ENABLE_RAY_CLUSTER, "ray was imported before conftest.py"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    assert ray.util.get_node_ip_address() == "127.0.0.1"  # type: ignore[no-untyped-call]
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def dataset() -> Any:
    items = [
        {"id": f"row/{i:05d}", "jpg": bytes([i % 256]) * (i % 30 + 1), "cls": i % 7}
        for i in range(ROWS)
    ]
    return ray.data.from_items(items, override_num_blocks=4)


def check_every_row_once(path: Path) -> None:
    archive = shardpack.open(path)
    assert sorted(archive.key(i) for i in range(len(archive))) == [
        f"row/{i:05d}" for i in range(ROWS)
    ]
    sample = archive.get("row/00042")
    assert bytes(sample["jpg"]) == bytes([42]) * 13 and bytes(sample["cls"]) == b"0"
    report = shardpack.verify(path)
    assert report.valid and report.leftovers == [], report
    assert not os.path.exists(path / "_staging")


class FlakySink(shardpack.ray.ShardpackDatasink):
    """Task 1 fails after 5 rows on its first attempt (a marker file remembers it); task 0
    runs twice, as a duplicated attempt would, and the commit gets both results."""

    def __init__(self, path: Path, marker: Path) -> None:
        super().__init__(path, key="id", shard_size=512)
        self.marker = str(marker)

    def _samples(self, blocks: Iterable[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for n, sample in enumerate(super()._samples(blocks)):
            if n == 5 and self._task == 1 and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                raise RuntimeError("injected failure of task 1's first attempt")
            yield sample

    def write(self, blocks: Iterable[Any], ctx: Any) -> TaskResult:
        self._task = ctx.task_idx
        if ctx.task_idx != 0:
            return super().write(blocks, ctx)
        rows = list(self._samples(blocks))
        copy = write_task(self.path, self.write_id, 0, rows, shard_size=512)
        with open(os.path.join(self.path, "_staging", self.write_id, "copy.json"), "w") as f:
            json.dump(copy.__dict__, f)
        return write_task(self.path, self.write_id, 0, rows, shard_size=512)

    def on_write_complete(self, write_result: WriteResult[TaskResult]) -> None:
        with open(os.path.join(self.path, "_staging", self.write_id, "copy.json")) as f:
            copy = TaskResult(**json.load(f))
        write_result.write_returns.append(copy)
        super().on_write_complete(write_result)


def test_write_and_read_back(local_ray: None, tmp_path: Path) -> None:
    target = tmp_path / "out"
    sink = shardpack.ray.ShardpackDatasink(target, key="id", fields=["jpg", "cls"], shard_size=512)
    dataset().write_datasink(sink)
    assert sink.manifest is not None and sink.manifest["totals"]["samples"] == ROWS
    check_every_row_once(target)
    rows = shardpack.ray.read_shardpack(target).take_all()
    archive = shardpack.open(target)
    assert len(rows) == ROWS and archive.shard_count > 1
    by_key = {row["__key__"]: row for row in rows}
    for sample in archive:
        assert by_key[sample.key] == {
            "__key__": sample.key,
            "jpg": bytes(sample["jpg"]),
            "cls": bytes(sample["cls"]),
        }
    tasks = shardpack.ray.ShardpackDatasource(target, shards_per_task=2).get_read_tasks(100)
    assert len(tasks) == -(-archive.shard_count // 2)
    assert sum(t.metadata.num_rows or 0 for t in tasks) == ROWS


def test_a_retried_and_a_duplicated_task_give_every_row_once(
    local_ray: None, tmp_path: Path
) -> None:
    target = tmp_path / "out"
    marker = tmp_path / "failed-once"
    sink = FlakySink(target, marker)
    dataset().write_datasink(sink, ray_remote_args={"max_retries": 2, "retry_exceptions": True})
    assert marker.exists()
    check_every_row_once(target)


def test_a_failed_write_leaves_the_target_as_it_was(local_ray: None, tmp_path: Path) -> None:
    target = tmp_path / "out"
    dataset().write_datasink(shardpack.ray.ShardpackDatasink(target, key="id"))
    before = shardpack.open(target).root
    with pytest.raises(Exception, match="no column"):
        dataset().write_datasink(shardpack.ray.ShardpackDatasink(target, key="nope"))
    assert shardpack.open(target).root == before
    assert not os.path.exists(target / "_staging")
    assert shardpack.verify(target).valid


def test_an_empty_dataset_gives_an_empty_archive(local_ray: None, tmp_path: Path) -> None:
    target = tmp_path / "out"
    dataset().filter(lambda row: False).write_datasink(
        shardpack.ray.ShardpackDatasink(target, key="id")
    )
    assert len(shardpack.open(target)) == 0
    assert shardpack.verify(target).valid


def test_a_sink_into_s3(local_ray: None) -> None:
    pytest.importorskip("moto.server")
    from object_store import names, s3_server

    with s3_server("ray") as env:
        url = "s3://ray/out"
        sink = shardpack.ray.ShardpackDatasink(url, key="id", shard_size=512)
        # The workers started before the server: its address reaches them with the tasks.
        dataset().write_datasink(sink, ray_remote_args={"runtime_env": {"env_vars": env}})
        archive = shardpack.open(url)
        assert sorted(archive.key(i) for i in range(len(archive))) == [
            f"row/{i:05d}" for i in range(ROWS)
        ]
        assert shardpack.verify(url).valid
        assert names(env, "ray", "out/_staging/") == []
        rows = shardpack.ray.read_shardpack(
            url, ray_remote_args={"runtime_env": {"env_vars": env}}
        ).take_all()
        assert sorted(row["__key__"] for row in rows) == [f"row/{i:05d}" for i in range(ROWS)]
