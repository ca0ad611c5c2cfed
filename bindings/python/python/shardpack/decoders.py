"""Decoding fields by name, as WebDataset users know it: ``json``, ``txt``/``text``,
``cls``, ``npy``, images through Pillow (when installed), or a function of your own.

A decoder takes a sample and returns a ``dict``: ``__key__`` and ``__ordinal__`` plus one
entry per field, decoded by the last part of its name (``"meta.json"`` decodes as JSON);
fields no rule knows stay ``memoryview``\\ s of the archive's bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from typing import Any

Decoder = Callable[[memoryview], Any]

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "ppm", "pgm", "pbm", "pnm", "webp", "bmp"})


def _text(data: memoryview) -> str:
    return str(data, "utf-8")


def _json(data: memoryview) -> Any:
    return json.loads(bytes(data))


def _cls(data: memoryview) -> int:
    return int(str(data, "ascii").strip())


def _npy(data: memoryview) -> Any:
    import numpy

    return numpy.load(io.BytesIO(data), allow_pickle=False)


def _image(data: memoryview) -> Any:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


BUILTIN: dict[str, Decoder] = {
    "json": _json,
    "txt": _text,
    "text": _text,
    "cls": _cls,
    "cls2": _cls,
    "index": _cls,
    "npy": _npy,
    **{ext: _image for ext in IMAGE_EXTENSIONS},
}


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower()


def decode(
    sample: Mapping[str, memoryview],
    decoders: Mapping[str, Decoder] | None = None,
    *,
    images: bool = True,
) -> dict[str, Any]:
    """Decodes every field of ``sample`` by name; ``decoders`` adds or overrides rules
    (by field name or extension). With ``images=False``, image fields stay bytes."""
    rules = dict(BUILTIN)
    if not images:
        for ext in IMAGE_EXTENSIONS:
            rules.pop(ext, None)
    if decoders:
        rules.update(decoders)
    out: dict[str, Any] = {
        "__key__": getattr(sample, "key", None),
        "__ordinal__": getattr(sample, "ordinal", None),
    }
    for name, data in sample.items():
        rule = rules.get(name) or rules.get(_extension(name))
        out[name] = rule(data) if rule is not None else data
    return out


__all__ = ["BUILTIN", "Decoder", "decode"]
