"""Writing: the Writer, pack, write_arrow and parity."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy
import pyarrow
import pytest

import shardpack
from shardpack import errors


def test_fields_of_every_kind_round_trip(tmp_path: Path) -> None:
    array = numpy.arange(12, dtype=numpy.int16).reshape(3, 4)
    with shardpack.Writer(tmp_path / "a") as writer:
        writer.write(
            "k",
            {
                "bytes": b"\x00\x01",
                "str": "é",
                "view": memoryview(b"mv"),
                "bytearray": bytearray(b"ba"),
                "array": array,
                "npy": array,
            },
        )
    sample = shardpack.open(tmp_path / "a")[0]
    assert bytes(sample["bytes"]) == b"\x00\x01"
    assert bytes(sample["str"]) == "é".encode()
    assert bytes(sample["view"]) == b"mv" and bytes(sample["bytearray"]) == b"ba"
    assert bytes(sample["array"]) == array.tobytes()
    numpy.testing.assert_array_equal(shardpack.decode(sample)["npy"], array)


def test_bad_keys_and_options_are_refused(tmp_path: Path) -> None:
    with shardpack.Writer(tmp_path / "a") as writer:
        writer.write("k", {"txt": "1"})
        with pytest.raises(errors.InvalidInputError):
            writer.write("k", {"txt": "again"})
    with pytest.raises(ValueError):
        shardpack.Writer(tmp_path / "b", compression="lz4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        shardpack.Writer(tmp_path / "c", compression="none", level=3)
    with pytest.raises(ValueError):
        shardpack.Writer(tmp_path / "d", parity=float("nan"))
    with pytest.raises(ValueError):
        shardpack.Writer(tmp_path / "e", profile="floppy")


def test_pack_groups_a_folder_the_webdataset_way(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "0001.jpg").write_bytes(b"jpeg")
    (folder / "train" / "0001.json").write_text('{"a": 1}')
    (folder / "train" / "0002.txt").write_text("two")
    report = shardpack.pack(folder, tmp_path / "out", compression="none")
    assert report["manifest"]["totals"]["samples"] == 2
    archive = shardpack.open(tmp_path / "out")
    first = archive.get("train/0001")
    assert sorted(first) == ["jpg", "json"]
    assert shardpack.decode(first, images=False)["json"] == {"a": 1}


def test_write_arrow_stores_a_row_per_sample(tmp_path: Path) -> None:
    table = pyarrow.table(
        {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "n": [1, 2, 3], "b": [b"1", b"2", b"3"]}
    )
    manifest = shardpack.write_arrow(table, tmp_path / "t", key="id")
    assert manifest["totals"]["samples"] == 3
    archive = shardpack.open(tmp_path / "t")
    sample = archive.get("b")
    assert bytes(sample["text"]) == b"y" and json.loads(bytes(sample["n"])) == 2
    assert bytes(sample["b"]) == b"2"
    keyed_by_row = shardpack.write_arrow(table.to_batches(), tmp_path / "u")
    assert keyed_by_row["totals"]["samples"] == 3
    assert shardpack.open(tmp_path / "u").key(0) == "000000000000"


def test_parity_makes_an_archive_recoverable(tmp_path: Path) -> None:
    with shardpack.Writer(tmp_path / "p", parity=10) as writer:
        for i in range(20):
            writer.write(f"{i:03d}", {"txt": "data" * i})
    assert (tmp_path / "p" / "parity.spp").exists()
    report = shardpack.verify(tmp_path / "p")
    assert report.valid and report.recoverable


def test_generations_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "g"
    with shardpack.Writer(path, shard_size=4096) as writer:
        for i in range(10):
            writer.write(f"a{i}", {"txt": f"first {i}"})
    with shardpack.Writer(path, append=True) as writer:
        for i in range(5):
            writer.write(f"b{i}", {"txt": f"second {i}"})
    with pytest.raises(RuntimeError), shardpack.Writer(path, append=True) as writer:
        writer.write("c0", {"txt": "never"})
        raise RuntimeError("stop")
    assert len(shardpack.open(path)) == 15
    first = shardpack.open(path, generation=1)
    assert first.generation == 1 and len(first) == 10
    assert shardpack.open(path).generation == 2
    assert pickle.loads(pickle.dumps(first)).generation == 1
    report = shardpack.verify(path)
    assert report.valid and report.generations == 2
    with pytest.raises(errors.InvalidInputError), shardpack.Writer(path, append=True) as w:
        w.write("a3", {"txt": "again"})
    assert shardpack.gc(path)["leftovers"] == [] or shardpack.gc(path, delete=True)
    assert shardpack.verify(path).leftovers == []


def test_merge_joins_archives_in_order(tmp_path: Path) -> None:
    for name, start in (("a", 0), ("b", 100)):
        with shardpack.Writer(tmp_path / name) as writer:
            for i in range(start, start + 20):
                writer.write(f"k{i:04d}", {"txt": f"{name} {i}"})
    report = shardpack.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "c")
    merged = shardpack.open(tmp_path / "c")
    assert len(merged) == 40 and report["manifest"]["root"] == merged.root
    assert bytes(merged[25]["txt"]) == b"b 105"
    assert shardpack.verify(tmp_path / "c").valid
