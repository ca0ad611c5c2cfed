"""Errors: typed, located, picklable."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest

import shardpack
from conftest import write_archive
from shardpack import errors


def corrupt_copy(tmp_path: Path, source: Path) -> tuple[Path, Path, int]:
    """A copy of `source` with one byte flipped in the middle of its first shard."""
    target = tmp_path / "damaged"
    shutil.copytree(source, target)
    shard = target / "shard-000000.shp"
    data = bytearray(shard.read_bytes())
    offset = 4096 + 200
    data[offset] ^= 0xFF
    shard.write_bytes(bytes(data))
    return target, shard, offset


def test_a_damaged_sample_raises_corrupt_error_with_its_location(
    tmp_path: Path, stored: Path
) -> None:
    target, shard, offset = corrupt_copy(tmp_path, stored)
    archive = shardpack.open(target)
    with pytest.raises(errors.CorruptError) as caught:
        for i in range(len(archive)):
            archive[i]
    error = caught.value
    assert error.file == str(shard)
    assert error.shard == 0
    assert error.offset is not None and error.offset <= offset
    assert error.defect == "crc"


def test_every_error_class_pickles_with_its_attributes() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        error = cls("message", file="f", shard=3, offset=7, length=2, defect="crc")
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is cls
        assert str(again) == "message"
        assert (again.file, again.shard, again.offset, again.length) == ("f", 3, 7, 2)


def test_kinds_are_also_the_builtin_exceptions_people_catch(tmp_path: Path) -> None:
    assert issubclass(errors.OrdinalError, IndexError)
    assert issubclass(errors.KeyNotFoundError, KeyError)
    assert issubclass(errors.InvalidInputError, ValueError)
    assert issubclass(errors.ArchiveIOError, OSError)
    with pytest.raises(errors.IncompleteError, match="nothing-here"):
        shardpack.open(tmp_path / "nothing-here")
    (tmp_path / "a-file").write_bytes(b"")
    with pytest.raises(errors.ArchiveIOError) as caught:
        shardpack.Writer(tmp_path / "a-file" / "archive")
    assert caught.value.file is not None and "a-file" in caught.value.file


def test_an_unfinished_archive_is_incomplete(tmp_path: Path) -> None:
    path = tmp_path / "unfinished"
    with pytest.raises(RuntimeError), shardpack.Writer(path) as writer:
        writer.write("a", {"txt": "x"})
        raise RuntimeError("stop")
    assert not (path / "manifest.json").exists()
    with pytest.raises(errors.IncompleteError):
        shardpack.open(path)


def test_verify_lists_every_finding_with_its_place(tmp_path: Path) -> None:
    source = write_archive(tmp_path / "src", "none", samples=50)
    assert shardpack.verify(source).valid
    target, shard, offset = corrupt_copy(tmp_path, source)
    report = shardpack.verify(target)
    assert not report.valid and report.findings
    assert any(f.file == str(shard) and f.offset <= offset for f in report.findings)


def test_a_changed_archive_is_refused_when_unpickled(tmp_path: Path) -> None:
    path = write_archive(tmp_path / "a", "none", samples=10)
    blob = pickle.dumps(shardpack.open(path))
    shutil.rmtree(path)
    write_archive(path, "zstd", samples=11)
    with pytest.raises(errors.InvalidInputError, match="root digest"):
        pickle.loads(blob)
