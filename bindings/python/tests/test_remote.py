"""Archives over the network from Python: HTTP through a loopback server that honours
``Range``, S3 through a local moto server, both started here. Every read must equal the
local one; bytes damaged on the server must be an error naming the URL and the offset,
never data; no message may show a credential."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch.utils.data
from torch.utils.data import DataLoader

import shardpack
from moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, s3, serving_s3
from range_server import files_of, serving
from shardpack import errors
from shardpack.torch import MapDataset


def same_samples(a: shardpack.Archive, b: shardpack.Archive) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.key == y.key
        assert {k: bytes(v) for k, v in x.items()} == {k: bytes(v) for k, v in y.items()}


def test_an_archive_over_http_reads_as_the_local_one(archive_path: Path) -> None:
    local = shardpack.open(archive_path)
    with serving(archive_path.parent) as server:
        remote = shardpack.open(server.url(archive_path.name))
        assert remote.root == local.root and remote.shard_count == local.shard_count > 2
        same_samples(remote, local)
        assert remote[-1].key == local[-1].key
        assert bytes(remote.get("sample/00123")["txt"]) == b"text of 123"
        wanted = [250, 3, 4, 120, 3, 299]
        got = remote.get_many(wanted)
        assert [s.ordinal for s in got] == wanted
        assert [bytes(s["raw"]) for s in got] == [bytes(local[i]["raw"]) for i in wanted]
        scanned = [(s.key, bytes(s.record())) for s in remote.scan()]
        assert scanned == [(s.key, bytes(s.record())) for s in local.scan()]
        assert shardpack.verify(server.url(archive_path.name)).valid
        assert remote.url == server.url(archive_path.name) and local.url is None
        again = pickle.loads(pickle.dumps(remote))
        assert again.url == remote.url and again.root == remote.root


class _Opened(torch.utils.data.Dataset[Any]):
    """The archive handle the parent opened and used, read as it is in forked workers."""

    def __init__(self, archive: shardpack.Archive) -> None:
        self.archive = archive

    def __len__(self) -> int:
        return len(self.archive)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.archive[index]
        return {"ordinal": sample.ordinal, "txt": bytes(sample["txt"])}


def test_forked_dataloader_workers_read_a_url_the_parent_opened(compressed: Path) -> None:
    # The parent's requests built the remote runtime and its connections; the workers,
    # forked from it, must build their own rather than wait on threads they do not have.
    with serving(compressed.parent) as server:
        url = server.url(compressed.name)
        remote = shardpack.open(url)
        assert bytes(remote[7]["txt"]) == b"text of 7"
        for dataset in (_Opened(remote), MapDataset(url, decode=False)):
            seen = forked_epoch(dataset)
            assert sorted(seen) == list(range(len(remote)))
            assert all(txt == f"text of {i}".encode() for i, txt in seen.items())


def forked_epoch(dataset: torch.utils.data.Dataset[Any]) -> dict[int, bytes]:
    """One shuffled epoch through two forked DataLoader workers: each sample's text by
    ordinal."""
    loader = DataLoader(
        dataset,
        batch_size=25,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=multiprocessing.get_context("fork"),
        timeout=60,
    )
    seen: dict[int, bytes] = {}
    for batch in loader:
        ordinals = batch["ordinal" if "ordinal" in batch else "__ordinal__"]
        for ordinal, txt in zip(ordinals, batch["txt"], strict=True):
            seen[int(ordinal)] = txt
    return seen


def shard_gets(server: Any) -> int:
    """GETs of shard files answered so far (the manifest's apart)."""
    with server.lock:
        return sum(1 for path, _ in server.gets if path.endswith(".shp"))


def test_a_cache_dir_makes_the_second_epoch_request_nothing(
    compressed: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with serving(compressed.parent) as server:
        url = server.url(compressed.name)
        first = shardpack.open(url, cache_dir=cache, cache_bytes=64 << 20)
        assert first.cache_dir is not None and Path(first.cache_dir) == cache
        assert first.cache_bytes == 64 << 20
        epoch = [(s.key, bytes(s.record())) for s in first.scan()]
        assert any(cache.iterdir())
        again = shardpack.open(url, cache_dir=cache, cache_bytes=64 << 20)
        before = shard_gets(server)
        assert [(s.key, bytes(s.record())) for s in again.scan()] == epoch
        assert [bytes(s["txt"]) for s in again.get_many([9, 2, 40])] == [
            b"text of 9",
            b"text of 2",
            b"text of 40",
        ]
        assert shard_gets(server) == before
        unpickled = pickle.loads(pickle.dumps(again))
        assert unpickled.cache_dir == again.cache_dir
        assert unpickled.cache_bytes == again.cache_bytes
        with pytest.raises(ValueError, match="cache_dir"):
            shardpack.open(url, cache_bytes=1 << 20)
        with pytest.raises(ValueError, match="cache_dir"):
            shardpack.verify(url, cache_bytes=1 << 20)
        assert shardpack.verify(url, cache_dir=cache).valid


def test_forked_dataloader_workers_share_the_cache_dir(compressed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with serving(compressed.parent) as server:
        url = server.url(compressed.name)
        dataset = MapDataset(url, decode=False, cache_dir=cache, cache_bytes=64 << 20)
        first = forked_epoch(dataset)
        assert sorted(first) == list(range(len(dataset)))
        assert all(txt == f"text of {i}".encode() for i, txt in first.items())
        before = shard_gets(server)
        assert forked_epoch(dataset) == first
        assert shard_gets(server) == before, "the workers read the second epoch from the cache"
        # The dataset pickles (spawned workers) with its cache.
        assert pickle.loads(pickle.dumps(dataset))._reader.cache_dir == os.fspath(cache)


CHILD_READS_AFTER_PARENT = """
import os, sys, shardpack
archive = shardpack.open(sys.argv[1])
assert bytes(archive[0]["txt"]) == b"text of 0"
pid = os.fork()
if pid == 0:
    ok = [bytes(archive[i]["txt"]) for i in (1, 200)] == [b"text of 1", b"text of 200"]
    ok = ok and len(archive.get_many([5, 6, 290])) == 3
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_reads_with_the_handle_of_its_parent(stored: Path) -> None:
    with serving(stored.parent) as server:
        done = subprocess.run(
            [sys.executable, "-c", CHILD_READS_AFTER_PARENT, server.url(stored.name)],
            timeout=60,
        )
    assert done.returncode == 0


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on loopback, and the AWS_* variables pointing at it."""
    with serving_s3() as endpoint:
        yield endpoint


def no_secret_in(error: BaseException) -> None:
    shown = str(error) + repr(vars(error))
    assert SECRET_ACCESS_KEY not in shown and ACCESS_KEY_ID not in shown, shown


def test_push_open_verify_and_fetch_over_s3(
    s3_endpoint: str, compressed: Path, tmp_path: Path
) -> None:
    s3(s3_endpoint).create_bucket(Bucket="bucket-a")
    url = "s3://bucket-a/datasets/text"
    shards = sum(p.stat().st_size for p in compressed.glob("shard-*.shp"))
    assert shardpack.push(compressed, url) == shards
    listing = s3(s3_endpoint).list_objects_v2(Bucket="bucket-a", Prefix="datasets/text/")
    names = sorted(o["Key"].removeprefix("datasets/text/") for o in listing["Contents"])
    assert names == sorted(os.listdir(compressed))
    local = shardpack.open(compressed)
    remote = shardpack.open(url)
    assert remote.root == local.root
    same_samples(remote, local)
    assert [s.key for s in remote.get_many([299, 0, 150])] == [local[i].key for i in (299, 0, 150)]
    report = shardpack.verify(url)
    assert report.valid and report.complete and report.shards == local.shard_count
    fetched = shardpack.fetch(url, tmp_path / "copy", expect_root=local.root)
    assert fetched["root"] == local.root and fetched["bytes_fetched"] == fetched["bytes"]
    assert files_of(tmp_path / "copy") == files_of(compressed)
    assert shardpack.verify(tmp_path / "copy", expect_root=local.root).valid
    with pytest.raises(errors.CorruptError) as wrong:
        shardpack.fetch(url, tmp_path / "other", expect_root="0" * 64)
    assert not (tmp_path / "other" / "manifest.json").exists()
    no_secret_in(wrong.value)


def test_a_missing_object_on_s3_names_its_url_and_no_secret(s3_endpoint: str) -> None:
    s3(s3_endpoint).create_bucket(Bucket="bucket-b")
    with pytest.raises(errors.ShardpackError) as missing:
        shardpack.open("s3://bucket-b/nothing/here")
    assert "s3://bucket-b/nothing/here" in str(missing.value)
    no_secret_in(missing.value)


def test_a_flipped_byte_on_s3_is_an_error_naming_the_url_and_offset(
    s3_endpoint: str, stored: Path, tmp_path: Path
) -> None:
    s3(s3_endpoint).create_bucket(Bucket="bucket-c")
    url = "s3://bucket-c/flipped"
    shardpack.push(stored, url)
    local = shardpack.open(stored)
    ordinal = local.shard_samples[0] + 3
    assert local[ordinal].shard == 1
    shard = bytearray((stored / "shard-000001.shp").read_bytes())
    at = shard.find(f"text of {ordinal}".encode())
    assert at > 0
    shard[at] ^= 0x20
    s3(s3_endpoint).put_object(Bucket="bucket-c", Key="flipped/shard-000001.shp", Body=bytes(shard))

    remote = shardpack.open(url)
    with pytest.raises(errors.CorruptError) as caught:
        remote[ordinal]
    assert caught.value.file == f"{url}/shard-000001.shp"
    assert caught.value.offset is not None and caught.value.offset <= at
    assert f"{url}/shard-000001.shp" in str(caught.value)
    no_secret_in(caught.value)
    # The samples around it still read, as the server holds them.
    for i in (ordinal - 1, ordinal + 1, 0):
        assert bytes(remote[i].record()) == bytes(local[i].record())
    report = shardpack.verify(url)
    assert not report.valid
    assert any(f.file == f"{url}/shard-000001.shp" for f in report.findings), report.findings
    with pytest.raises(errors.CorruptError) as refused:
        shardpack.fetch(url, tmp_path / "copy")
    assert f"{url}/shard-000001.shp" in str(refused.value)
    assert not (tmp_path / "copy" / "manifest.json").exists()
    assert not (tmp_path / "copy" / "shard-000001.shp").exists()
    no_secret_in(refused.value)


def shardpack_cli() -> str:
    """The CLI binary: `./test` builds it (`cargo test --workspace`) and names it in
    SHARDPACK_CLI. Missing in CI, the test fails; elsewhere it is skipped, saying why."""
    path = os.environ.get("SHARDPACK_CLI", "")
    if path and os.access(path, os.X_OK):
        return path
    message = (
        f"no shardpack binary at SHARDPACK_CLI={path!r}: build it with "
        "`cargo build -p shardpack-cli` and name it there (./test does both)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def test_the_cli_lists_verifies_and_fetches_s3_at_the_endpoint_it_is_given(
    s3_endpoint: str, compressed: Path, tmp_path: Path
) -> None:
    binary = shardpack_cli()
    s3(s3_endpoint).create_bucket(Bucket="bucket-cli")
    url = "s3://bucket-cli/datasets/text"
    shardpack.push(compressed, url)
    local = shardpack.open(compressed)
    # Only the flag says where the store is: nothing in the environment does.
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    listed = cli("--endpoint", s3_endpoint, "ls", url, "--long")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == cli("ls", str(compressed), "--long").stdout
    # A global flag: after the subcommand too.
    verified = cli("verify", url, "--endpoint", s3_endpoint)
    assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified
    copy = tmp_path / "copy"
    fetched = cli(
        "--endpoint", s3_endpoint, "fetch", url, "-o", str(copy), "--expect-root", local.root
    )
    assert fetched.returncode == 0, fetched.stderr
    assert files_of(copy) == files_of(compressed)
    assert shardpack.verify(copy, expect_root=local.root).valid
    for run in (listed, verified, fetched):
        assert SECRET_ACCESS_KEY not in run.stdout + run.stderr
