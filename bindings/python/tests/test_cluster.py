"""The engine-neutral commit protocol (shardpack.cluster): retried, duplicated and failed
task attempts give every sample exactly once, in task order; failures change nothing."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import shardpack
import shardpack.cluster
from shardpack.cluster import STAGING, StagedWrite, TaskResult, choose, write_task

TASKS = 4
PER_TASK = 30


Row = tuple[str, dict[str, bytes | str]]


def rows(task: int, count: int = PER_TASK) -> Iterator[Row]:
    for i in range(count):
        yield f"t{task}/{i:04d}", {"bin": bytes([task, i]) * (i + 1), "txt": f"{task}:{i}"}


def failing(task: int, after: int) -> Iterator[Row]:
    for n, row in enumerate(rows(task)):
        if n == after:
            raise RuntimeError("task failed")
        yield row


def contents(path: Path) -> list[tuple[str, bytes, bytes]]:
    archive = shardpack.open(path)
    return [(s.key, bytes(s["bin"]), bytes(s["txt"])) for s in archive]


def expected(tasks: range = range(TASKS)) -> list[tuple[str, bytes, bytes]]:
    return [
        (f"t{t}/{i:04d}", bytes([t, i]) * (i + 1), f"{t}:{i}".encode())
        for t in tasks
        for i in range(PER_TASK)
    ]


OPTIONS: dict[str, Any] = {"shard_size": 1024, "compression": "none"}


def test_retries_and_duplicates_commit_each_task_once_in_task_order(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with StagedWrite.begin(target) as write:
        results: list[TaskResult | None] = []
        # Tasks finish out of order; task 2 fails after writing a shard, then is retried;
        # task 1 runs twice (speculation), its later attempt finishing first.
        for task in (3, 2, 1, 0):
            if task == 2:
                with pytest.raises(RuntimeError):
                    write_task(target, write.write_id, 2, failing(2, 20), attempt=0, **OPTIONS)
                assert not os.path.exists(os.path.join(write.staging, "task-000002-attempt-0"))
                results.append(None)
                results.append(write_task(target, write.write_id, 2, rows(2), attempt=1, **OPTIONS))
            elif task == 1:
                results.append(write_task(target, write.write_id, 1, rows(1), attempt=1, **OPTIONS))
                results.append(write_task(target, write.write_id, 1, rows(1), attempt=0, **OPTIONS))
            else:
                results.append(write_task(target, write.write_id, task, rows(task), **OPTIONS))
        assert [(r.task, r.attempt) for r in choose(results)] == [(0, 0), (1, 0), (2, 1), (3, 0)]
        staged_shards = sum(shardpack.open(r.path).shard_count for r in choose(results))
        manifest = write.commit(results, tasks=TASKS, **OPTIONS)
    # A new archive is a merge: the staged shards themselves, not a re-packing.
    assert shardpack.open(target).shard_count == staged_shards > TASKS
    assert manifest["totals"]["samples"] == TASKS * PER_TASK
    assert contents(target) == expected()
    report = shardpack.verify(target)
    assert report.valid and report.leftovers == [], report
    assert not os.path.exists(target / STAGING)
    # The same input gives the same archive.
    again = tmp_path / "again"
    with StagedWrite.begin(again) as write:
        results = [write_task(again, write.write_id, t, rows(t), **OPTIONS) for t in range(TASKS)]
        write.commit(results, **OPTIONS)
    assert contents(again) == contents(target)
    assert shardpack.open(again).root == shardpack.open(target).root


def test_a_second_write_appends_a_generation(tmp_path: Path) -> None:
    target = tmp_path / "out"
    for generation, tasks in ((1, range(2)), (2, range(2, 4))):
        with StagedWrite.begin(target) as write:
            results = [write_task(target, write.write_id, t, rows(t), **OPTIONS) for t in tasks]
            write.commit(results)
        assert shardpack.open(target).generation == generation
    assert contents(target) == expected()
    assert shardpack.open(target).generation == 2
    assert shardpack.verify(target).valid


def test_a_failed_commit_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with StagedWrite.begin(target) as write:
        write.commit([write_task(target, write.write_id, 0, rows(0), **OPTIONS)])
    before = shardpack.open(target).root
    write = StagedWrite.begin(target)
    good = write_task(target, write.write_id, 1, rows(1), **OPTIONS)
    # A result whose archive changed after its task reported it is refused.
    bad = write_task(target, write.write_id, 2, rows(2), **OPTIONS)
    forged = TaskResult(bad.write_id, bad.task, bad.attempt, bad.path, bad.samples, good.root)
    with pytest.raises(shardpack.ShardpackError):
        write.commit([good, forged])
    # A key a committed task already wrote is refused by the writer: nothing half-added.
    with pytest.raises(shardpack.ShardpackError):
        write.commit([good, write_task(target, write.write_id, 3, rows(0), **OPTIONS)])
    with pytest.raises(shardpack.errors.InvalidInputError, match="tasks \\[0\\]"):
        write.commit([good], tasks=2)
    outside = TaskResult(good.write_id, 5, 0, str(tmp_path), 0, good.root)
    with pytest.raises(shardpack.errors.InvalidInputError, match="not in"):
        write.commit([outside])
    assert shardpack.open(target).root == before
    assert shardpack.open(target).generation == 1
    write.abort()
    write.close()
    assert not os.path.exists(target / STAGING)
    assert shardpack.verify(target).valid
    with pytest.raises(shardpack.errors.InvalidInputError, match="no such write"):
        write.commit([good])


def test_abort_of_a_first_write_leaves_no_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), StagedWrite.begin(target) as write:
        write_task(target, write.write_id, 0, rows(0), **OPTIONS)
        raise RuntimeError("driver failed")
    assert not target.exists()


def test_gc_removes_staging_no_running_write_holds(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with StagedWrite.begin(target) as write:
        write.commit([write_task(target, write.write_id, 0, rows(0), **OPTIONS)])
    # A driver that died: its write's folder, with a finished and a half-written attempt.
    dead = StagedWrite.begin(target)
    write_task(target, dead.write_id, 0, rows(1), **OPTIONS)
    with pytest.raises(RuntimeError):
        write_task(target, dead.write_id, 1, failing(1, 5), **OPTIONS)
    dead.close()
    live = StagedWrite.begin(target)
    write_task(target, live.write_id, 0, rows(2), **OPTIONS)
    report = shardpack.verify(target)
    assert report.valid
    assert report.leftovers == [dead.staging]
    gc = shardpack.gc(target, delete=True)
    assert [x["kind"] for x in gc["leftovers"]] == ["staging"]
    assert not os.path.exists(dead.staging) and os.path.isdir(live.staging)
    # The lock is the library's: a folder locked by anyone is left alone.
    fd = os.open(live.staging, os.O_RDONLY)
    live.close()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert shardpack.gc(target)["leftovers"] == []
    os.close(fd)
    assert len(shardpack.gc(target)["leftovers"]) == 1
    assert shardpack.verify(target).valid


def test_attempts_without_numbers_claim_their_own_folders(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with StagedWrite.begin(target) as write:
        first = write_task(target, write.write_id, 0, rows(0), **OPTIONS)
        second = write_task(target, write.write_id, 0, rows(0), **OPTIONS)
        assert (first.attempt, second.attempt) == (0, 1)
        with pytest.raises(shardpack.errors.InvalidInputError, match="ran twice"):
            write_task(target, write.write_id, 0, rows(0), attempt=1, **OPTIONS)
        write.commit([second, first])
    assert contents(target) == expected(range(1))


def test_write_ids_are_folder_names(tmp_path: Path) -> None:
    with pytest.raises(shardpack.errors.InvalidInputError):
        StagedWrite.begin(tmp_path, "../x")


def crashing(target: Path, write_id: str, results: list[TaskResult], where: str) -> None:
    """Runs the commit in a forked driver that dies at ``where``, as a killed one would."""

    def run() -> None:
        if where == "before-atomic-step":
            # The append dies with part of the generation's shards written.
            class Dying(shardpack.Writer):
                written = 0

                def write(self, key: str, fields: Any) -> int:
                    Dying.written += 1
                    if Dying.written == PER_TASK + 5:
                        os._exit(3)
                    return super().write(key, fields)

            setattr(shardpack.cluster, "Writer", Dying)  # noqa: B010
        else:
            # The manifest renamed, the staging folder not yet removed.
            StagedWrite._remove_staging = lambda self: os._exit(3)  # type: ignore[method-assign]
        StagedWrite(target, write_id).commit(results)
        os._exit(0)

    child = multiprocessing.get_context("fork").Process(target=run)
    child.start()
    child.join()
    assert child.exitcode == 3


def staged(target: Path, tasks: range) -> tuple[StagedWrite, list[TaskResult]]:
    write = StagedWrite.begin(target, lock=False)
    results = [write_task(target, write.write_id, t, rows(t), **OPTIONS) for t in tasks]
    return write, results


@pytest.mark.parametrize("existing", [False, True], ids=["new", "generation"])
def test_a_commit_run_again_after_its_atomic_step_adds_nothing(
    tmp_path: Path, existing: bool
) -> None:
    target = tmp_path / "out"
    if existing:
        write, results = staged(target, range(1))
        write.commit(results)
    write, results = staged(target, range(1, 3))
    crashing(target, write.write_id, results, "after-atomic-step")
    archive = shardpack.open(target)
    assert archive.generation == 1 + existing
    current = json.loads(archive.manifest_json())
    # The driver, started again, retries the commit: it is found done, not made twice.
    retried = StagedWrite(target, write.write_id)
    assert retried.commit(results) == current
    assert not os.path.exists(target / STAGING)
    # Asked once more (the staging folder is gone now), the same answer.
    assert StagedWrite(target, write.write_id).commit(results) == current
    assert retried.commit(results) == current
    assert shardpack.open(target).generation == 1 + existing
    assert contents(target) == expected(range(3) if existing else range(1, 3))
    report = shardpack.verify(target)
    assert report.valid and report.leftovers == [], report


def test_an_empty_write_committed_twice_adds_one_generation(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write, results = staged(target, range(1))
    write.commit(results)
    write, _ = staged(target, range(0))
    crashing(target, write.write_id, [], "after-atomic-step")
    assert shardpack.open(target).generation == 2
    StagedWrite(target, write.write_id).commit([])
    assert shardpack.open(target).generation == 2


def test_a_commit_interrupted_before_its_atomic_step_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write, results = staged(target, range(1))
    write.commit(results)
    before = shardpack.open(target).root
    write, results = staged(target, range(1, 3))
    crashing(target, write.write_id, results, "before-atomic-step")
    assert shardpack.open(target).root == before
    assert contents(target) == expected(range(1))
    assert shardpack.verify(target).valid
    # The retry makes the one generation the write adds.
    StagedWrite(target, write.write_id).commit(results)
    assert shardpack.open(target).generation == 2
    assert contents(target) == expected(range(3))
    shardpack.gc(target, delete=True)
    report = shardpack.verify(target)
    assert report.valid and report.leftovers == [], report


def test_a_commit_finds_another_writes_samples_with_the_same_keys(tmp_path: Path) -> None:
    target = tmp_path / "out"
    write, results = staged(target, range(2))
    write.commit(results)
    # Another write of task 1's keys only: not this archive's generation, and refused.
    other, again = staged(target, range(1, 2))
    with pytest.raises(shardpack.errors.InvalidInputError, match="another write"):
        other.commit(again)
    assert shardpack.open(target).generation == 1
