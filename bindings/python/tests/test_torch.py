"""PyTorch: DataLoader workers under every start method, exact resumption with other
numbers of ranks and workers, errors from workers, and torch.distributed."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed
import torch.multiprocessing
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

import shardpack
from conftest import SAMPLES
from shardpack import errors
from shardpack.torch import MapDataset, StreamingDataLoader, StreamingDataset


def ordinals(batches: Iterator[Any]) -> list[int]:
    return [int(o) for batch in batches for o in batch["__ordinal__"]]


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_two_workers_read_every_sample_once(method: str, compressed: Path) -> None:
    # The parent reads first, so that forked workers inherit an archive in use.
    assert shardpack.open(compressed)[0].key
    context = multiprocessing.get_context(method)
    maps = DataLoader(
        MapDataset(compressed, decode=False),
        batch_size=32,
        shuffle=True,
        num_workers=2,
        multiprocessing_context=context,
        timeout=120,
    )
    assert sorted(ordinals(iter(maps))) == list(range(SAMPLES))
    streaming = DataLoader(
        StreamingDataset(compressed, batch_size=32, shuffle=True, decode=False),
        batch_size=32,
        num_workers=2,
        multiprocessing_context=context,
        timeout=120,
    )
    got = ordinals(iter(streaming))
    assert sorted(got) == list(range(SAMPLES))
    assert got != list(range(SAMPLES))


def test_the_same_seed_gives_the_same_order_and_another_epoch_another(stored: Path) -> None:
    def epoch(e: int, seed: int = 5) -> list[int]:
        dataset = StreamingDataset(stored, batch_size=16, shuffle=True, shuffle_seed=seed)
        dataset.set_epoch(e)
        return [item["__ordinal__"] for item in dataset]

    assert epoch(0) == epoch(0)
    assert epoch(0) != epoch(1)
    assert epoch(0) != epoch(0, seed=6)
    assert epoch(0) == shardpack.epoch_order(shardpack.open(stored).shard_samples, seed=5, epoch=0)


def lockstep(
    path: Path, world: int, workers: int, steps: int | None, state: dict[str, Any] | None
) -> tuple[list[int], dict[str, Any]]:
    """Every rank's loader takes one batch per step, as DDP does; returns what they
    consumed and rank 0's state after `steps` steps (or at the end)."""
    loaders = []
    for rank in range(world):
        dataset = StreamingDataset(
            path, batch_size=8, shuffle=True, rank=rank, world_size=world, decode=False
        )
        loader = StreamingDataLoader(dataset, num_workers=workers, timeout=120 if workers else 0)
        if state is not None:
            loader.load_state_dict(state)
        loaders.append(loader)
    iterators = [iter(loader) for loader in loaders]
    consumed: list[int] = []
    step = 0
    while steps is None or step < steps:
        progressed = False
        for it in iterators:
            batch = next(it, None)
            if batch is not None:
                progressed = True
                consumed.extend(int(o) for o in batch["__ordinal__"])
        if not progressed:
            break
        step += 1
    return consumed, loaders[0].state_dict()


def test_resuming_with_other_world_sizes_and_workers_repeats_and_skips_nothing(
    compressed: Path,
) -> None:
    first, state = lockstep(compressed, world=1, workers=1, steps=7, state=None)
    assert state["position"] == 7 * 8
    second, state = lockstep(compressed, world=2, workers=2, steps=5, state=state)
    assert state["position"] == 7 * 8 + 5 * 16
    third, state = lockstep(compressed, world=3, workers=0, steps=None, state=state)
    everything = first + second + third
    assert sorted(everything) == list(range(SAMPLES))
    uninterrupted, _ = lockstep(compressed, world=1, workers=0, steps=None, state=None)
    assert everything == uninterrupted


def test_a_stateful_dataloader_resumes_mid_epoch_exactly(stored: Path) -> None:
    def loader() -> StatefulDataLoader:
        dataset = StreamingDataset(stored, batch_size=10, shuffle=True, decode=False)
        return StatefulDataLoader(dataset, batch_size=10, num_workers=2, timeout=120)

    first = loader()
    it = iter(first)
    before = [int(o) for _ in range(9) for o in next(it)["__ordinal__"]]
    state = first.state_dict()
    del it, first
    second = loader()
    second.load_state_dict(state)
    after = ordinals(iter(second))
    assert sorted(before + after) == list(range(SAMPLES))


def test_a_damaged_archive_raises_in_the_main_process_instead_of_hanging(
    tmp_path: Path, stored: Path
) -> None:
    target = tmp_path / "damaged"
    shutil.copytree(stored, target)
    shard = target / "shard-000000.shp"
    data = bytearray(shard.read_bytes())
    for offset in range(4096, len(data) // 2, 512):
        data[offset] ^= 0x55
    shard.write_bytes(bytes(data))
    loader = DataLoader(MapDataset(target, decode=False), batch_size=16, num_workers=2, timeout=60)
    with pytest.raises(errors.CorruptError, match=r"shard-000000\.shp"):
        ordinals(iter(loader))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def distributed_rank(rank: int, world: int, port: int, path: str, out: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    try:
        dataset = StreamingDataset(path, batch_size=8, shuffle=True, decode=False)
        assert dataset.rank_and_world() == (rank, world)
        loader = StreamingDataLoader(dataset, num_workers=0)
        got = ordinals(iter(loader))
        Path(out, f"rank{rank}").write_text(" ".join(map(str, got)))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def test_two_distributed_ranks_read_their_parts(tmp_path: Path, stored: Path) -> None:
    spawn: Any = torch.multiprocessing.spawn  # type: ignore[attr-defined]
    spawn(
        distributed_rank,
        args=(2, free_port(), str(stored), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    parts = [[int(x) for x in (tmp_path / f"rank{r}").read_text().split()] for r in range(2)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(SAMPLES))
    assert len(parts[0]) == len(StreamingDataset(stored, batch_size=8, rank=0, world_size=2))
    assert os.environ.get("RANK") is None


@pytest.mark.parametrize("persistent", [False, True])
def test_each_epoch_reads_everything_in_a_new_order(stored: Path, persistent: bool) -> None:
    dataset = StreamingDataset(stored, batch_size=16, shuffle=True, decode=False)
    loader = StreamingDataLoader(dataset, num_workers=2, persistent_workers=persistent, timeout=120)
    epochs = [ordinals(iter(loader)) for _ in range(3)]
    for got in epochs:
        assert sorted(got) == list(range(SAMPLES))
    assert epochs[0] != epochs[1] != epochs[2]
    assert dataset.epoch == 3


def test_a_state_taken_at_the_end_of_an_epoch_resumes_with_the_next(stored: Path) -> None:
    dataset = StreamingDataset(stored, batch_size=16, shuffle=True, decode=False)
    loader = StreamingDataLoader(dataset)
    first = ordinals(iter(loader))
    state = loader.state_dict()
    assert (state["epoch"], state["position"]) == (1, 0)
    resumed = StreamingDataLoader(
        StreamingDataset(stored, batch_size=16, shuffle=True, decode=False)
    )
    resumed.load_state_dict(state)
    second = ordinals(iter(resumed))
    assert sorted(second) == list(range(SAMPLES)) and second != first
    dataset.set_epoch(1)
    assert second == ordinals(iter(StreamingDataLoader(dataset)))


def test_a_map_dataset_pickles_without_its_samples(stored: Path) -> None:
    import pickle

    dataset = MapDataset(stored)
    assert len(pickle.dumps(dataset)) < 2000
    again = pickle.loads(pickle.dumps(dataset))
    assert again[3]["__key__"] == "sample/00003"


@pytest.mark.parametrize(("workers", "shared"), [(0, False), (2, False), (2, True)])
def test_gathered_batches_hold_the_samples_the_dataset_yields(
    tmp_path: Path, workers: int, shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches are pickled, large ones pass in shared memory (forked workers inherit
    # the threshold).
    import shardpack.torch

    monkeypatch.setattr(shardpack.torch, "_SHARED_BYTES", 0 if shared else 1 << 62)
    path = tmp_path / "mixed"
    with shardpack.Writer(path) as writer:
        for i in range(100):
            fields = {"txt": f"text {i}".encode() * (i % 7), "bin": bytes([i]) * (i * 13 % 300)}
            if i % 5 == 0:
                del fields["bin"]  # a sample without a field; some fields are empty
            writer.write(f"s/{i:03}", fields)
    options: dict[str, Any] = {"batch_size": 16, "shuffle": True, "decode": False}
    expected = [
        (item["__key__"], item["__ordinal__"], item["txt"], item.get("bin"))
        for item in StreamingDataset(path, **options)
    ]
    loader = StreamingDataLoader(
        StreamingDataset(path, **options), num_workers=workers, timeout=120 if workers else 0
    )
    got = []
    for batch in loader:
        assert set(batch) == {"__key__", "__ordinal__", "txt", "bin"}
        assert len(batch["__key__"]) <= 16
        for key, ordinal, txt, binary in zip(
            batch["__key__"], batch["__ordinal__"], batch["txt"], batch["bin"], strict=True
        ):
            assert isinstance(txt, memoryview)
            got.append((key, int(ordinal), bytes(txt), None if binary is None else bytes(binary)))
    if workers == 0:
        assert got == expected
    assert sorted(got) == sorted(expected)
    assert len(got) == 100


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="Linux only")
def test_the_workers_hand_on_batches_through_a_widened_pipe(stored: Path) -> None:
    import fcntl

    loader = StreamingDataLoader(
        StreamingDataset(stored, batch_size=8, decode=False), num_workers=2, timeout=120
    )
    iterator = loader._get_iterator()
    try:
        pipe = iterator._worker_result_queue._reader.fileno()
        assert fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ) >= 1 << 20
        assert sum(len(batch["__key__"]) for batch in iterator) == SAMPLES
    finally:
        iterator._shutdown_workers()
