"""Exactly-once writes of one archive by many tasks: the commit protocol that
:mod:`shardpack.spark` and :mod:`shardpack.ray` share, usable with any other engine.

A write has an id (a UUID). Each task *attempt* writes its samples through a
:class:`shardpack.Writer` into an archive of its own,
``TARGET/_staging/<write>/task-<task:06d>-attempt-<attempt>/``, and returns a
:class:`TaskResult`. The driver's :meth:`StagedWrite.commit` keeps one successful attempt
per task (the lowest attempt number), in task order, checks each chosen archive against the
root digest its task reported, and composes the final archive in one step: it creates
``TARGET`` if it holds no archive yet, and otherwise appends one generation to it. Until the
manifest's rename, the last step, ``TARGET`` stays as it was. :meth:`StagedWrite.abort`
removes the write's staging folder.

While a write runs, the driver holds an advisory lock (``flock``) on
``TARGET/_staging/<write>/``; every entry of ``_staging/`` nobody holds locked is a leftover
(format-spec.md §11.4) that :func:`shardpack.verify` lists and :func:`shardpack.gc` removes:
the attempts of a crashed driver, of a losing speculative attempt, of a failed task.

A new archive is composed by the library's :func:`shardpack.merge`, which copies every
block as it is (only each shard's identity and its CRCs are rewritten). A generation added
to an existing archive copies the samples through a :class:`shardpack.Writer` (``append``),
since a merge only creates archives: the new generation has the archive's layout and
compression, and costs one decode and encode of the write's samples.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import FieldValue, PathLike, Writer, errors, merge
from . import open as _open

STAGING = "_staging"
"""The folder of ``TARGET`` where writes stage their tasks' archives (format-spec.md §11.4)."""


@dataclass(frozen=True)
class TaskResult:
    """What one successful task attempt reports to the driver: its commit message."""

    write_id: str
    task: int
    attempt: int
    path: str
    samples: int
    root: str


def staging_folder(target: PathLike, write_id: str) -> str:
    """``TARGET/_staging/<write_id>``: the folder of one write's task archives."""
    _check_write_id(write_id)
    return os.path.join(os.fspath(target), STAGING, write_id)


def attempt_folder(target: PathLike, write_id: str, task: int, attempt: int) -> str:
    """The staging archive of one task attempt."""
    if task < 0 or attempt < 0:
        raise errors.InvalidInputError(f"task {task} and attempt {attempt} must be >= 0")
    return os.path.join(staging_folder(target, write_id), f"task-{task:06d}-attempt-{attempt}")


def _check_write_id(write_id: str) -> None:
    # The id names a folder: a UUID or anything as tame, never a path.
    if not write_id or not all(c.isalnum() or c in "-_" for c in write_id):
        raise errors.InvalidInputError(f"write id {write_id!r}: letters, digits, '-', '_' only")


def write_task(
    target: PathLike,
    write_id: str,
    task: int,
    samples: Iterable[tuple[str, Mapping[str, FieldValue]]],
    *,
    attempt: int | None = None,
    **writer_options: Any,
) -> TaskResult:
    """Writes one task attempt's ``(key, fields)`` samples into its staging archive.

    ``attempt`` is the engine's attempt number (Spark's ``TaskContext.attemptNumber()``);
    without one (Ray does not expose it), the attempt takes the lowest number whose folder
    does not exist yet. A folder is claimed by creating it, so two attempts never share one.
    On an exception the attempt's folder is removed and the exception propagates.
    """
    staging = staging_folder(target, write_id)
    if not os.path.isdir(staging):
        raise errors.InvalidInputError(
            f"{staging}: no such write; it was committed or aborted, or never begun"
        )
    number = 0 if attempt is None else attempt
    while True:
        path = attempt_folder(target, write_id, task, number)
        try:
            os.mkdir(path)
            break
        except FileExistsError:
            if attempt is not None:
                raise errors.InvalidInputError(
                    f"{path} exists: attempt {attempt} of task {task} ran twice"
                ) from None
            number += 1
    try:
        with Writer(path, **writer_options) as writer:
            for key, fields in samples:
                writer.write(key, fields)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    assert writer.manifest is not None
    manifest = writer.manifest
    return TaskResult(
        write_id, task, number, path, int(manifest["totals"]["samples"]), str(manifest["root"])
    )


def choose(results: Iterable[TaskResult | None]) -> list[TaskResult]:
    """The attempts a commit uses: for each task the successful attempt with the lowest
    number, in task order. ``None`` (Spark's message of a failed task) is skipped."""
    chosen: dict[int, TaskResult] = {}
    for result in results:
        if result is None:
            continue
        kept = chosen.get(result.task)
        if kept is None or result.attempt < kept.attempt:
            chosen[result.task] = result
    return [chosen[task] for task in sorted(chosen)]


class StagedWrite:
    """The driver's side of one write: :meth:`begin` it, hand :attr:`write_id` to the
    tasks (they call :func:`write_task`), then :meth:`commit` their results or
    :meth:`abort`. Use it as a context manager: leaving the block releases the lock, and
    an exception aborts the write if it was not committed."""

    def __init__(self, target: PathLike, write_id: str) -> None:
        self.target = os.fspath(target)
        self.write_id = write_id
        self.staging = staging_folder(self.target, write_id)
        self._lock: int | None = None
        self.committed = False
        # Whether this write's begin created TARGET: an abort then removes it again.
        self.created_target = False

    @classmethod
    def begin(
        cls, target: PathLike, write_id: str | None = None, *, lock: bool = True
    ) -> StagedWrite:
        """Creates ``TARGET/_staging/<write_id>/`` (a new UUID when not given) and, with
        ``lock``, holds its lock until :meth:`close`, so that ``gc`` leaves it alone. An
        engine whose commit runs in another process than its start passes ``lock=False``
        there and holds the lock in the process that waits for the job."""
        write = cls(target, write_id or uuid.uuid4().hex)
        write.created_target = not os.path.exists(write.target)
        for _ in range(2):
            # A gc may remove an empty `_staging` between the two folders' creation.
            with contextlib.suppress(FileNotFoundError):
                os.makedirs(os.path.join(write.target, STAGING), exist_ok=True)
                os.mkdir(write.staging)
                break
        else:
            raise errors.ArchiveIOError(f"{write.staging}: could not be created")
        if lock:
            write.hold()
        return write

    def hold(self) -> None:
        """Takes the staging folder's lock (``flock``, as the library's archive lock)."""
        if self._lock is not None:
            return
        fd = os.open(self.staging, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise errors.ArchiveIOError(
                f"{self.staging}: another process holds this write's lock"
            ) from None
        self._lock = fd

    def close(self) -> None:
        """Releases the lock; the staging folder, if still there, becomes a leftover."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> StagedWrite:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None and not self.committed:
            self.abort()
        self.close()

    def commit(
        self,
        results: Iterable[TaskResult | None],
        *,
        tasks: int | None = None,
        **writer_options: Any,
    ) -> dict[str, Any]:
        """Composes the chosen attempts (see :func:`choose`) into ``TARGET`` and removes
        the staging folder; returns the new manifest. With ``tasks``, every task
        ``0..tasks-1`` must have a result. ``writer_options`` apply when the archive is
        created; an append keeps the archive's layout.

        A failure leaves ``TARGET`` as it was (the previous generation current, or no
        archive) and the staging folder in place for a retry or :meth:`abort`.
        """
        if not os.path.isdir(self.staging):
            raise errors.InvalidInputError(
                f"{self.staging}: no such write; it was committed or aborted already"
            )
        chosen = choose(results)
        if tasks is not None:
            missing = sorted(set(range(tasks)) - {r.task for r in chosen})
            if missing:
                raise errors.InvalidInputError(f"no successful attempt for tasks {missing}")
        staging = os.path.realpath(self.staging)
        archives = []
        for result in chosen:
            if result.write_id != self.write_id:
                raise errors.InvalidInputError(
                    f"task {result.task}: result of write {result.write_id}, not {self.write_id}"
                )
            if os.path.dirname(os.path.realpath(result.path)) != staging:
                raise errors.InvalidInputError(f"{result.path}: not in {self.staging}")
            archive = _open(result.path, expect_root=result.root)
            if len(archive) != result.samples:
                raise errors.InvalidInputError(
                    f"{result.path}: {len(archive)} samples, its task reported {result.samples}"
                )
            archives.append(archive)
        manifest = self._compose(chosen, archives, writer_options)
        self.committed = True
        self._remove_staging()
        return manifest

    def _compose(
        self, chosen: list[TaskResult], archives: list[Any], writer_options: dict[str, Any]
    ) -> dict[str, Any]:
        if not os.path.exists(os.path.join(self.target, "manifest.json")):
            if chosen:
                # A new archive: the library's merge copies every block as it is, checking
                # each shard against its manifest's BLAKE3 as it goes.
                report = merge([r.path for r in chosen], self.target)
                manifest: dict[str, Any] = report["manifest"]
                return manifest
            writer = Writer(self.target, **writer_options)
        else:
            # A generation of an existing archive: a merge only creates archives, so the
            # samples are copied through the archive's appending writer.
            writer = Writer(self.target, append=True)
        with writer:
            for archive in archives:
                for sample in archive.scan():
                    writer.write(sample.key, dict(sample.items()))
        assert writer.manifest is not None
        return writer.manifest

    def abort(self) -> None:
        """Removes the write's staging folder; ``TARGET`` is left as it was (and removed
        again if this write's :meth:`begin` created it and it is empty)."""
        self._remove_staging()
        if self.created_target:
            with contextlib.suppress(OSError):
                os.rmdir(self.target)

    def _remove_staging(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        # An empty `_staging` goes too; one holding another write's folder stays.
        with contextlib.suppress(OSError):
            os.rmdir(os.path.join(self.target, STAGING))


__all__ = [
    "STAGING",
    "StagedWrite",
    "TaskResult",
    "attempt_folder",
    "choose",
    "staging_folder",
    "write_task",
]
