"""shardpack: sharded, checksummed archives for ML datasets.

Open an archive with :func:`open`; an :class:`Archive` gives samples by index, by key, in
batches and in file order, each a read-only mapping of field names to ``memoryview``\\ s
that borrow the memory map. :class:`Writer` and :func:`pack` write archives,
:func:`verify` proves them intact. Every rule lives in the Rust library; this package
only converts. PyTorch datasets are in :mod:`shardpack.torch`.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Union

from . import errors
from ._shardpack import Archive, FieldBytes, Sample, SampleIter
from ._shardpack import Writer as _NativeWriter
from ._shardpack import epoch_order as _epoch_order
from ._shardpack import export_tar as _export_tar
from ._shardpack import fetch as _fetch
from ._shardpack import gc as _gc
from ._shardpack import import_tar as _import_tar
from ._shardpack import is_remote as is_remote
from ._shardpack import merge as _merge
from ._shardpack import open as _open
from ._shardpack import pack as _pack
from ._shardpack import protect as _protect
from ._shardpack import push as _push
from ._shardpack import remove_remote as _remove_remote
from ._shardpack import verify as _verify
from .decoders import decode
from .errors import CorruptError, ShardpackError

if TYPE_CHECKING:
    import numpy

__version__ = "0.1.0"

Mapping.register(Sample)

PathLike = Union[str, "os.PathLike[str]"]
FieldValue = Union[bytes, bytearray, memoryview, str, "numpy.ndarray[Any, Any]"]


def open(
    path: PathLike,
    *,
    source: Literal["mmap", "pread"] = "mmap",
    expect_root: str | None = None,
    generation: int | None = None,
    cache_dir: PathLike | None = None,
    cache_bytes: int | None = None,
) -> Archive:
    """Opens the archive folder ``path``; only the manifest is read until a sample is.

    ``source="pread"`` reads with positioned reads instead of a memory map (for files that
    may change while read). With ``expect_root``, a different root digest is refused.
    ``generation`` opens an earlier generation of an appended archive (1 is the archive as
    first written) instead of the current one. For a remote archive (a URL), ``cache_dir``
    keeps the bytes fetched in that folder, at most ``cache_bytes`` (10 GiB unless given),
    so that reading them again (the next epoch, another worker) makes no request.
    """
    return _open(
        os.fspath(path),
        source=source,
        expect_root=expect_root,
        generation=generation,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        cache_bytes=cache_bytes,
    )


def _reopen(
    path: str,
    source: Literal["mmap", "pread"],
    root: str,
    generation: int = 1,
    cache_dir: str | None = None,
    cache_bytes: int | None = None,
) -> Archive:
    """Unpickles an :class:`Archive`: the same folder, generation and cache, refused if
    its contents changed."""
    return _open(
        path,
        source=source,
        expect_root=root,
        generation=generation,
        cache_dir=cache_dir,
        cache_bytes=cache_bytes,
    )


def _field_bytes(name: str, value: Any) -> Any:
    """A field value as something with a byte buffer; arrays of field ``npy`` are stored in
    the ``.npy`` format (shape and dtype kept), other arrays as their raw C-order bytes."""
    if isinstance(value, bytes | str | bytearray | memoryview):
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "dtype"):
        import numpy

        if name == "npy" or name.endswith(".npy"):
            out = io.BytesIO()
            numpy.save(out, value, allow_pickle=False)
            return out.getvalue()
        contiguous: Any = numpy.ascontiguousarray(value)
        return memoryview(contiguous).cast("B")
    return value


class Writer:
    """Writes an archive folder sample by sample; use it as a context manager.

    An exception inside the ``with`` block leaves no manifest, so nothing looks like a
    finished archive. ``parity`` (a percentage) adds Reed-Solomon parity when finished; by
    default the profile's (none for disks).

    With ``append=True``, ``path`` is an existing archive and the samples become its next
    generation, with the archive's layout (the layout options are ignored); an exception
    leaves the previous generation current. Its parity file, if any, becomes stale unless
    ``parity`` is given.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        profile: str = "generic",
        shard_size: int | None = None,
        block_size: int | None = None,
        align: int | None = None,
        compression: Literal["zstd", "none"] = "zstd",
        level: int | None = None,
        dictionary: int | None = None,
        archive_id: str | None = None,
        parity: float | None = None,
        threads: int | None = None,
        append: bool = False,
    ) -> None:
        self._native = _NativeWriter(
            os.fspath(path),
            profile=profile,
            shard_size=shard_size,
            block_size=block_size,
            align=align,
            compression=compression,
            level=level,
            dictionary=dictionary,
            archive_id=archive_id,
            parity=parity,
            threads=threads,
            append=append,
        )
        self.manifest: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return str(self._native.path)

    def write(self, key: str, fields: Mapping[str, FieldValue]) -> int:
        """Appends one sample; returns its ordinal."""
        return self._native.write(key, {k: _field_bytes(k, v) for k, v in fields.items()})

    def __len__(self) -> int:
        return len(self._native)

    def finish(self) -> dict[str, Any]:
        """Writes the last shard and the manifest; returns the manifest."""
        self.manifest = json.loads(self._native.finish())
        return self.manifest

    @property
    def root(self) -> str | None:
        """The root digest, once finished."""
        return None if self.manifest is None else str(self.manifest["root"])

    def abort(self) -> None:
        """Stops without a manifest."""
        self._native.abort()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.finish()
        else:
            self.abort()


def pack(
    input: PathLike,
    output: PathLike,
    *,
    profile: str = "generic",
    shard_size: int | None = None,
    block_size: int | None = None,
    align: int | None = None,
    compression: Literal["zstd", "none"] = "zstd",
    level: int | None = None,
    dictionary: int | None = None,
    archive_id: str | None = None,
    parity: float | None = None,
    threads: int | None = None,
    skip_special: bool = False,
) -> dict[str, Any]:
    """Packs folder ``input`` into a new archive ``output`` as ``shardpack pack`` does;
    returns the report (``manifest``, ``file_bytes``, ``skipped``, ``parity``)."""
    report: dict[str, Any] = json.loads(
        _pack(
            os.fspath(input),
            os.fspath(output),
            profile=profile,
            shard_size=shard_size,
            block_size=block_size,
            align=align,
            compression=compression,
            level=level,
            dictionary=dictionary,
            archive_id=archive_id,
            parity=parity,
            threads=threads,
            skip_special=skip_special,
        )
    )
    return report


def import_tar(
    inputs: PathLike | Iterable[PathLike],
    output: PathLike,
    *,
    profile: str = "generic",
    shard_size: int | None = None,
    block_size: int | None = None,
    align: int | None = None,
    compression: Literal["zstd", "none"] = "zstd",
    level: int | None = None,
    dictionary: int | None = None,
    archive_id: str | None = None,
    parity: float | None = None,
    threads: int | None = None,
    skip_special: bool = False,
) -> dict[str, Any]:
    """Imports WebDataset tars into a new archive ``output`` as ``shardpack import`` does.

    ``inputs`` is a path, a brace pattern (``"shards-{000000..000009}.tar"``) or a list
    of them; plain, gzip and zstd tars are read. Returns the report (``manifest``,
    ``tars``, ``member_bytes``, ``skipped``, ``skipped_count``, ``parity``)."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    report: dict[str, Any] = json.loads(
        _import_tar(
            [os.fspath(i) for i in inputs],
            os.fspath(output),
            profile=profile,
            shard_size=shard_size,
            block_size=block_size,
            align=align,
            compression=compression,
            level=level,
            dictionary=dictionary,
            archive_id=archive_id,
            parity=parity,
            threads=threads,
            skip_special=skip_special,
        )
    )
    return report


def export_tar(
    archive: PathLike, pattern: PathLike, shard_size: int | None = None
) -> dict[str, Any]:
    """Writes the archive as WebDataset tars named by ``pattern`` (one ``%d``-style
    number, ``"out-%06d.tar"``), as ``shardpack export`` does; a new tar starts when one
    would pass ``shard_size`` bytes. Returns the report (``tars``, ``samples``,
    ``members``, ``unnamed_fields``)."""
    report: dict[str, Any] = json.loads(
        _export_tar(os.fspath(archive), os.fspath(pattern), shard_size=shard_size)
    )
    return report


@dataclass(frozen=True)
class Finding:
    """One defect ``verify`` found, and where."""

    file: str
    shard: int | None
    offset: int
    length: int
    what: str
    expected: str
    found: str
    defect: str | None
    structure: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: ``valid`` only when there is no finding at all."""

    archive: str
    mode: str
    root: str | None
    complete: bool
    valid: bool
    shards: int
    samples: int
    bytes_checked: int
    findings: list[Finding]
    recoverable: bool | None
    leftovers: list[str]
    generations: int
    raw: dict[str, Any] = field(repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.valid


def _finding(raw: dict[str, Any]) -> Finding:
    return Finding(
        file=str(raw["file"]),
        shard=raw.get("shard"),
        offset=int(raw["offset"]),
        length=int(raw["len"]),
        what=str(raw["what"]),
        expected=str(raw["expected"]),
        found=str(raw["found"]),
        defect=raw.get("defect"),
        structure=raw.get("structure"),
        raw=raw,
    )


def verify(
    path: PathLike,
    *,
    mode: Literal["quick", "full", "deep"] = "full",
    expect_root: str | None = None,
    cache_dir: PathLike | None = None,
    cache_bytes: int | None = None,
) -> VerifyReport:
    """Verifies the archive in ``path``; the report lists every finding. A remote archive
    is read through ``cache_dir`` when given (as :func:`open` reads), so that the bytes
    checked are those reads would get."""
    text = _verify(
        os.fspath(path),
        mode=mode,
        expect_root=expect_root,
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        cache_bytes=cache_bytes,
    )
    raw: dict[str, Any] = json.loads(text)
    return VerifyReport(
        archive=str(raw["archive"]),
        mode=str(raw["mode"]),
        root=raw.get("root"),
        complete=bool(raw["complete"]),
        valid=bool(raw["valid"]),
        shards=int(raw["shards"]),
        samples=int(raw["samples"]),
        bytes_checked=int(raw["bytes_checked"]),
        findings=[_finding(f) for f in raw["findings"]],
        recoverable=raw.get("recoverable"),
        leftovers=[str(x["path"]) for x in raw.get("leftovers", [])],
        generations=int(raw.get("generations", 0)),
        raw=raw,
    )


def merge(
    inputs: Iterable[PathLike], output: PathLike, *, archive_id: str | None = None
) -> dict[str, Any]:
    """Merges the archives ``inputs``, in order, into a new archive ``output`` as
    ``shardpack merge`` does, copying every block as it is (no decoding); the inputs must
    share one layout, and a key in two of them is refused. Returns the report (``inputs``,
    ``archive_id``, ``shards_rewritten``, ``shards_unchanged``, ``manifest``)."""
    report: dict[str, Any] = json.loads(
        _merge([os.fspath(p) for p in inputs], os.fspath(output), archive_id=archive_id)
    )
    return report


def gc(path: PathLike, *, delete: bool = False) -> dict[str, Any]:
    """Lists the leftovers of interrupted commands in an archive folder (files no
    generation refers to, and entries of ``_staging/`` that no running distributed write
    holds locked, see :mod:`shardpack.cluster`) and, with ``delete``, removes them."""
    report: dict[str, Any] = json.loads(_gc(os.fspath(path), delete=delete))
    return report


def push(path: PathLike, url: str) -> int:
    """Uploads the archive folder ``path`` to the remote folder ``url`` as ``shardpack
    push`` does: shards first, the manifest last, so no reader sees half an archive;
    shards the remote manifest already lists unchanged are not sent again. Returns the
    shard bytes uploaded."""
    return _push(os.fspath(path), url)


def remove_remote(url: str) -> int:
    """Deletes the remote folder ``url`` and every object under it (never a whole bucket);
    returns how many objects were deleted."""
    return _remove_remote(url)


def protect(path: PathLike, *, parity: float = 15.0) -> dict[str, Any]:
    """Adds Reed-Solomon parity of ``parity`` per cent to the archive in ``path``."""
    report: dict[str, Any] = json.loads(_protect(os.fspath(path), parity=parity))
    return report


def fetch(
    url: str, output: PathLike, *, expect_root: str | None = None, parallel: int = 4
) -> dict[str, Any]:
    """Downloads the archive at ``url`` (``http(s)://``, ``s3://``) into the folder ``output``
    as ``shardpack fetch`` does: every shard checked by its BLAKE3 before it takes its name,
    an interrupted download continued, the manifest last. With ``expect_root``, another root
    digest is refused before any shard is fetched. Raises the error of a shard that arrived
    damaged twice; returns counts (``bytes_fetched``, ``resumed``, ``refetched``, ...)."""
    return _fetch(url, os.fspath(output), expect_root=expect_root, parallel=parallel)


def epoch_order(
    shard_samples: Iterable[int],
    *,
    seed: int | None = None,
    span: int = 1024,
    window: int = 4096,
    epoch: int = 0,
) -> list[int]:
    """The ordinals of one epoch in reading order (docs/sample-order.md)."""
    return _epoch_order(list(shard_samples), seed=seed, span=span, window=window, epoch=epoch)


def write_arrow(
    data: Any,
    path: PathLike,
    *,
    key: str | None = None,
    **writer_options: Any,
) -> dict[str, Any]:
    """Writes a pyarrow ``Table``, ``RecordBatch`` or iterable of batches (a Parquet file
    read with pyarrow, a Hugging Face dataset's ``.data``) as an archive: one sample per
    row, one field per column. ``key`` names the column holding each row's key; without it
    keys are the row numbers, zero-padded. Binary and string columns are stored as they
    are, other values as JSON. Returns the manifest."""
    import pyarrow

    if isinstance(data, pyarrow.Table):
        batches: Iterable[Any] = data.to_batches()
    elif isinstance(data, pyarrow.RecordBatch):
        batches = [data]
    else:
        batches = data
    row = 0
    with Writer(path, **writer_options) as writer:
        for batch in batches:
            columns = batch.schema.names
            if key is not None and key not in columns:
                raise errors.InvalidInputError(f"no column {key!r}; the columns are {columns}")
            values = {name: batch.column(name).to_pylist() for name in columns}
            for i in range(batch.num_rows):
                sample_key = str(values[key][i]) if key is not None else f"{row:012d}"
                fields: dict[str, FieldValue] = {}
                for name in columns:
                    if name == key:
                        continue
                    value = values[name][i]
                    if isinstance(value, bytes | str):
                        fields[name] = value
                    else:
                        fields[name] = json.dumps(value)
                writer.write(sample_key, fields)
                row += 1
    assert writer.manifest is not None
    return writer.manifest


__all__ = [
    "Archive",
    "CorruptError",
    "FieldBytes",
    "Finding",
    "Sample",
    "SampleIter",
    "ShardpackError",
    "VerifyReport",
    "Writer",
    "decode",
    "epoch_order",
    "errors",
    "export_tar",
    "fetch",
    "gc",
    "import_tar",
    "is_remote",
    "merge",
    "open",
    "pack",
    "protect",
    "push",
    "remove_remote",
    "verify",
    "write_arrow",
]
