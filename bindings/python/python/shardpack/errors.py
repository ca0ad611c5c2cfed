"""The exceptions shardpack raises: one class per kind of error of the Rust library.

Each carries the place it applies to as attributes (``file``, ``shard``, ``offset``,
``length``, and what the kind adds), and pickles, so that an error raised inside a
DataLoader worker reaches the main process intact.
"""

from __future__ import annotations

from typing import Any


class ShardpackError(Exception):
    """Base class of every shardpack error."""

    file: str | None
    shard: int | None
    offset: int | None
    length: int | None

    def __init__(self, message: str, **attrs: Any) -> None:
        super().__init__(message)
        self.message = message
        self.file = None
        self.shard = None
        self.offset = None
        self.length = None
        for name, value in attrs.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        attrs = {k: v for k, v in self.__dict__.items() if k != "message"}
        return (_rebuild, (type(self), self.message, attrs))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[ShardpackError], message: str, attrs: dict[str, Any]) -> ShardpackError:
    return cls(message, **attrs)


class ArchiveIOError(ShardpackError, OSError):
    """An operating-system error on a local file (``file``, ``operation``, ``errno``)."""

    def __init__(self, message: str, **attrs: Any) -> None:
        ShardpackError.__init__(self, message, **attrs)


class CorruptError(ShardpackError):
    """Stored bytes are damaged or do not conform (``defect``, ``structure``)."""

    defect: str | None
    structure: str | None


class LimitExceededError(CorruptError):
    """A configured limit stopped the read before it allocated too much."""


class UnsupportedVersionError(ShardpackError):
    """The archive has a format version this build cannot read."""


class IncompleteError(ShardpackError):
    """The archive has no finished manifest (an interrupted write, or not an archive)."""


class OrdinalError(ShardpackError, IndexError):
    """An ordinal at or past the number of samples."""


class KeyNotFoundError(ShardpackError, KeyError):
    """No sample has the key."""


class InvalidInputError(ShardpackError, ValueError):
    """An argument or input the library refuses; nothing was written for it."""


class RemoteError(ShardpackError):
    """A request to an object store or HTTP server that failed (``url``, ``offset``,
    ``status``, the HTTP status when an answer came, ``expected``, ``reason``)."""

    url: str
    status: int | None
    expected: str
    reason: str


class TarError(ShardpackError, ValueError):
    """A tar being imported is damaged, truncated or holds a member that cannot be a field
    (``file``, ``member``, ``after``, ``offset``, ``problem``: "damaged", "truncated",
    "unsupported", "special", "bad_name", "duplicate_field", "key_reused", "refused")."""

    member: str | None
    after: str | None
    problem: str | None


__all__ = [
    "ArchiveIOError",
    "CorruptError",
    "IncompleteError",
    "InvalidInputError",
    "KeyNotFoundError",
    "LimitExceededError",
    "OrdinalError",
    "ShardpackError",
    "UnsupportedVersionError",
]
