"""Decoding by field name: the WebDataset rules, Pillow images, and functions of one's own."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy
from PIL import Image

import shardpack


def test_fields_decode_by_name_and_extension(tmp_path: Path) -> None:
    picture = Image.new("RGB", (4, 3), (200, 10, 30))
    png = io.BytesIO()
    picture.save(png, format="PNG")
    with shardpack.Writer(tmp_path / "a") as writer:
        writer.write(
            "k",
            {
                "png": png.getvalue(),
                "meta.json": json.dumps({"w": 4}),
                "text": "words",
                "cls": "7",
                "npy": numpy.eye(2),
                "custom": b"3,4",
                "unknown": b"\x00\x01",
            },
        )
    sample = shardpack.open(tmp_path / "a")[0]
    decoded = shardpack.decode(sample, {"custom": lambda v: [int(x) for x in bytes(v).split(b",")]})
    assert decoded["__key__"] == "k" and decoded["__ordinal__"] == 0
    assert decoded["png"].size == (4, 3) and decoded["png"].getpixel((0, 0)) == (200, 10, 30)
    assert decoded["meta.json"] == {"w": 4}
    assert decoded["text"] == "words" and decoded["cls"] == 7
    numpy.testing.assert_array_equal(decoded["npy"], numpy.eye(2))
    assert decoded["custom"] == [3, 4]
    assert isinstance(decoded["unknown"], memoryview) and bytes(decoded["unknown"]) == b"\x00\x01"
    assert isinstance(shardpack.decode(sample, images=False)["png"], memoryview)
