"""Faults in transit (issue #14): a proxy between shardpack and a loopback server (moto's S3,
the range server) answers shard GETs with a 503, a delay, a body cut short or a flipped
byte. Each is retried, or reported with its URL and an offset inside the bytes asked; no
read returns other bytes than the archive's; a flipped byte during `fetch` is fetched again
and the copy verifies against the root; a killed fetch keeps what it finished.

Every call that could wait on the network runs under a deadline (`within`), so that a
stall fails its test instead of hanging the run; a stall with the GIL held, which no Python
thread can time, ends the process with every thread's traceback (`faulthandler`)."""

from __future__ import annotations

import faulthandler
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

import shardpack
from fault_proxy import FaultProxy, proxying
from moto_server import ACCESS_KEY_ID, SECRET_ACCESS_KEY, s3, serving_s3
from range_server import files_of, serving
from shardpack import errors

T = TypeVar("T")

# Far longer than a call through the proxy takes (a few seconds with every fault), far
# shorter than the client's retry limit (3 minutes).
DEADLINE_SECS = 30.0


def within(call: Callable[[], T], secs: float = DEADLINE_SECS) -> T:
    """`call()`, or a failed test if it has not returned after `secs` (the thread is left
    behind, as a daemon: a stalled request cannot be cancelled from here)."""
    done: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            done.append(call())
        except BaseException as e:
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(secs)
    if thread.is_alive():
        pytest.fail(f"no answer after {secs} s")
    if raised:
        raise raised[0]
    return done[0]


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(4 * DEADLINE_SECS, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@dataclass
class Through:
    """An archive served by `upstream`, read at `url` through `proxy`."""

    upstream: str
    url: str
    proxy: FaultProxy
    local: shardpack.Archive


@pytest.fixture(scope="module")
def s3_archive(stored: Path) -> Iterator[tuple[str, str]]:
    """moto's S3 server holding `stored` at s3://faults/stored: (endpoint, URL)."""
    with serving_s3() as endpoint:
        s3(endpoint).create_bucket(Bucket="faults")
        url = "s3://faults/stored"
        within(lambda: shardpack.push(stored, url))
        yield endpoint, url


@pytest.fixture(params=["s3", "http"])
def through(
    request: pytest.FixtureRequest, stored: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Through]:
    local = shardpack.open(stored)
    if request.param == "s3":
        endpoint, url = request.getfixturevalue("s3_archive")
        with proxying(endpoint) as proxy:
            # Every S3 request of the library goes to the proxy; the bucket stays the same.
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
            yield Through("s3", url, proxy, local)
    else:
        with serving(stored.parent) as server, proxying(server.url("")) as proxy:
            yield Through("http", f"{proxy.url}/{stored.name}", proxy, local)


def first_ordinals(archive: shardpack.Archive) -> list[int]:
    firsts, at = [], 0
    for count in archive.shard_samples:
        firsts.append(at)
        at += count
    return firsts


def warmed(t: Through) -> shardpack.Archive:
    """The archive opened through the proxy with every shard's index in hand, so that a
    random read after it is one GET: the record's."""
    remote = within(lambda: shardpack.open(t.url))
    for ordinal in first_ordinals(t.local):
        got = within(partial(remote.__getitem__, ordinal))
        assert records([got]) == records([t.local[ordinal]])
    return remote


def records(samples: list[shardpack.Sample]) -> list[tuple[str, bytes]]:
    return [(s.key, bytes(s.record())) for s in samples]


def caught_in_flight(t: Through, error: errors.ShardpackError) -> None:
    """`error` names the shard's URL and an offset inside the bytes the flipped GET asked."""
    [flipped] = t.proxy.spent
    shard = flipped.path.rsplit("/", 1)[-1]
    assert error.file == f"{t.url}/{shard}", (error, flipped)
    assert f"{t.url}/{shard}" in str(error)
    assert error.offset is not None and flipped.first <= error.offset <= flipped.last, (
        error,
        flipped,
    )
    shown = str(error) + repr(vars(error))
    assert SECRET_ACCESS_KEY not in shown and ACCESS_KEY_ID not in shown, shown


def test_a_503_a_delay_and_a_cut_body_are_retried_in_reads_batches_and_scans(
    through: Through,
) -> None:
    t = through
    remote = warmed(t)
    wanted = [5, 150, 299, 0, 77, 201, 123, 42]
    t.proxy.queue("503", "delay", "cut", "503", "cut")
    got = [within(partial(remote.__getitem__, i)) for i in wanted]
    assert records(got) == records([t.local[i] for i in wanted])
    assert t.proxy.left() == [] and t.proxy.spent_faults() == ["503", "delay", "cut", "503", "cut"]

    t.proxy.queue("cut", "503", "delay")
    batch = [250, 3, 4, 120, 3, 299, 180, 181, 182]
    assert records(within(lambda: remote.get_many(batch))) == records([t.local[i] for i in batch])
    assert t.proxy.left() == []

    t.proxy.queue("503", "cut", "delay", "cut")
    scanned = within(lambda: records(list(shardpack.open(t.url).scan())))
    assert scanned == records(list(t.local.scan()))
    assert t.proxy.left() == []


def test_a_byte_flipped_in_transit_is_an_error_naming_the_url_and_offset_never_data(
    through: Through,
) -> None:
    t = through
    remote = warmed(t)
    ordinal = first_ordinals(t.local)[1] + 3
    t.proxy.queue("flip")
    with pytest.raises(errors.CorruptError) as read:
        within(lambda: remote[ordinal])
    caught_in_flight(t, read.value)
    # A random read keeps nothing: read again, it is fetched again, and right.
    assert records([within(lambda: remote[ordinal])]) == records([t.local[ordinal]])

    # A batch inside one shard is one GET of its records, side by side.
    batch = list(range(ordinal + 1, ordinal + 9))
    assert {t.local[i].shard for i in batch} == {1}
    t.proxy.queue("flip")
    with pytest.raises(errors.CorruptError) as many:
        within(lambda: remote.get_many(batch))
    caught_in_flight(t, many.value)

    # A scan stops at the damage; every sample before it is the archive's.
    t.proxy.queue("flip")
    seen: list[tuple[str, bytes]] = []

    def scan() -> None:
        samples = shardpack.open(t.url).scan()
        try:
            for s in samples:
                seen.append((s.key, bytes(s.record())))
        finally:
            # Dropped here, under the deadline: its reader thread is still fetching.
            del samples

    with pytest.raises(errors.CorruptError) as scanned:
        within(scan)
    caught_in_flight(t, scanned.value)
    assert seen == records(list(t.local.scan()))[: len(seen)]


def test_fetch_through_faults_re_fetches_a_flipped_shard_and_the_copy_verifies(
    through: Through, stored: Path, tmp_path: Path
) -> None:
    t = through
    t.proxy.queue("503", "flip", "cut", "delay")
    copy = tmp_path / "copy"
    fetched = within(lambda: shardpack.fetch(t.url, copy, expect_root=t.local.root))
    assert t.proxy.left() == [], t.proxy.spent
    assert fetched["refetched"] >= 1, (fetched, t.proxy.spent)
    assert files_of(copy) == files_of(stored)
    assert within(lambda: shardpack.verify(copy, expect_root=t.local.root)).valid


FETCH_IN_A_CHILD = """
import sys, shardpack
shardpack.fetch(sys.argv[1], sys.argv[2], parallel=1)
"""


def test_a_fetch_killed_in_transit_resumes_and_ends_verified(
    through: Through, stored: Path, tmp_path: Path
) -> None:
    t = through
    copy = tmp_path / "copy"
    # The first shard arrives; the second is held until the child is killed.
    t.proxy.queue("none", "hold")
    child = subprocess.Popen(
        [sys.executable, "-c", FETCH_IN_A_CHILD, t.url, str(copy)], env=dict(os.environ)
    )
    try:
        assert t.proxy.held.wait(DEADLINE_SECS), "the child never asked for the second shard"
        child.kill()
    finally:
        child.kill()
        child.wait(timeout=DEADLINE_SECS)
    t.proxy.release()
    assert not (copy / "manifest.json").exists()
    assert (copy / "shard-000000.shp").exists()

    fetched = within(lambda: shardpack.fetch(t.url, copy, expect_root=t.local.root))
    assert fetched["already_there"] >= 1 and fetched["bytes_fetched"] < fetched["bytes"], fetched
    assert files_of(copy) == files_of(stored)
    assert within(lambda: shardpack.verify(copy, expect_root=t.local.root)).valid
