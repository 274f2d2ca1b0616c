"""Retime: a recorded stream moved in time so that it ends at a given moment, for replays of old captures.

Owns shifting every time a consumer reads from recorded `subscribeRepos` frames by one offset: each frame's
`time`, and the `createdAt` of each record a `#commit` carries. A record re-encoded with a new `createdAt` has a
new CID: its CAR section and its op's `cid` name the new one, and strong refs to it in later records (a like's
subject, a reply's parent) follow. The signed commit block and the MST nodes keep the old CIDs, so retimed frames
no longer verify against the repository's signing key: they are for consumers that read a record by its op's CID,
as feedgen's ingest does (`feedgen demo`). A frame that does not decode is passed on unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import libipld

from feedgen.ingest.records import RecordError, parse_datetime_ms

__all__ = ['retime']

_CID_V1_DAG_CBOR_SHA256 = bytes([0x01, 0x71, 0x12, 0x20])
"""CIDv1, codec dag-cbor, multihash sha2-256 of 32 bytes: the prefix of every atproto record CID."""


def retime(frames: Sequence[bytes], end_ms: int) -> tuple[list[bytes], int]:
    """Moves every time in `frames` by the offset that makes the latest frame `time` equal `end_ms`.

    Args:
        frames: Raw `subscribeRepos` messages, in order.
        end_ms: When the retimed stream ends, in epoch milliseconds (e.g. now).

    Returns:
        The retimed frames, and the offset applied in milliseconds (0 when no frame has a time).
    """
    times = [ms for message in frames if (ms := _frame_time_ms(message)) is not None]
    if not times:
        return list(frames), 0
    shift_ms = end_ms - max(times)
    cids: dict[str, str] = {}
    return [_retimed_frame(message, shift_ms, cids) for message in frames], shift_ms


def _frame_time_ms(message: bytes) -> int | None:
    try:
        _header, body = libipld.decode_dag_cbor_multi(message)
        return parse_datetime_ms(body.get('time')) if isinstance(body, dict) else None
    except (ValueError, TypeError, RecordError):
        return None


def _retimed_frame(message: bytes, shift_ms: int, cids: dict[str, str]) -> bytes:
    """`message` with its times moved; `cids` maps the records' old CIDs (text) to their new ones, and grows."""
    try:
        header, body = libipld.decode_dag_cbor_multi(message)
        if not isinstance(body, dict) or 'time' not in body:
            return message
        body = body | {'time': _moved_time(body['time'], shift_ms)}
        if isinstance(header, dict) and header.get('t') == '#commit' and isinstance(body.get('blocks'), bytes):
            body = _retimed_commit(body, shift_ms, cids)
        return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)
    except (ValueError, TypeError):
        return message


def _retimed_commit(body: dict[str, Any], shift_ms: int, cids: dict[str, str]) -> dict[str, Any]:
    """The commit `body` with its ops' records retimed, re-encoded under new CIDs in its CAR."""
    car_header, blocks = libipld.decode_car(body['blocks'])
    renamed: dict[bytes, tuple[bytes, bytes]] = {}
    """Old CID -> (new CID, new block) of each record an op points at."""
    for op in body.get('ops') or ():
        old = op.get('cid') if isinstance(op, dict) else None
        if isinstance(old, bytes) and isinstance(blocks.get(old), dict) and old not in renamed:
            block = libipld.encode_dag_cbor(_moved_record(blocks[old], shift_ms, cids))
            renamed[old] = (_CID_V1_DAG_CBOR_SHA256 + hashlib.sha256(block).digest(), block)
            cids[libipld.encode_cid(old)] = libipld.encode_cid(renamed[old][0])
    sections = [renamed.get(cid) or (cid, libipld.encode_dag_cbor(block)) for cid, block in blocks.items()]
    ops = [
        op | {'cid': renamed[op['cid']][0]} if isinstance(op, dict) and op.get('cid') in renamed else op
        for op in body['ops']
    ]
    return body | {'blocks': _car(car_header, sections), 'ops': ops}


def _moved_record(value: Any, shift_ms: int, cids: dict[str, str]) -> Any:
    """A record (or part of one) with each `createdAt` moved and each `cid` of a retimed record renamed."""
    if isinstance(value, dict):
        moved = {key: _moved_record(item, shift_ms, cids) for key, item in value.items()}
        if isinstance(moved.get('createdAt'), str):
            moved['createdAt'] = _moved_time(moved['createdAt'], shift_ms)
        if isinstance(moved.get('cid'), str):
            moved['cid'] = cids.get(moved['cid'], moved['cid'])
        return moved
    if isinstance(value, list):
        return [_moved_record(item, shift_ms, cids) for item in value]
    return value


def _moved_time(value: Any, shift_ms: int) -> Any:
    """The datetime string `value` moved by `shift_ms`, in the `2024-01-02T03:04:05.678Z` form; else `value`."""
    try:
        moved = parse_datetime_ms(value) + shift_ms
    except RecordError:
        return value
    return datetime.fromtimestamp(moved / 1000, UTC).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


def _car(header: dict[str, Any], sections: list[tuple[bytes, bytes]]) -> bytes:
    """A CARv1 file: the DAG-CBOR `header`, then each `(cid, block)` section, each behind its varint length."""
    encoded = libipld.encode_dag_cbor(header)
    parts = [_varint(len(encoded)), encoded]
    for cid, block in sections:
        parts += [_varint(len(cid) + len(block)), cid, block]
    return b''.join(parts)


def _varint(value: int) -> bytes:
    """`value` as an unsigned LEB128 varint, the length prefix of CAR sections."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
