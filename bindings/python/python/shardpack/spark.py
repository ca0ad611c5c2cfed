"""Writing a Spark DataFrame as one archive, exactly once, through Spark's Python data
source API (Spark 4): each task writes its partition into a staging archive, and Spark's own
commit and abort run the protocol of :mod:`shardpack.cluster` on the driver.

>>> shardpack.spark.write(df, "/shared/out", key="id", fields={"jpg": "jpg", "label": "cls"})

The target is a folder every executor and the driver see (a shared file system), or an
``s3://`` or ``http(s)://`` URL: then each task pushes its staging archive to
``URL/_staging/...`` and the driver's commit composes the archive locally and pushes it,
the manifest last (see :mod:`shardpack.cluster`).
Partition *i*'s rows become samples after partition *i - 1*'s, in the order Spark gives them,
so the same input and partitioning give the same archive.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceWriter, WriterCommitMessage

from . import FieldValue, PathLike, errors, is_remote
from . import open as _open
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
    holds the write's lock until Spark has committed or aborted, so a ``gc`` meanwhile
    leaves the staged attempts alone; a failed job leaves ``path`` as it was.
    """
    df.sparkSession.dataSource.register(ShardpackDataSource)
    target = os.fspath(path)
    if not is_remote(target):
        target = os.path.abspath(target)
    with StagedWrite.begin(target) as staged:
        (
            df.write.format(NAME)
            .mode("append")
            .options(**options(key=key, fields=fields, write_id=staged.write_id, **writer_options))
            .save(target)
        )
    manifest: dict[str, Any] = json.loads(_open(target).manifest_json())
    return manifest


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
        columns = list(schema.names)
        if settings["key"] not in columns:
            raise errors.InvalidInputError(
                f"no column {settings['key']!r}; the columns are {columns}"
            )
        fields = settings["fields"]
        if fields is None:
            fields = {name: name for name in columns if name != settings["key"]}
        unknown = sorted(set(fields) - set(columns))
        if unknown:
            raise errors.InvalidInputError(f"no columns {unknown}; the columns are {columns}")
        write_id = settings["write_id"]
        if write_id is None:
            # Nobody holds this write's lock: its staging is a leftover to gc meanwhile.
            write_id = StagedWrite.begin(path, lock=False).write_id
        return ShardpackWriter(path, write_id, settings["key"], fields, settings["writer"])


@dataclass
class TaskMessage(WriterCommitMessage):
    """A task's commit message: its :class:`shardpack.cluster.TaskResult`."""

    result: TaskResult


class ShardpackWriter(_WriterBase):
    """Writes each partition into its staging archive; commits or aborts on the driver."""

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

    def write(self, iterator: Iterator[Any]) -> TaskMessage:
        task, attempt = self._attempt()
        result = write_task(
            self.path,
            self.write_id,
            task,
            self._samples(iterator),
            attempt=attempt,
            **self.writer_options,
        )
        return TaskMessage(result)

    def _results(self, messages: list[WriterCommitMessage | None]) -> list[TaskResult | None]:
        return [m.result if isinstance(m, TaskMessage) else None for m in messages]

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        # Spark hands one message per partition, so every partition must have a result.
        staged = StagedWrite(self.path, self.write_id)
        staged.commit(self._results(messages), tasks=len(messages), **self.writer_options)

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        StagedWrite(self.path, self.write_id).abort()


__all__ = ["NAME", "OPTION", "ShardpackDataSource", "ShardpackWriter", "options", "write"]
