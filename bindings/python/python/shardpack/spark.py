"""Writing a Spark DataFrame as one archive, exactly once: each task writes its partition
into a staging archive, and the driver runs the commit of :mod:`shardpack.cluster`.

>>> shardpack.spark.write(df, "/shared/out", key="id", fields={"jpg": "jpg", "label": "cls"})

:func:`write` runs the tasks with ``DataFrame.mapInArrow``, each returning its result to
the driver, and commits there: Spark delivers exactly one successful attempt's result per
partition. The data source ``df.write.format("shardpack")`` (Spark's Python data source API,
Spark 4) runs the same tasks and the same commit through Spark's own commit and abort; it
starts more Python processes per job, which costs seconds on a small job.

The target is a folder every executor and the driver see (a shared file system), or an
``s3://`` or ``http(s)://`` URL: then each task pushes its staging archive to
``URL/_staging/...`` and the driver's commit composes the archive locally and pushes it,
the manifest last (see :mod:`shardpack.cluster`).
Partition *i*'s rows become samples after partition *i - 1*'s, in the order Spark gives them,
so the same input and partitioning give the same archive.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceWriter, WriterCommitMessage

from . import FieldValue, PathLike, errors, is_remote
from .cluster import StagedWrite, TaskResult, write_task

try:  # Spark 4.1 and later hand a writer Arrow batches instead of rows.
    from pyspark.sql.datasource import DataSourceArrowWriter as _WriterBase
except ImportError:  # pragma: no cover
    _WriterBase = DataSourceWriter  # type: ignore[misc, assignment]

NAME = "shardpack"
"""The data source's format name: ``df.write.format("shardpack")``."""

OPTION = "shardpack"
"""The one option, a JSON object, that carries the write's settings to the data source."""


def options(
    *,
    key: str,
    fields: Mapping[str, str] | Sequence[str] | None = None,
    write_id: str | None = None,
    **writer_options: Any,
) -> dict[str, str]:
    """The options of ``df.write.format("shardpack")``, for a caller that drives the
    write itself (:func:`write` does it for you). ``key`` names the column of the sample
    keys; ``fields`` maps column names to field names (a list keeps the names; by default
    every other column); ``writer_options`` are :class:`shardpack.Writer`'s. With a
    ``write_id``, the staging folder must have been begun (:class:`StagedWrite`)."""
    if fields is not None and not isinstance(fields, Mapping):
        fields = {name: name for name in fields}
    return {
        OPTION: json.dumps(
            {"key": key, "fields": fields, "write_id": write_id, "writer": writer_options}
        )
    }


def write(
    df: Any,
    path: PathLike,
    *,
    key: str,
    fields: Mapping[str, str] | Sequence[str] | None = None,
    **writer_options: Any,
) -> dict[str, Any]:
    """Writes DataFrame ``df`` into the archive folder ``path``, one sample per row:
    creates the archive, or appends one generation if it exists. Returns the manifest.

    Bytes and string columns are stored as they are, other values as JSON. The driver
    holds the write's lock until the commit or the abort, so a ``gc`` meanwhile leaves the
    staged attempts alone; a failed job leaves ``path`` as it was.
    """
    target = os.fspath(path)
    if not is_remote(target):
        target = os.path.abspath(target)
    columns = _columns(list(df.schema.names), key, fields)
    with StagedWrite.begin(target) as staged:
        task = PartitionWriter(target, staged.write_id, key, columns, writer_options)
        rows = df.mapInArrow(task, RESULT_SCHEMA).collect()
        results = [TaskResult(**json.loads(row.result)) for row in rows]
        # Spark calls a task for every partition, an empty one too, and the job succeeds
        # only once each has a result: a partition without one is a bug, not a retry.
        tasks = 1 + max((r.task for r in results), default=-1)
        return staged.commit(results, tasks=tasks, **writer_options)


RESULT_SCHEMA = "result string"
"""What each task of :func:`write` returns to the driver: one row, its
:class:`shardpack.cluster.TaskResult` as JSON."""


def _columns(
    columns: list[str], key: str, fields: Mapping[str, str] | Sequence[str] | None
) -> dict[str, str]:
    """The column of each field (``{column: field}``), checked against the DataFrame's
    ``columns``: by default every column but the key's."""
    if key not in columns:
        raise errors.InvalidInputError(f"no column {key!r}; the columns are {columns}")
    if fields is None:
        return {name: name for name in columns if name != key}
    if not isinstance(fields, Mapping):
        fields = {name: name for name in fields}
    unknown = sorted(set(fields) - set(columns))
    if unknown:
        raise errors.InvalidInputError(f"no columns {unknown}; the columns are {columns}")
    return dict(fields)


class PartitionWriter:
    """One task's work, in :func:`write` and in the data source alike: writes the rows of
    its partition into its staging archive and reports the result. Calling it with the
    partition's Arrow batches (``DataFrame.mapInArrow``) yields that result as one row."""

    def __init__(
        self,
        path: str,
        write_id: str,
        key: str,
        fields: dict[str, str],
        writer_options: dict[str, Any],
    ) -> None:
        self.path = path
        self.write_id = write_id
        self.key = key
        self.fields = fields
        self.writer_options = writer_options

    def _attempt(self) -> tuple[int, int]:
        """This task's partition and attempt numbers."""
        from pyspark import TaskContext

        context = TaskContext.get()
        assert context is not None
        return context.partitionId(), context.attemptNumber()

    def _samples(self, data: Iterator[Any]) -> Iterator[tuple[str, dict[str, FieldValue]]]:
        for item in data:
            rows = item.to_pylist() if hasattr(item, "to_pylist") else [item.asDict()]
            for row in rows:
                key = row[self.key]
                if key is None:
                    raise errors.InvalidInputError(f"a row whose key column {self.key!r} is null")
                sample: dict[str, FieldValue] = {}
                for column, name in self.fields.items():
                    value = row[column]
                    if isinstance(value, bytearray):
                        value = bytes(value)
                    if not isinstance(value, bytes | str):
                        value = json.dumps(value, default=str)
                    sample[name] = value
                yield str(key), sample

    def write_partition(self, data: Iterator[Any]) -> TaskResult:
        """Writes this task's rows (Arrow batches or Spark rows) into its staging archive."""
        task, attempt = self._attempt()
        return write_task(
            self.path,
            self.write_id,
            task,
            self._samples(data),
            attempt=attempt,
            **self.writer_options,
        )

    def __call__(self, batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        result = json.dumps(dataclasses.asdict(self.write_partition(batches)))
        yield pyarrow.RecordBatch.from_pydict({"result": [result]})


class ShardpackDataSource(DataSource):
    """The ``shardpack`` data source (writing only); register it with
    ``spark.dataSource.register(ShardpackDataSource)``."""

    @classmethod
    def name(cls) -> str:
        return NAME

    def writer(self, schema: Any, overwrite: bool) -> ShardpackWriter:
        if overwrite:
            raise errors.InvalidInputError(
                "an archive grows by generations and is never overwritten; use mode('append')"
            )
        path = self.options.get("path")
        config = self.options.get(OPTION)
        if not path or not config:
            raise errors.InvalidInputError(
                f"the shardpack data source needs a path and the {OPTION!r} option "
                "(shardpack.spark.options)"
            )
        settings = json.loads(config)
        fields = _columns(list(schema.names), settings["key"], settings["fields"])
        write_id = settings["write_id"]
        if write_id is None:
            # Nobody holds this write's lock: its staging is a leftover to gc meanwhile.
            write_id = StagedWrite.begin(path, lock=False).write_id
        return ShardpackWriter(path, write_id, settings["key"], fields, settings["writer"])


@dataclass
class TaskMessage(WriterCommitMessage):
    """A task's commit message: its :class:`shardpack.cluster.TaskResult`."""

    result: TaskResult


class ShardpackWriter(PartitionWriter, _WriterBase):
    """The data source's writer: each task writes its partition into its staging archive;
    Spark commits or aborts on the driver."""

    def write(self, iterator: Iterator[Any]) -> TaskMessage:
        return TaskMessage(self.write_partition(iterator))

    def _results(self, messages: list[WriterCommitMessage | None]) -> list[TaskResult | None]:
        return [m.result if isinstance(m, TaskMessage) else None for m in messages]

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        # Spark hands one message per partition, so every partition must have a result.
        staged = StagedWrite(self.path, self.write_id)
        staged.commit(self._results(messages), tasks=len(messages), **self.writer_options)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        StagedWrite(self.path, self.write_id).abort()


__all__ = [
    "NAME",
    "OPTION",
    "PartitionWriter",
    "ShardpackDataSource",
    "ShardpackWriter",
    "options",
    "write",
]
