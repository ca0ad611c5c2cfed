"""Archives the tests read, written through the package itself."""

from __future__ import annotations

import os

# Ray on Linux takes the machine's address as the node's and its servers listen on every
# interface; with "clusters" off (the setting Ray uses on macOS and Windows) the node's
# address is 127.0.0.1 and the GCS, the raylet and every worker listen there only. Read
# when ray is imported, so it is set before any test module imports it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

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
