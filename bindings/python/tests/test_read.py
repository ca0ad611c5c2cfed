"""Reading: indices, keys, batches, iteration, zero-copy views and their lifetime."""

from __future__ import annotations

import gc
import pickle
from pathlib import Path

import numpy
import pytest
import torch

import shardpack
from conftest import SAMPLES, array_of


def test_round_trip_of_numpy_arrays(archive_path: Path) -> None:
    archive = shardpack.open(archive_path)
    assert len(archive) == SAMPLES
    for i in (0, 1, 150, SAMPLES - 1):
        sample = archive[i]
        assert sample.key == f"sample/{i:05d}"
        assert sample.ordinal == i
        decoded = shardpack.decode(sample)
        numpy.testing.assert_array_equal(decoded["npy"], array_of(i))
        assert decoded["txt"] == f"text of {i}"
        assert decoded["cls"] == i % 10
        raw = numpy.frombuffer(sample["raw"], dtype=numpy.int64)
        numpy.testing.assert_array_equal(raw, numpy.full(8, i))


def test_negative_indices_count_from_the_end(stored: Path) -> None:
    archive = shardpack.open(stored)
    assert archive[-1].ordinal == SAMPLES - 1
    assert archive[-SAMPLES].ordinal == 0
    with pytest.raises(IndexError):
        archive[SAMPLES]
    with pytest.raises(IndexError):
        archive[-SAMPLES - 1]


def test_get_by_key_and_default(archive_path: Path) -> None:
    archive = shardpack.open(archive_path)
    assert archive.get("sample/00042").ordinal == 42
    assert archive.get("missing") is None
    assert archive.get("missing", "default") == "default"


def test_get_many_returns_the_callers_order(archive_path: Path) -> None:
    archive = shardpack.open(archive_path)
    asked = [250, 3, -1, 3, 120, 0]
    got = archive.get_many(asked)
    assert [s.ordinal for s in got] == [250, 3, SAMPLES - 1, 3, 120, 0]
    assert [s.ordinal for s in archive.__getitems__([5, 4])] == [5, 4]


def test_iteration_and_scan_give_file_order(archive_path: Path) -> None:
    archive = shardpack.open(archive_path)
    assert [s.ordinal for s in archive] == list(range(SAMPLES))
    assert [s.key for s in archive.scan()] == [archive.key(i) for i in range(SAMPLES)]


def test_a_sample_is_a_read_only_mapping(stored: Path) -> None:
    sample = shardpack.open(stored)[9]
    assert list(sample) == ["npy", "raw", "txt", "cls"]
    assert len(sample) == 4 and "txt" in sample and "jpg" not in sample
    assert bytes(sample["txt"]) == b"text of 9"
    with pytest.raises(KeyError):
        sample["jpg"]
    view = sample["raw"]
    assert view.readonly
    with pytest.raises(TypeError):
        view[0] = 1


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(str(path)):
                start, end = line.split()[0].split("-")
                ranges.append((int(start, 16), int(end, 16)))
    return ranges


def test_stored_fields_are_views_into_the_mapped_shard(stored: Path) -> None:
    archive = shardpack.open(stored)
    sample = archive[17]
    assert sample.zero_copy
    array = numpy.frombuffer(sample["raw"], dtype=numpy.int64)
    address = array.__array_interface__["data"][0]
    shard = stored / f"shard-{sample.shard:06d}.shp"
    ranges = mapped_ranges(shard.resolve())
    assert any(start <= address < end for start, end in ranges), (hex(address), ranges)
    with pytest.warns(UserWarning, match="not writable"):
        tensor = torch.frombuffer(sample["raw"], dtype=torch.int64)
    assert tensor.data_ptr() == address
    assert tensor.tolist() == [17] * 8


def test_a_view_outlives_its_archive_and_sample(stored: Path) -> None:
    archive = shardpack.open(stored)
    view = archive[5]["txt"]
    del archive
    gc.collect()
    assert bytes(view) == b"text of 5"


def test_an_archive_pickles_by_reference(stored: Path) -> None:
    archive = shardpack.open(stored)
    again = pickle.loads(pickle.dumps(archive))
    assert again.root == archive.root and len(again) == len(archive)
    assert len(pickle.dumps(archive)) < 1000


def test_pread_source_reads_the_same(stored: Path) -> None:
    mapped = shardpack.open(stored)
    pread = shardpack.open(stored, source="pread")
    assert not pread[3].zero_copy
    assert bytes(pread[3]["npy"]) == bytes(mapped[3]["npy"])
