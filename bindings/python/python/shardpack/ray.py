"""Ray Data and shardpack archives: :class:`ShardpackDatasink` writes a Dataset as one
archive, exactly once (the protocol of :mod:`shardpack.cluster`: staging per task attempt,
the driver's commit in ``on_write_complete``), and :func:`read_shardpack` reads an archive
as a Dataset, one read task per group of shards.

>>> ds.write_datasink(shardpack.ray.ShardpackDatasink("/shared/out", key="id"))
>>> shardpack.ray.read_shardpack("/shared/out").take(1)   # [{"__key__": ..., "jpg": b...}]

The target is a folder every node sees (a shared file system), or an ``s3://`` or
``http(s)://`` URL (see :mod:`shardpack.cluster`). Write tasks are ordered by Ray Data's
task index.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import ray.data
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import Datasink, Datasource, ReadTask, WriteResult

from . import FieldValue, PathLike, errors, is_remote
from . import open as _open
from .cluster import StagedWrite, TaskResult, write_task

KEY = "__key__"
"""The column of the sample keys in the rows :func:`read_shardpack` gives."""


class ShardpackDatasink(Datasink[TaskResult]):
    """Writes a Dataset into the archive folder ``path`` with
    ``ds.write_datasink(sink)``, one sample per row: creates the archive, or appends one
    generation if it exists. ``key`` names the column of the sample keys; ``fields`` maps
    column names to field names (a list keeps the names; by default every other column);
    ``writer_options`` are :class:`shardpack.Writer`'s. Bytes and string values are stored as
    they are, other values as JSON. After the write, :attr:`manifest` is the new manifest.

    The driver holds the write's lock from ``on_write_start`` to the commit, so a ``gc``
    meanwhile leaves the staged attempts alone; a failed write leaves ``path`` as it was.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        key: str,
        fields: Mapping[str, str] | Sequence[str] | None = None,
        **writer_options: Any,
    ) -> None:
        self.path = os.fspath(path)
        if not is_remote(self.path):
            self.path = os.path.abspath(self.path)
        self.key = key
        if fields is not None and not isinstance(fields, Mapping):
            fields = {name: name for name in fields}
        self.fields = None if fields is None else dict(fields)
        self.writer_options = writer_options
        # Fixed before the sink is pickled into the tasks.
        self.write_id = uuid.uuid4().hex
        self._staged: StagedWrite | None = None
        self.manifest: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The lock stays with the driver.
        return {**self.__dict__, "_staged": None}

    def get_name(self) -> str:
        return "Shardpack"

    def on_write_start(self, schema: Any = None) -> None:
        if self._staged is None:
            self._staged = StagedWrite.begin(self.path, self.write_id)

    def _samples(self, blocks: Iterable[Any]) -> Iterator[tuple[str, dict[str, FieldValue]]]:
        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows == 0:
                continue
            columns = table.schema.names
            if self.key not in columns:
                raise errors.InvalidInputError(f"no column {self.key!r}; the columns are {columns}")
            fields = self.fields or {c: c for c in columns if c != self.key}
            unknown = sorted(set(fields) - set(columns))
            if unknown:
                raise errors.InvalidInputError(f"no columns {unknown}; the columns are {columns}")
            for row in table.to_pylist():
                key = row[self.key]
                if key is None:
                    raise errors.InvalidInputError(f"a row whose key column {self.key!r} is null")
                sample: dict[str, FieldValue] = {}
                for column, name in fields.items():
                    value = row[column]
                    if not isinstance(value, bytes | str):
                        value = json.dumps(value, default=str)
                    sample[name] = value
                yield str(key), sample

    def write(self, blocks: Iterable[Any], ctx: Any) -> TaskResult:
        # Ray exposes no attempt number: each attempt claims the next free one.
        return write_task(
            self.path, self.write_id, ctx.task_idx, self._samples(blocks), **self.writer_options
        )

    def on_write_complete(self, write_result: WriteResult[TaskResult]) -> None:
        if self._staged is None and not write_result.write_returns:
            # An empty Dataset may finish without a start: it still gives an archive.
            self.on_write_start()
        staged = self._staged or StagedWrite(self.path, self.write_id)
        try:
            self.manifest = staged.commit(write_result.write_returns, **self.writer_options)
        finally:
            staged.close()
            self._staged = None

    def on_write_failed(self, error: Exception) -> None:
        staged = self._staged or StagedWrite(self.path, self.write_id)
        staged.abort()
        staged.close()
        self._staged = None


class ShardpackDatasource(Datasource):
    """The archive folder ``path`` as a Ray Data source: one read task per
    ``shards_per_task`` shards (by default as many tasks as Ray asks for, up to one per
    shard). Each row is a dict of the sample's fields as bytes, and its key as
    ``"__key__"``. A read task refuses an archive whose root changed since the plan."""

    def __init__(
        self,
        path: PathLike,
        *,
        shards_per_task: int | None = None,
        generation: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.generation = generation
        archive = _open(self.path, generation=generation)
        self.root = archive.root
        self.shard_samples = list(archive.shard_samples)
        manifest = json.loads(archive.manifest_json())
        self.shard_bytes = [int(s.get("raw_bytes", s.get("size", 0))) for s in manifest["shards"]]
        if shards_per_task is not None and shards_per_task < 1:
            raise errors.InvalidInputError(f"shards_per_task {shards_per_task} must be >= 1")
        self.shards_per_task = shards_per_task

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(self.shard_bytes)

    def get_read_tasks(
        self,
        parallelism: int,
        per_task_row_limit: int | None = None,
        data_context: Any = None,
    ) -> list[ReadTask]:
        shards = len(self.shard_samples)
        per_task = self.shards_per_task or max(1, -(-shards // max(1, parallelism)))
        starts = [0]
        for count in self.shard_samples:
            starts.append(starts[-1] + count)
        tasks = []
        for first in range(0, shards, per_task):
            last = min(first + per_task, shards)
            begin, end = starts[first], starts[last]
            metadata = BlockMetadata(
                num_rows=end - begin,
                size_bytes=sum(self.shard_bytes[first:last]),
                input_files=None,
                exec_stats=None,
            )
            read = _reader(self.path, self.root, self.generation, begin, end)
            tasks.append(ReadTask(read, metadata, per_task_row_limit=per_task_row_limit))
        return tasks


def _reader(path: str, root: str, generation: int | None, begin: int, end: int) -> Any:
    """A read task's function: samples ``begin..end`` of the archive, a block per shard."""

    def read() -> Iterator[Any]:
        import pyarrow

        archive = _open(path, expect_root=root, generation=generation)
        ordinal = 0
        for count in archive.shard_samples:
            first, ordinal = ordinal, ordinal + count
            low, high = max(first, begin), min(ordinal, end)
            if low >= high:
                continue
            rows = []
            for sample in archive.get_many(list(range(low, high))):
                row: dict[str, Any] = {KEY: sample.key}
                row.update((name, bytes(view)) for name, view in sample.items())
                rows.append(row)
            yield pyarrow.Table.from_pylist(rows)

    return read


def read_shardpack(
    path: PathLike,
    *,
    shards_per_task: int | None = None,
    generation: int | None = None,
    **read_args: Any,
) -> ray.data.Dataset:
    """Reads the archive folder ``path`` as a Dataset (see :class:`ShardpackDatasource`);
    ``read_args`` go to ``ray.data.read_datasource``."""
    source = ShardpackDatasource(path, shards_per_task=shards_per_task, generation=generation)
    dataset: ray.data.Dataset = ray.data.read_datasource(source, **read_args)
    return dataset


__all__ = ["KEY", "ShardpackDatasink", "ShardpackDatasource", "read_shardpack"]
