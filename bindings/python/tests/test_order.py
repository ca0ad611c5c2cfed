"""The sample order agrees with the Rust library's vector."""

from __future__ import annotations

import json
from pathlib import Path

import shardpack
from shardpack._shardpack import ReadPlan

VECTOR = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "sample-order.json"


def test_the_same_seed_gives_the_rust_order() -> None:
    cases = json.loads(VECTOR.read_text())["cases"]
    assert len(cases) >= 4
    for case in cases:
        got = shardpack.epoch_order(
            case["shard_samples"],
            seed=case["seed"],
            span=case["span"],
            window=case["window"],
            epoch=case["epoch"],
        )
        assert got == case["order"]


def test_plans_of_every_reader_cover_the_epoch_once() -> None:
    shards = [100, 3, 250]
    seen: list[int] = []
    for rank in range(3):
        for worker in range(2):
            plan = ReadPlan(shards, seed=1, rank=rank, world=3, worker=worker, workers=2, batch=8)
            seen.extend(o for chunk in plan for o in chunk)
    assert sorted(seen) == list(range(353))
