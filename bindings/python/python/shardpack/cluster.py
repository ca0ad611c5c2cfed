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

A target may be an object store (``s3://bucket/prefix``, ``http(s)://``): each attempt is
then written in a local temporary folder and pushed to its staging URL, and the commit
fetches the chosen attempts, composes the archive locally and pushes it, shards first and
the manifest last; there is no lock, so one write at a time per remote target.

A commit run again for a write it made already (the driver died after the atomic step)
adds nothing: it finds the write's samples in the archive and returns that generation's
manifest.

A new archive is composed by the library's :func:`shardpack.merge`, which copies every
block as it is (only each shard's identity and its CRCs are rewritten). A generation added
to an existing archive copies the samples through a :class:`shardpack.Writer` (``append``),
since a merge only creates archives: the new generation has the archive's layout and
compression, and costs one decode and encode of the write's samples.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import FieldValue, PathLike, Writer, errors, fetch, is_remote, merge, push, remove_remote
from . import open as _open

STAGING = "_staging"
"""The folder of ``TARGET`` where writes stage their tasks' archives (format-spec.md §11.4)."""

COMMIT_RECORD = "commit.json"
"""The file in a write's staging folder where its commit notes, before its atomic step,
the generation that was current (its root and number)."""


@dataclass(frozen=True)
class TaskResult:
    """What one successful task attempt reports to the driver: its commit message."""

    write_id: str
    task: int
    attempt: int
    path: str
    samples: int
    root: str
    key: str | None = None
    """One key the attempt wrote (``None`` when it wrote no sample): keys are unique in an
    archive, so finding it there tells a retried commit that its write is in already."""


def staging_folder(target: PathLike, write_id: str) -> str:
    """``TARGET/_staging/<write_id>``: the folder of one write's task archives (a URL for
    a target in an object store)."""
    _check_write_id(write_id)
    target = os.fspath(target)
    if is_remote(target):
        return f"{target.rstrip('/')}/{STAGING}/{write_id}"
    return os.path.join(target, STAGING, write_id)


def attempt_folder(target: PathLike, write_id: str, task: int, attempt: int) -> str:
    """The staging archive of one task attempt."""
    if task < 0 or attempt < 0:
        raise errors.InvalidInputError(f"task {task} and attempt {attempt} must be >= 0")
    return f"{staging_folder(target, write_id)}/task-{task:06d}-attempt-{attempt}"


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
    if is_remote(os.fspath(target)):
        return _write_remote_task(target, write_id, task, samples, attempt, writer_options)
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
        writer = _write_samples(path, samples, writer_options)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    return _result(write_id, task, number, path, writer)


def _write_remote_task(
    target: PathLike,
    write_id: str,
    task: int,
    samples: Iterable[tuple[str, Mapping[str, FieldValue]]],
    attempt: int | None,
    writer_options: dict[str, Any],
) -> TaskResult:
    """A task attempt of a write into an object store: the archive is written in a local
    temporary folder and pushed to its staging URL, the manifest last. An object store has
    no atomic ``mkdir`` to claim the lowest free number with, so an attempt without one
    takes a random number; the commit keeps the lowest, any attempt being whole."""
    number = secrets.randbelow(1 << 31) if attempt is None else attempt
    url = attempt_folder(target, write_id, task, number)
    with tempfile.TemporaryDirectory(prefix="shardpack-task-") as work:
        local = os.path.join(work, "archive")
        writer = _write_samples(local, samples, writer_options)
        try:
            push(local, url)
        except BaseException:
            with contextlib.suppress(errors.ShardpackError):
                remove_remote(url)
            raise
    return _result(write_id, task, number, url, writer)


def _write_samples(
    path: str,
    samples: Iterable[tuple[str, Mapping[str, FieldValue]]],
    writer_options: dict[str, Any],
) -> Writer:
    with Writer(path, **writer_options) as writer:
        for key, fields in samples:
            writer.write(key, fields)
    return writer


def _result(write_id: str, task: int, number: int, path: str, writer: Writer) -> TaskResult:
    manifest = writer.manifest
    assert manifest is not None
    shards = manifest["shards"]
    return TaskResult(
        write_id,
        task,
        number,
        path,
        int(manifest["totals"]["samples"]),
        str(manifest["root"]),
        str(shards[0]["min_key"]) if shards else None,
    )


def _holds_archive(target: str) -> bool:
    """Whether ``target`` holds an archive (a manifest). For a URL, only a manifest that
    is not there (a 404, which the library reports as an incomplete archive) means none;
    any other failure is raised, never taken for "no archive"."""
    if not is_remote(target):
        return os.path.exists(os.path.join(target, "manifest.json"))
    try:
        _open(target)
    except errors.IncompleteError:
        return False
    return True


def _checked(chosen: list[TaskResult], paths: list[str]) -> list[Any]:
    """The chosen attempts' archives (at ``paths``), each with the root and the sample
    count its task reported."""
    archives = []
    for result, path in zip(chosen, paths, strict=True):
        archive = _open(path, expect_root=result.root)
        if len(archive) != result.samples:
            raise errors.InvalidInputError(
                f"{result.path}: {len(archive)} samples, its task reported {result.samples}"
            )
        archives.append(archive)
    return archives


def _manifest(target: str, generation: int) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(_open(target, generation=generation).manifest_json())
    return manifest


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
        # An object store: no folders to create, no lock to take (see `begin`).
        self.remote = is_remote(self.target)
        self.staging = staging_folder(self.target, write_id)
        self._lock: int | None = None
        self.committed = False
        # The manifest this object's commit returned: asked again, it returns it again.
        self.manifest: dict[str, Any] | None = None
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
        if write.remote:
            # Objects need no folder, and an object store has no lock: one write at a time
            # into one remote target (the last manifest pushed wins).
            return write
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
        if self._lock is not None or self.remote:
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
        archive) and the staging folder in place for a retry or :meth:`abort`. A retry of
        a commit that made its atomic step already (the driver died before it learnt so)
        adds nothing and returns the manifest of the generation that commit made.
        """
        if self.manifest is not None:
            return self.manifest
        chosen = choose(results)
        if tasks is not None:
            missing = sorted(set(range(tasks)) - {r.task for r in chosen})
            if missing:
                raise errors.InvalidInputError(f"no successful attempt for tasks {missing}")
        for result in chosen:
            if result.write_id != self.write_id:
                raise errors.InvalidInputError(
                    f"task {result.task}: result of write {result.write_id}, not {self.write_id}"
                )
        done = self._generation_of(chosen)
        if done is not None:
            return self._finish(done)
        if self.remote:
            return self._finish(self._commit_remote(chosen, writer_options))
        if not os.path.isdir(self.staging):
            raise errors.InvalidInputError(
                f"{self.staging}: no such write; it was aborted, or never begun"
            )
        staging = os.path.realpath(self.staging)
        for result in chosen:
            if os.path.dirname(os.path.realpath(result.path)) != staging:
                raise errors.InvalidInputError(f"{result.path}: not in {self.staging}")
        paths = [r.path for r in chosen]
        archives = _checked(chosen, paths)
        self._write_record()
        return self._finish(self._compose(self.target, paths, archives, writer_options))

    def _commit_remote(
        self, chosen: list[TaskResult], writer_options: dict[str, Any]
    ) -> dict[str, Any]:
        """The commit into an object store: the chosen attempts and the archive (if there
        is one) are fetched into a local folder, composed there as for a local target, and
        pushed back, the manifest last; only the shards the composition added are sent."""
        prefix = self.staging.rstrip("/") + "/"
        for result in chosen:
            if not result.path.startswith(prefix) or "/" in result.path[len(prefix) :]:
                raise errors.InvalidInputError(f"{result.path}: not in {self.staging}")
        with tempfile.TemporaryDirectory(prefix="shardpack-commit-") as work:
            paths = []
            for result in chosen:
                local = os.path.join(work, os.path.basename(result.path))
                fetch(result.path, local, expect_root=result.root)
                paths.append(local)
            archives = _checked(chosen, paths)
            composed = os.path.join(work, "archive")
            if _holds_archive(self.target):
                fetch(self.target, composed, expect_root=_open(self.target).root)
            manifest = self._compose(composed, paths, archives, writer_options)
            del archives
            push(composed, self.target)
        return manifest

    def _finish(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.committed = True
        self.manifest = manifest
        self._remove_staging()
        return manifest

    def _write_record(self) -> None:
        """Notes in the staging folder what was current before the atomic step, so that
        a retried commit of an empty write can tell whether that step happened."""
        record: dict[str, Any] = {"parent": None, "generation": 0}
        if _holds_archive(self.target):
            current = _open(self.target)
            record = {"parent": current.root, "generation": current.generation}
        path = os.path.join(self.staging, COMMIT_RECORD)
        with open(path + ".partial", "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".partial", path)

    def _read_record(self) -> dict[str, Any] | None:
        if self.remote:
            return None
        try:
            with open(os.path.join(self.staging, COMMIT_RECORD)) as f:
                record: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            return None
        return record

    def _generation_of(self, chosen: list[TaskResult]) -> dict[str, Any] | None:
        """The manifest of the generation this write's commit made, if a commit of it
        made its atomic step already; ``None`` if ``TARGET`` does not hold the write.

        A write is recognised by its samples: keys are unique in an archive, so a
        generation that holds one key of each chosen attempt, and exactly as many new
        samples as they have, is this write's. An empty write has no key; its record
        (see :meth:`_write_record`) says which generation it would have made. An object
        store keeps no record, so there an empty write run twice adds two empty
        generations: no sample twice, but one generation more."""
        if not _holds_archive(self.target):
            return None
        archive = _open(self.target)
        record = self._read_record()
        if record is not None and archive.root == record["parent"]:
            return None
        keys = [r.key for r in chosen if r.samples and r.key is not None]
        if not keys:
            if record is None or archive.generation <= record["generation"]:
                return None
            return _manifest(self.target, int(record["generation"]) + 1)
        found = [archive.get(key) for key in keys]
        if all(sample is None for sample in found):
            return None
        ordinals = sorted(sample.ordinal for sample in found if sample is not None)
        begin = 0
        for number in range(1, archive.generation + 1):
            manifest = _manifest(self.target, number)
            end = int(manifest["totals"]["samples"])
            if ordinals[0] < end:
                whole = len(ordinals) == len(keys) and ordinals[-1] < end
                if whole and end - begin == sum(r.samples for r in chosen):
                    return manifest
                break
            begin = end
        raise errors.InvalidInputError(
            f"{self.target}: holds some of write {self.write_id}'s samples but not as the "
            "one generation its commit makes; it was written by another write"
        )

    def _compose(
        self,
        into: str,
        paths: list[str],
        archives: list[Any],
        writer_options: dict[str, Any],
    ) -> dict[str, Any]:
        """Creates the archive ``into`` from the chosen attempts (local folders ``paths``,
        opened as ``archives``), or appends one generation to it."""
        if not _holds_archive(into):
            if paths:
                # A new archive: the library's merge copies every block as it is, checking
                # each shard against its manifest's BLAKE3 as it goes.
                report = merge(paths, into)
                manifest: dict[str, Any] = report["manifest"]
                return manifest
            writer = Writer(into, **writer_options)
        else:
            # A generation of an existing archive: a merge only creates archives, so the
            # samples are copied through the archive's appending writer.
            writer = Writer(into, append=True)
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
        if self.remote:
            remove_remote(self.staging)
            return
        # The attempts first and the commit record last: a commit interrupted meanwhile
        # still finds the record when it is retried.
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.staging):
                if entry.name != COMMIT_RECORD:
                    shutil.rmtree(entry.path, ignore_errors=True)
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
