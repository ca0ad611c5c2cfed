"""Archives the tests read, written through the package itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy
import pytest

import shardpack

SAMPLES = 300


def array_of(i: int) -> numpy.ndarray[Any, Any]:
    return numpy.arange(i % 17 + 1, dtype=numpy.float32) * i


def write_archive(path: Path, compression: Literal["zstd", "none"], samples: int = SAMPLES) -> Path:
    with shardpack.Writer(path, compression=compression, shard_size=64 << 10) as writer:
        for i in range(samples):
            writer.write(
                f"sample/{i:05d}",
                {
                    "npy": array_of(i),
                    "raw": numpy.full(8, i, dtype=numpy.int64),
                    "txt": f"text of {i}",
                    "cls": str(i % 10),
                },
            )
    return path


@pytest.fixture(scope="session")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("stored") / "archive", "none")


@pytest.fixture(scope="session")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("zstd") / "archive", "zstd")


@pytest.fixture(params=["none", "zstd"])
def archive_path(request: pytest.FixtureRequest, stored: Path, compressed: Path) -> Path:
    return stored if request.param == "none" else compressed
