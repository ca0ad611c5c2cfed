"""PyTorch datasets over shardpack archives.

* :class:`MapDataset`: map-style; ``dataset[i]`` and batched ``__getitems__`` (one read
  call per batch, GIL released). Pickles by path and reopens lazily in each worker.
* :class:`StreamingDataset`: iterable; a seeded shuffle that keeps locality, split over
  ranks (from ``torch.distributed`` or ``RANK``/``WORLD_SIZE``) and DataLoader workers so
  that every sample is read once per epoch; ``state_dict()``/``load_state_dict()`` resume
  mid-epoch exactly, also under torchdata's ``StatefulDataLoader``.
* :class:`StreamingDataLoader`: a ``DataLoader`` that counts the batches it handed out, so
  its ``state_dict()`` is one global position in the epoch, which resumes with any other
  number of ranks or workers. Over a dataset of raw fields (``decode=False``, no
  ``transform``) its workers gather each batch field by field into one buffer (a
  shared-memory tensor from 4 MiB up), so a batch crosses to the main process as a few
  buffers, not as an object per sample and field; its fields are then lists of
  ``memoryview``s of that buffer. On Linux it widens the pipe its workers' batches cross
  to 1 MiB, so that a worker hands on a batch in one write instead of 64 KiB at a time.

The order and the split are the Rust library's (docs/sample-order.md). Parameter names
follow MosaicML Streaming's where they mean the same thing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal

import torch.distributed
import torch.utils.data

from . import Archive, Sample
from . import open as _open_archive
from ._shardpack import ReadPlan, position_after
from .decoders import Decoder, decode
from .errors import InvalidInputError

Transform = Callable[[dict[str, Any]], Any]


class _Reader:
    """What both datasets share: a path, an archive opened lazily (again after a fork) and
    checked against the root digest seen first, and turning samples into items."""

    def __init__(
        self,
        local: str | os.PathLike[str] | Archive,
        decode_fields: bool | Mapping[str, Decoder],
        transform: Transform | None,
        source: Literal["mmap", "pread"],
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int | None = None,
    ) -> None:
        if isinstance(local, Archive):
            archive = local
        else:
            archive = _open_archive(
                local, source=source, cache_dir=cache_dir, cache_bytes=cache_bytes
            )
        self.path = archive.url or str(archive.path)
        self.root = archive.root
        self.source: Literal["mmap", "pread"] = source
        # An archive given open keeps its own cache: each worker reopens with the same one.
        folder = archive.cache_dir
        self.cache_dir: str | None = None if folder is None else os.fspath(folder)
        self.cache_bytes: int | None = archive.cache_bytes
        self.length = len(archive)
        self.shard_samples = archive.shard_samples
        self.decode_fields = decode_fields
        self.transform = transform
        self._archive: Archive | None = archive
        self._pid = os.getpid()

    def archive(self) -> Archive:
        if self._archive is None or self._pid != os.getpid():
            self._archive = _open_archive(
                self.path,
                source=self.source,
                expect_root=self.root,
                cache_dir=self.cache_dir,
                cache_bytes=self.cache_bytes,
            )
            self._pid = os.getpid()
        return self._archive

    def item(self, sample: Sample) -> Any:
        if self.decode_fields is False:
            out: dict[str, Any] = {"__key__": sample.key, "__ordinal__": sample.ordinal}
            for name, view in sample.items():
                out[name] = bytes(view)
        else:
            rules = self.decode_fields if isinstance(self.decode_fields, Mapping) else None
            out = decode(sample, rules)
            for name, value in out.items():
                if isinstance(value, memoryview):
                    out[name] = bytes(value)
        return self.transform(out) if self.transform is not None else out

    @property
    def raw(self) -> bool:
        """True when items are the raw fields: no decoding and no transform."""
        return self.decode_fields is False and self.transform is None

    def batch(self, archive: Archive, indices: list[int]) -> dict[str, Any]:
        """The samples at ``indices`` gathered into one buffer (see :func:`unpack_batch`).
        A large buffer goes to the main process as a shared-memory tensor, one copy; a
        small one is cheaper pickled than a shared-memory segment is to set up and pass."""
        keys, ordinals, names, data, starts, lengths = archive.get_batch(indices)
        buffer: torch.Tensor | bytearray = (
            torch.frombuffer(data, dtype=torch.uint8)
            if data and len(data) >= _SHARED_BYTES
            else data
        )
        return {"__key__": keys, _GATHERED: (names, buffer, ordinals, starts, lengths)}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_archive"] = None
        return state


_GATHERED = "__gathered__"
# From about this size, a batch's buffer crosses processes faster in shared memory.
_SHARED_BYTES = 4 << 20


def _as_gathered(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


def unpack_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A gathered batch as the collated one a ``DataLoader`` makes of the samples:
    ``__ordinal__`` a tensor, each field a list with one ``memoryview`` per sample (``None``
    for a sample without it) of the batch's buffer, without a copy."""
    gathered = batch.pop(_GATHERED, None)
    if gathered is None:
        return batch
    names, buffer, ordinals, starts, lengths = gathered
    batch["__ordinal__"] = torch.tensor(ordinals, dtype=torch.int64)
    view = buffer.numpy().data if isinstance(buffer, torch.Tensor) else memoryview(buffer)
    n = len(ordinals)
    for f, name in enumerate(names):
        cells = zip(starts[f * n : (f + 1) * n], lengths[f * n : (f + 1) * n], strict=True)
        batch[name] = [view[at : at + size] if size >= 0 else None for at, size in cells]
    return batch


class MapDataset(torch.utils.data.Dataset[Any]):
    """Map-style dataset: ``dataset[i]`` is sample ``i``, decoded by field name (or, with
    ``decode=False``, a dict of ``bytes``), then passed through ``transform``."""

    def __init__(
        self,
        local: str | os.PathLike[str] | Archive,
        *,
        decode: bool | Mapping[str, Decoder] = True,
        transform: Transform | None = None,
        source: Literal["mmap", "pread"] = "mmap",
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int | None = None,
    ) -> None:
        self._reader = _Reader(local, decode, transform, source, cache_dir, cache_bytes)

    def __len__(self) -> int:
        return self._reader.length

    def __getitem__(self, index: int) -> Any:
        return self._reader.item(self._reader.archive()[index])

    def __getitems__(self, indices: list[int]) -> list[Any]:
        return [self._reader.item(s) for s in self._reader.archive().get_many(indices)]


def _rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class StreamingDataset(torch.utils.data.IterableDataset[Any]):
    """Iterable dataset: each rank and DataLoader worker reads its part of the epoch, in
    chunks of ``batch_size`` samples, so that every sample is read exactly once per epoch
    across all of them (with ``drop_last``, the last incomplete step is skipped).

    Use the DataLoader with the same ``batch_size``, or :class:`StreamingDataLoader`; given
    to a StreamingDataLoader over raw fields, the dataset yields whole gathered batches
    (see :func:`unpack_batch`) from then on. A copy that finishes an epoch moves to
    the next (in the main process, or in persistent workers); with workers that are not
    persistent, call :meth:`set_epoch` before each epoch, or use
    :class:`StreamingDataLoader`, which does. ``shuffle_block_size`` is the
    window of positions within which samples are shuffled; ``shuffle_span`` the run of
    consecutive samples that move together.
    """

    def __init__(
        self,
        local: str | os.PathLike[str] | Archive,
        *,
        batch_size: int = 1,
        shuffle: bool = False,
        shuffle_seed: int = 9176,
        shuffle_block_size: int = 4096,
        shuffle_span: int = 1024,
        drop_last: bool = False,
        decode: bool | Mapping[str, Decoder] = True,
        transform: Transform | None = None,
        source: Literal["mmap", "pread"] = "mmap",
        rank: int | None = None,
        world_size: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_bytes: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, not {batch_size}")
        self._reader = _Reader(local, decode, transform, source, cache_dir, cache_bytes)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.shuffle_seed = shuffle_seed
        self.shuffle_block_size = shuffle_block_size
        self.shuffle_span = shuffle_span
        self.drop_last = drop_last
        self._rank = rank
        self._world = world_size
        self.epoch = 0
        # Set by StreamingDataLoader over raw fields: yield whole gathered batches.
        self._gather = False
        # Resumption: a global position, or (with the same partition) the chunks done.
        self._start = 0
        self._done = 0
        self._offset = 0

    @property
    def tail(self) -> Literal["keep", "drop"]:
        return "drop" if self.drop_last else "keep"

    def rank_and_world(self) -> tuple[int, int]:
        rank, world = _rank_and_world()
        return (
            self._rank if self._rank is not None else rank,
            self._world if self._world is not None else world,
        )

    def set_epoch(self, epoch: int) -> None:
        """Starts epoch ``epoch`` from its beginning at the next iteration."""
        self.epoch = epoch
        self._start = self._done = self._offset = 0

    def __len__(self) -> int:
        """Samples this rank reads in an epoch from the start."""
        rank, world = self.rank_and_world()
        total = self._reader.length
        if self.drop_last:
            total -= total % (world * self.batch_size)
        chunks = -(-total // self.batch_size)
        mine = max(0, (chunks - rank + world - 1) // world)
        short = chunks * self.batch_size - total if chunks and (chunks - 1) % world == rank else 0
        return mine * self.batch_size - short

    def _plan(
        self, rank: int, world: int, worker: int, workers: int, *, start: int, done: int
    ) -> ReadPlan:
        return ReadPlan(
            self._reader.shard_samples,
            seed=self.shuffle_seed if self.shuffle else None,
            span=self.shuffle_span,
            window=self.shuffle_block_size,
            epoch=self.epoch,
            rank=rank,
            world=world,
            worker=worker,
            workers=workers,
            batch=self.batch_size,
            tail=self.tail,
            start=start,
            done=done,
        )

    def __iter__(self) -> Iterator[Any]:
        rank, world = self.rank_and_world()
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        self._partition = (rank, world, worker, workers)
        archive = self._reader.archive()
        plan = self._plan(rank, world, worker, workers, start=self._start, done=self._done)
        skip = self._offset
        for chunk in plan:
            if self._gather:
                rest = chunk[skip:]
                skip = 0
                if rest:
                    self._offset = len(chunk)
                    yield self._reader.batch(archive, rest)
                self._done += 1
                self._offset = 0
                continue
            samples = archive.get_many(chunk[skip:])
            self._offset = skip
            skip = 0
            for sample in samples:
                self._offset += 1
                yield self._reader.item(sample)
            self._done += 1
            self._offset = 0
        # A finished epoch: the next iteration of this copy (in the main process, or a
        # persistent worker's) reads the next epoch from its start.
        self.set_epoch(self.epoch + 1)

    def state_dict(self) -> dict[str, Any]:
        """This reader's place in the epoch: resumes exactly with the same partition
        (``StatefulDataLoader`` keeps one per worker)."""
        rank, world, worker, workers = getattr(self, "_partition", (*self.rank_and_world(), 0, 1))
        return {
            "epoch": self.epoch,
            "start": self._start,
            "done": self._done,
            "offset": self._offset,
            "rank": rank,
            "world_size": world,
            "worker": worker,
            "num_workers": workers,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "shuffle_seed": self.shuffle_seed,
            "root": self._reader.root,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resumes from :meth:`state_dict` (same partition) or from a global
        ``{"epoch", "position"}`` of :class:`StreamingDataLoader` (any partition)."""
        if state.get("root", self._reader.root) != self._reader.root:
            raise InvalidInputError(
                f"{self._reader.path}: the state is of another archive (root {state['root']})"
            )
        if (
            state.get("shuffle_seed", self.shuffle_seed) != self.shuffle_seed
            or state.get("shuffle", self.shuffle) != self.shuffle
        ):
            raise InvalidInputError("the state was saved with another shuffle or seed")
        self.epoch = int(state["epoch"])
        if "position" in state:
            self._start, self._done, self._offset = int(state["position"]), 0, 0
        else:
            if int(state.get("batch_size", self.batch_size)) != self.batch_size:
                raise InvalidInputError("a per-worker state needs the same batch_size")
            self._start = int(state["start"])
            self._done = int(state["done"])
            self._offset = int(state["offset"])


# Batches from the workers cross one pipe, 64 KiB by default on Linux: a batch of 540 KiB
# took nine writes, each waiting for the main process to read the last. Wider, a worker
# writes a batch at once; on bench/compare's text loader a DataLoader epoch took 20-35%
# less time. 1 MiB is what Linux lets any process ask for (/proc/sys/fs/pipe-max-size).
_RESULT_PIPE_BYTES = 1 << 20


def _widen_result_pipe(iterator: Any) -> None:
    """Widens the pipe of a multi-process DataLoader iterator's result queue, where the
    platform and the iterator allow; otherwise leaves it as it is."""
    reader = getattr(getattr(iterator, "_worker_result_queue", None), "_reader", None)
    if reader is None:  # no workers
        return
    try:
        import fcntl

        set_size = fcntl.F_SETPIPE_SZ
    except (ImportError, AttributeError):  # not Linux
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(reader.fileno(), set_size, _RESULT_PIPE_BYTES)


class StreamingDataLoader(torch.utils.data.DataLoader[Any]):
    """A DataLoader over a :class:`StreamingDataset` whose state is one global position:
    every rank handed out the same number of batches, so ``state_dict()`` on any rank
    resumes all of them, with any number of ranks or workers."""

    dataset: StreamingDataset

    def __init__(self, dataset: StreamingDataset, **kwargs: Any) -> None:
        if kwargs.setdefault("batch_size", dataset.batch_size) != dataset.batch_size:
            raise InvalidInputError("batch_size must be the dataset's batch_size")
        if kwargs.get("drop_last"):
            raise InvalidInputError("drop_last is the dataset's: StreamingDataset(drop_last=True)")
        if dataset._reader.raw and kwargs.get("collate_fn") is None:
            # The dataset's chunks are the batches: the workers gather them whole.
            dataset._gather = True
            kwargs["batch_size"] = None
            kwargs.pop("drop_last", None)
            # Without batching, the DataLoader would convert each batch item by item.
            kwargs["collate_fn"] = _as_gathered
        super().__init__(dataset, **kwargs)
        self._steps = 0
        self._fresh = True

    def _get_iterator(self) -> Any:
        iterator = super()._get_iterator()
        _widen_result_pipe(iterator)
        return iterator

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        if not self._fresh:
            # The last iteration was left mid-epoch: start the next epoch.
            self.dataset.set_epoch(self.dataset.epoch + 1)
        epoch = self.dataset.epoch
        self._fresh = False
        self._steps = 0
        for batch in super().__iter__():
            self._steps += 1
            yield unpack_batch(batch) if self.dataset._gather else batch
        self.dataset.set_epoch(epoch + 1)
        self._steps = 0
        self._fresh = True

    def state_dict(self) -> dict[str, Any]:
        dataset = self.dataset
        _, world = dataset.rank_and_world()
        position = position_after(
            dataset._reader.length,
            start=dataset._start,
            steps=self._steps,
            world=world,
            batch=dataset.batch_size,
            tail=dataset.tail,
        )
        return {
            "epoch": dataset.epoch,
            "position": position,
            "shuffle": dataset.shuffle,
            "shuffle_seed": dataset.shuffle_seed,
            "root": dataset._reader.root,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._fresh = True
        self._steps = 0


__all__ = ["MapDataset", "StreamingDataLoader", "StreamingDataset", "unpack_batch"]
