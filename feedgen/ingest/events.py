"""Events: decode one `subscribeRepos` websocket message into a typed event, as a pure function.

Owns the mapping from relay frames (`#commit`, `#account`, `#identity`, `#sync`, `#info`, error
frames) to feedgen's own events. DAG-CBOR and CAR decoding is libipld's (the atproto SDK's decoder).
It never touches a socket or the database, so every case is unit-tested on bytes.

A message that cannot be decoded at all raises `FrameError`. Inside a good commit, an op whose record
is missing or malformed, or of a collection feedgen does not index, is left out and its reason recorded in
`Commit.skipped`; the rest is kept. So is the reason of each malformed optional field of a kept post
(`PostRecord.dropped`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import libipld

from feedgen.ingest.fields import FrameError, read_did, read_optional_str, read_seq, read_str, split_frame
from feedgen.ingest.records import (
    INDEXED_COLLECTIONS,
    POST,
    PostRecord,
    RecordError,
    parse_datetime_ms,
    parse_post,
    parse_subject_record,
)


@dataclass(frozen=True, slots=True)
class PostCreate:
    uri: str
    cid: str
    author: str
    post: PostRecord
    record: dict[str, Any] | None = None
    """The decoded record, kept only when a plugin indexer reads posts."""


@dataclass(frozen=True, slots=True)
class SubjectCreate:
    """A like, repost or follow was created."""

    collection: str
    uri: str
    author: str
    subject: str
    record: dict[str, Any] | None = None
    """The decoded record, kept only when a plugin indexer reads its collection."""


@dataclass(frozen=True, slots=True)
class RecordCreate:
    """A record of a collection only plugin indexers read (`feedgen.ingest.plugin_indexers`) was created."""

    collection: str
    uri: str
    author: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordDelete:
    collection: str
    uri: str


RecordOp = PostCreate | SubjectCreate | RecordCreate | RecordDelete


@dataclass(slots=True)
class Commit:
    seq: int
    repo: str
    time: str
    time_ms: int
    ops: list[RecordOp] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One reason per op that was left out (missing block, invalid record, ...), and per malformed field of a kept
    post (`invalid_link`, ...)."""


@dataclass(frozen=True, slots=True)
class Account:
    seq: int
    did: str
    time: str
    active: bool
    status: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    seq: int
    did: str
    time: str
    handle: str | None


@dataclass(frozen=True, slots=True)
class Sync:
    seq: int
    did: str
    time: str


@dataclass(frozen=True, slots=True)
class Info:
    """An informational frame, e.g. `OutdatedCursor`. It has no sequence number."""

    name: str
    message: str | None


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """The relay's error frame (op -1), e.g. `FutureCursor` or `ConsumerTooSlow`; it closes the stream."""

    error: str
    message: str | None


Event = Commit | Account | Identity | Sync | Info | ErrorFrame
SEQUENCED = (Commit, Account, Identity, Sync)


def event_time_ms(event: Event) -> int | None:
    """The relay's `time` of a sequenced event in milliseconds; None for other frames or a time that does not parse."""
    if isinstance(event, Commit):
        return event.time_ms
    if isinstance(event, Account | Identity | Sync):
        try:
            return parse_datetime_ms(event.time)
        except RecordError:
            return None
    return None


def decode_frame(message: bytes | str, plugin_collections: frozenset[str] = frozenset()) -> Event:
    """Decodes one binary websocket message of `com.atproto.sync.subscribeRepos`.

    `plugin_collections`: collections plugin indexers read; their ops are kept with the decoded record.

    Raises:
        FrameError: the message is text, is not DAG-CBOR, has no valid header, or its body lacks required fields.
    """
    header, body = split_frame(message)
    op = header.get('op')
    if op == -1:
        return ErrorFrame(error=read_str(body, 'error'), message=read_optional_str(body, 'message'))
    if op != 1:
        raise FrameError('bad_header', f'op {op!r}')
    kind = header.get('t')
    if kind == '#commit':
        return _commit(body, plugin_collections)
    if kind == '#account':
        status = read_optional_str(body, 'status')
        active = body.get('active')
        if not isinstance(active, bool):
            raise FrameError('bad_body', '#account without active')
        return Account(read_seq(body), read_did(body, 'did'), read_str(body, 'time'), active, status)
    if kind == '#identity':
        return Identity(
            read_seq(body), read_did(body, 'did'), read_str(body, 'time'), read_optional_str(body, 'handle')
        )
    if kind == '#sync':
        return Sync(read_seq(body), read_did(body, 'did'), read_str(body, 'time'))
    if kind == '#info':
        return Info(name=read_str(body, 'name'), message=read_optional_str(body, 'message'))
    raise FrameError('unknown_type', repr(kind)[:40])


def _commit(body: dict[str, Any], plugin_collections: frozenset[str]) -> Commit:
    repo = read_did(body, 'repo')
    time = read_str(body, 'time')
    try:
        time_ms = parse_datetime_ms(time)
    except RecordError:
        raise FrameError('bad_body', f'time {time!r}') from None
    commit = Commit(seq=read_seq(body), repo=repo, time=time, time_ms=time_ms)
    ops = body.get('ops')
    if not isinstance(ops, list):
        raise FrameError('bad_body', 'ops is not a list')
    wanted = []
    cids = set()
    creates = False
    for op in ops:
        path = op.get('path') if isinstance(op, dict) else None
        if not isinstance(path, str):
            commit.skipped.append('malformed_op')
            continue
        collection, _, rkey = path.partition('/')
        if collection not in INDEXED_COLLECTIONS and collection not in plugin_collections:
            commit.skipped.append('unindexed_collection')
            continue
        action = op.get('action')
        wanted.append((collection, rkey, action, op))
        if action != 'delete':
            creates = True
            if isinstance(cid := op.get('cid'), bytes):
                cids.add(cid)
    if not wanted:
        return commit
    blocks = _blocks(body, cids) if creates else {}
    for collection, rkey, action, op in wanted:
        uri = f'at://{repo}/{collection}/{rkey}'
        if action == 'delete' or action == 'update':
            commit.ops.append(RecordDelete(collection, uri))
        if action == 'delete':
            continue
        if action not in ('create', 'update'):
            commit.skipped.append('unknown_action')
            continue
        created = _created(collection, uri, repo, op.get('cid'), blocks, collection in plugin_collections)
        if isinstance(created, str):
            commit.skipped.append(created)
        else:
            commit.ops.append(created)
            if isinstance(created, PostCreate):
                commit.skipped.extend(created.post.dropped)  # malformed optional fields, the post kept
    return commit


def _created(collection: str, uri: str, repo: str, cid: object, blocks: dict[Any, Any], keep: bool) -> RecordOp | str:
    """The create op for one record, or the reason it was skipped; `keep`: with the decoded record."""
    if not isinstance(cid, bytes) or cid not in blocks:
        return 'missing_block'
    try:
        text = libipld.encode_cid(cid) if collection == POST or collection not in INDEXED_COLLECTIONS else ''
        return created_op(collection, uri, repo, text, blocks[cid], keep)
    except RecordError as error:
        return error.reason
    except ValueError:
        return 'invalid_cid'


def created_op(collection: str, uri: str, repo: str, cid: str, record: Any, keep: bool) -> RecordOp:
    """The create op of a decoded record (firehose and Jetstream alike); `keep`: with the record, for plugins.
    `cid` is read for posts only.

    Raises:
        RecordError: the record does not validate (a post, like, repost, follow or block), or is not a map.
    """
    kept = record if keep and isinstance(record, dict) else None
    if collection == POST:
        return PostCreate(uri=uri, cid=cid, author=repo, post=parse_post(record), record=kept)
    if collection in INDEXED_COLLECTIONS:
        subject = parse_subject_record(collection, record).subject
        return SubjectCreate(collection=collection, uri=uri, author=repo, subject=subject, record=kept)
    if kept is None:
        raise RecordError('not_a_map')
    return RecordCreate(collection=collection, uri=uri, author=repo, record=kept)


def _blocks(body: dict[str, Any], cids: set[Any]) -> dict[Any, Any]:
    """The decoded blocks of the commit's CAR whose CIDs are in `cids` (the records its ops point at).

    Only those blocks are decoded (most of a commit's CAR is MST nodes and the signed commit, which feedgen
    never reads); the CAR's header and the framing of every section are still checked.
    """
    if body.get('tooBig'):
        return {}
    data = body.get('blocks')
    if not isinstance(data, bytes):
        raise FrameError('bad_body', 'blocks is not bytes')
    try:
        return {cid: libipld.decode_dag_cbor(block) for cid, block in _car_blocks(data, cids).items()}
    except (ValueError, TypeError, IndexError) as error:
        raise FrameError('bad_car', str(error)) from None


def _car_blocks(data: bytes, cids: set[bytes]) -> dict[bytes, bytes]:
    """The undecoded blocks of the CARv1 `data` whose CIDs are in `cids`.

    Raises:
        ValueError: the header is not a DAG-CBOR map with `version` 1, or a section is truncated.
    """
    size, position = _varint(data, 0)
    header = libipld.decode_dag_cbor(data[position : position + size])
    if not isinstance(header, dict) or header.get('version') != 1:
        raise ValueError('not a CARv1 header')
    position += size
    end = len(data)
    found = {}
    lengths = set(map(len, cids))
    while position < end:
        size = data[position]
        if size < 0x80:
            position += 1
        elif (high := data[position + 1]) < 0x80:  # most sections are 128 bytes to 16 KiB long
            size, position = (size & 0x7F) | high << 7, position + 2
        else:
            size, position = _varint(data, position)
        section_end = position + size
        if section_end > end:
            raise ValueError('truncated CAR section')
        for length in lengths:
            if length < size and (cid := data[position : position + length]) in cids:
                found[cid] = data[position + length : section_end]
        position = section_end
    return found


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """Reads an unsigned LEB128 varint at `position`; returns it and the position after it."""
    byte = data[position]
    if byte < 0x80:
        return byte, position + 1
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ValueError('varint longer than 9 bytes')
