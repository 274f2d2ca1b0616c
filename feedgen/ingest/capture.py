"""ATFH capture files: recorded `subscribeRepos` websocket messages, one length-prefixed record each.

Owns reading and writing the format of `../shared/atnet/captures/FORMAT.md` (a 4-byte big-endian
length N, then N bytes: one binary websocket message exactly as the relay sent it), gzip-compressed when the
file name ends in `.gz`. It never decodes the frames themselves: that is `feedgen.ingest.events`.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, cast

_LENGTH = struct.Struct('>I')


class CaptureError(ValueError):
    """The file is not a well-formed ATFH capture (for example, truncated mid-record)."""


def iter_messages(stream: BinaryIO) -> Iterator[bytes]:
    """Yields each recorded websocket message of an open ATFH stream."""
    while header := stream.read(_LENGTH.size):
        if len(header) < _LENGTH.size:
            raise CaptureError(f'truncated length prefix at byte {stream.tell() - len(header)}')
        (size,) = _LENGTH.unpack(header)
        message = stream.read(size)
        if len(message) < size:
            raise CaptureError(f'truncated record: wanted {size} bytes, got {len(message)}')
        yield message


def read_capture(path: str | Path) -> Iterator[bytes]:
    """Yields each recorded websocket message of the ATFH file at `path` (gzip-compressed if it ends in `.gz`)."""
    with _open(path, 'rb') as stream:
        yield from iter_messages(stream)


def write_capture(path: str | Path, messages: Iterable[bytes]) -> int:
    """Writes `messages` as an ATFH file (gzip-compressed if `path` ends in `.gz`); returns how many were written."""
    count = 0
    with _open(path, 'wb') as stream:
        for message in messages:
            stream.write(_LENGTH.pack(len(message)))
            stream.write(message)
            count += 1
    return count


def _open(path: str | Path, mode: str) -> BinaryIO:
    """The file at `path`, through gzip when its name ends in `.gz`."""
    if str(path).endswith('.gz'):
        return cast(BinaryIO, gzip.open(path, mode))
    return cast(BinaryIO, open(path, mode))  # the caller closes it
