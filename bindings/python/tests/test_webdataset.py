"""WebDataset tars in and out, checked against the real ``webdataset`` package: tars its
``TarWriter`` and ``ShardWriter`` write import sample for sample, and the tars ``export_tar``
writes read back through ``webdataset.WebDataset`` with the same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import webdataset

import shardpack
from shardpack import errors

Samples = list[tuple[str, dict[str, bytes]]]


def make_samples(n: int) -> Samples:
    out: Samples = []
    for i in range(n):
        key = f"train/{i:05d}"
        if i == 3:
            key = "deep/" + "d" * 120 + f"/{i:05d}"  # a name over 100 bytes
        if i == 4:
            key = f"ünïcödé/{i:05d}"
        fields = {
            "jpg": bytes([0xFF, 0xD8]) + bytes((i * 7 + j) % 256 for j in range(100 + i * 13)),
            "json": json.dumps({"label": i % 10}).encode(),
            "cls": str(i % 10).encode(),
        }
        if i % 5 == 0:
            fields["seg.png"] = b"\x89PNG" + bytes(i)
        out.append((key, fields))
    return out


def write_tar(path: Path, samples: Samples, compress: bool = False) -> None:
    with webdataset.TarWriter(str(path), compress=compress) as sink:
        for key, fields in samples:
            sink.write({"__key__": key, **fields})


def archive_samples(path: Path) -> Samples:
    return [
        (sample.key, {name: bytes(view) for name, view in sample.items()})
        for sample in shardpack.open(path)
    ]


def webdataset_samples(urls: list[str]) -> Samples:
    out: Samples = []
    for sample in webdataset.WebDataset(urls, shardshuffle=False, empty_check=False):
        fields: dict[str, Any] = {k: v for k, v in sample.items() if not k.startswith("__")}
        out.append((sample["__key__"], fields))
    return out


def test_tarwriter_tars_import_sample_for_sample(tmp_path: Path) -> None:
    samples = make_samples(40)
    with webdataset.ShardWriter(str(tmp_path / "shard-%06d.tar"), maxcount=15) as sink:
        for key, fields in samples:
            sink.write({"__key__": key, **fields})
    assert sorted(p.name for p in tmp_path.glob("shard-*.tar")) == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    report = shardpack.import_tar(tmp_path / "shard-{000000..000002}.tar", tmp_path / "a")
    assert report["manifest"]["totals"]["samples"] == 40
    assert [t["samples"] for t in report["tars"]] == [15, 15, 10]
    assert archive_samples(tmp_path / "a") == samples
    # What webdataset itself reads from the same tars is the same too.
    urls = [str(tmp_path / f"shard-{i:06d}.tar") for i in range(3)]
    assert webdataset_samples(urls) == samples


def test_gzip_tars_import_the_same(tmp_path: Path) -> None:
    samples = make_samples(12)
    write_tar(tmp_path / "plain.tar", samples)
    write_tar(tmp_path / "packed.tar.gz", samples, compress=True)
    shardpack.import_tar(tmp_path / "plain.tar", tmp_path / "a", compression="none")
    shardpack.import_tar([tmp_path / "packed.tar.gz"], tmp_path / "b", profile="hdd")
    assert archive_samples(tmp_path / "a") == archive_samples(tmp_path / "b") == samples


def test_exported_tars_read_unmodified_in_webdataset(tmp_path: Path) -> None:
    samples = make_samples(30)
    write_tar(tmp_path / "in.tar", samples)
    shardpack.import_tar(tmp_path / "in.tar", tmp_path / "a")
    report = shardpack.export_tar(tmp_path / "a", tmp_path / "out-%06d.tar", shard_size=16 << 10)
    urls = [t["path"] for t in report["tars"]]
    assert len(urls) > 1 and report["samples"] == 30
    assert all(t["bytes"] <= 16 << 10 for t in report["tars"])
    assert webdataset_samples(urls) == archive_samples(tmp_path / "a") == samples
    # The same archive exports to the same bytes.
    again = shardpack.export_tar(tmp_path / "a", tmp_path / "again-%06d.tar", shard_size=16 << 10)
    for first, second in zip(report["tars"], again["tars"], strict=True):
        assert Path(first["path"]).read_bytes() == Path(second["path"]).read_bytes()
    # And an export imports back to the same samples.
    shardpack.import_tar([t["path"] for t in report["tars"]], tmp_path / "b")
    assert archive_samples(tmp_path / "b") == samples


def test_damaged_tars_raise_tar_error_and_leave_nothing(tmp_path: Path) -> None:
    write_tar(tmp_path / "in.tar", make_samples(5))
    data = (tmp_path / "in.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 3])
    with pytest.raises(errors.TarError) as caught:
        shardpack.import_tar(tmp_path / "cut.tar", tmp_path / "a")
    assert caught.value.problem == "truncated"
    assert caught.value.file == str(tmp_path / "cut.tar")
    assert caught.value.offset is not None and caught.value.offset > 0
    assert caught.value.member is not None or caught.value.after is not None
    assert not (tmp_path / "a").exists()
    # A key whose members are apart is refused, naming the member.
    with webdataset.TarWriter(str(tmp_path / "apart.tar")) as sink:
        sink.write({"__key__": "a", "jpg": b"1"})
        sink.write({"__key__": "b", "jpg": b"2"})
        sink.write({"__key__": "a", "txt": b"3"})
    with pytest.raises(errors.TarError) as caught:
        shardpack.import_tar(tmp_path / "apart.tar", tmp_path / "a")
    assert caught.value.problem == "key_reused" and caught.value.member == "a.txt"
    assert not (tmp_path / "a").exists()
    with pytest.raises(errors.InvalidInputError, match="one number"):
        shardpack.export_tar(tmp_path, tmp_path / "no-number.tar")
