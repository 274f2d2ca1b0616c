"""Jetstream: ingest from a Jetstream v2 server (`network.bsky.jetstream.subscribeEvents`) instead of a firehose.

Owns the mapping from Jetstream's JSON events to feedgen's own events (`feedgen.ingest.events`), so the same
pipeline and indexer store them with the same guarantees: the cursor (Jetstream's `seq`) is saved in the same
transaction as the events it covers, and an event at or below it is skipped as a duplicate, which is what makes
Jetstream's inclusive replay on reconnect (the event at the cursor comes again) harmless. The connection itself,
its stall detection and its backoff are `feedgen.ingest.firehose`'s; this module adds what differs: the URL (the
collections feeds index, the cursor, the compression dictionary), dictionary zstd compression, and the two
refusals Jetstream answers before the upgrade, `CursorTooOld` (resume from the retention floor the server names)
and `UnknownZstdDictionary` (fetch the current dictionary). A first start's history backfill
(`feedgen.ingest.backfill`) asks for the events from its horizon on, with a time cursor.

Frames are read with the atproto SDK's `atproto_jetstream` frame parser and zstd decompressor; records stay plain
JSON and go through `feedgen.ingest.records`, the rules the firehose path applies (the SDK's typed models would
coerce them with other rules, and one odd record would lose the whole event).

A store is only ever filled from one stream position at a time. Starting Jetstream on a store the firehose filled
takes over without loss: with no Jetstream cursor yet, it asks for the events from a little before the time of the
firehose's last stored event (a time cursor), and the overlap is stored once (records by URI, counters recounted).
The reverse cannot be done (a relay has no time cursor): `check_firehose_switch` refuses it with a message.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from atproto_client.client.raw import ClientRaw
from atproto_jetstream.compression import ZstdDecompression
from atproto_jetstream.exceptions import JetstreamDecodingError
from atproto_jetstream.models import ErrorFrame as SdkErrorFrame
from atproto_jetstream.models import parse_frame
from websockets.exceptions import InvalidStatus

from feedgen.ingest.events import (
    Account,
    Commit,
    ErrorFrame,
    Event,
    Identity,
    Info,
    PostCreate,
    RecordDelete,
    RecordOp,
    Sync,
    created_op,
)
from feedgen.ingest.fields import FrameError, read_did, read_optional_str, read_seq, read_str
from feedgen.ingest.firehose import Firehose
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import (
    INDEXED_COLLECTIONS,
    RecordError,
    parse_datetime_ms,
)
from feedgen.store.models import IngestState

log = logging.getLogger(__name__)
METHOD = 'network.bsky.jetstream.subscribeEvents'
MAX_FRAME_BYTES = 8 * 1024 * 1024
"""The largest decompressed frame accepted (a record is capped far below this by PDSes)."""
HANDOFF_REWIND_US = 10_000_000
"""How far before another source's last stored event a takeover starts: covers clock differences between the
relay's and Jetstream's timestamps; the overlap is stored once."""
_NS = METHOD + '#'
_FLOOR = re.compile(r'floor (\d+)')


class JetstreamDecoder:
    """Turns one Jetstream websocket message, a JSON text frame or a zstd-compressed one, into a feedgen event.

    Raises `FrameError` (a counted skip) for anything it cannot read.
    """

    def __init__(self, plugin_collections: frozenset[str] = frozenset()) -> None:
        self.compression: ZstdDecompression | None = None
        """Set while the connection asked for compressed frames."""
        self.plugin_collections = plugin_collections
        """Collections plugin indexers read: their ops are kept with the decoded record."""

    def __call__(self, message: bytes | str) -> Event:
        if isinstance(message, bytes):
            if self.compression is None:
                raise FrameError('unexpected_binary', 'a compressed frame without a dictionary')
            try:
                message = self.compression.decompress(message)
            except JetstreamDecodingError as error:
                raise FrameError('bad_zstd', str(error)) from None
        return decode_message(message, self.plugin_collections)


def decode_message(frame: bytes | str, plugin_collections: frozenset[str] = frozenset()) -> Event:
    """Decodes one uncompressed `xrpc.v1.json` frame of `subscribeEvents`, as a pure function.

    Raises:
        FrameError: the frame is not JSON, not a message or error frame, or lacks required fields.
    """
    try:
        parsed = parse_frame(frame)
    except JetstreamDecodingError as error:
        raise FrameError('bad_json', str(error)) from None
    if isinstance(parsed, SdkErrorFrame):
        return ErrorFrame(error=str(parsed.error), message=parsed.message)
    body = parsed.payload
    kind = parsed.type
    if kind == _NS + 'commit':
        return _commit(body, plugin_collections)
    if kind == _NS + 'account':
        upstream = _upstream(body, 'account')
        active = upstream.get('active')
        if not isinstance(active, bool):
            raise FrameError('bad_body', '#account without active')
        return Account(
            read_seq(body), read_did(body, 'did'), read_str(body, 'time'), active, read_optional_str(upstream, 'status')
        )
    if kind == _NS + 'identity':
        upstream = _upstream(body, 'identity')
        return Identity(
            read_seq(body), read_did(body, 'did'), read_str(body, 'time'), read_optional_str(upstream, 'handle')
        )
    if kind == _NS + 'sync':
        return Sync(read_seq(body), read_did(body, 'did'), read_str(body, 'time'))
    if kind == _NS + 'info':
        return Info(name=read_str(body, 'name'), message=read_optional_str(body, 'message'))
    raise FrameError('unknown_type', repr(kind)[:60])


def _upstream(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise FrameError('bad_body', f'{key} is not an object')
    return value


def _commit(body: dict[str, Any], plugin_collections: frozenset[str]) -> Commit:
    """One Jetstream commit event is one record op; an update is a delete and a create, as on the firehose path."""
    repo = read_did(body, 'did')
    time = read_str(body, 'time')
    try:
        time_ms = parse_datetime_ms(time)
    except RecordError:
        raise FrameError('bad_body', f'time {time[:40]!r}') from None
    commit = Commit(seq=read_seq(body), repo=repo, time=time, time_ms=time_ms)
    collection, rkey, operation = read_str(body, 'collection'), read_str(body, 'rkey'), read_str(body, 'operation')
    if collection not in INDEXED_COLLECTIONS and collection not in plugin_collections:
        commit.skipped.append('unindexed_collection')
        return commit
    if operation not in ('create', 'update', 'delete'):
        commit.skipped.append('unknown_action')
        return commit
    uri = f'at://{repo}/{collection}/{rkey}'
    if operation != 'create':
        commit.ops.append(RecordDelete(collection, uri))
    if operation != 'delete':
        keep = collection in plugin_collections
        created = _created(collection, uri, repo, body.get('cid'), body.get('record'), keep)
        if isinstance(created, str):
            commit.skipped.append(created)
        else:
            commit.ops.append(created)
            if isinstance(created, PostCreate):
                commit.skipped.extend(created.post.dropped)  # malformed optional fields, the post kept
    return commit


def _created(collection: str, uri: str, repo: str, cid: object, record: object, keep: bool) -> RecordOp | str:
    """The create op for one record, or the reason it was skipped; `keep`: with the decoded record."""
    if not isinstance(cid, str) or record is None:
        return 'missing_block'
    try:
        return created_op(collection, uri, repo, cid, record, keep)
    except RecordError as error:
        return error.reason


def subscribe_events_url(base: str) -> str:
    """The `subscribeEvents` URL of the Jetstream server at `base`; ingest keeps its cursor under this name."""
    return f'{base.rstrip("/")}/xrpc/{METHOD}'


class Jetstream(Firehose):
    """Subscribes to the Jetstream v2 server at `url` (`ws://host:port`) and feeds its events to `pipeline`.

    Sets `pipeline.decode` to its own decoder. `collections` are the record collections asked for (default: those
    feedgen indexes and those the indexer's plugin indexers read); `#account`, `#identity` and `#sync` events come
    whatever they are.
    """

    text_messages = True
    backfill_from_start = False

    def __init__(
        self,
        url: str,
        pipeline: Pipeline,
        collections: frozenset[str] | None = None,
        compress: bool = True,
        stop: threading.Event | None = None,
        stall_seconds: float = 60.0,
    ) -> None:
        super().__init__(url.rstrip('/'), pipeline, stop=stop, stall_seconds=stall_seconds)
        plugin_collections = pipeline.indexer.plugins.collections
        self.collections = sorted(INDEXED_COLLECTIONS | plugin_collections if collections is None else collections)
        self.compress = compress
        self.decoder = JetstreamDecoder(plugin_collections)
        pipeline.decode = self.decoder
        self.dictionary_id: int | None = None
        self.compression: ZstdDecompression | None = None
        self.floor: int | None = None
        """The retention floor a `CursorTooOld` refusal named: the next connection resumes there."""
        self.handoff_us = None if pipeline.indexer.cursor is not None else handoff_time_us(pipeline.indexer.firehose)

    @property
    def http_origin(self) -> str:
        scheme, _, rest = self.url.partition('://')
        return f'{"https" if scheme == "wss" else "http"}://{rest}'

    def connect_url(self) -> str:
        params: list[tuple[str, object]] = [('collections', collection) for collection in self.collections]
        cursor = self.pipeline.indexer.cursor
        if self.floor is not None and (cursor is None or cursor < self.floor):
            cursor = self.floor
        if cursor is None and self.handoff_us is not None:
            cursor = self.handoff_us
        if cursor is None and self.pipeline.backfill is not None:
            cursor = self.pipeline.backfill.row.horizon * 1000  # a time cursor: the events from the horizon on
        if cursor is not None:
            params.append(('cursor', cursor))
        if self.dictionary_id is not None:
            params.append(('zstdDictionary', self.dictionary_id))
        return f'{subscribe_events_url(self.url)}?{urlencode(params)}'

    def _consume(self) -> None:
        if self.compress and self.dictionary_id is None:
            self._load_dictionary()
        self.decoder.compression = self.compression if self.dictionary_id is not None else None
        try:
            super()._consume()
        except InvalidStatus as error:
            self._refused(error)
            raise

    def _load_dictionary(self) -> None:
        """Fetches the server's zstd dictionary; without one (an error, or none served) frames come uncompressed."""
        # Any failure (no such endpoint, a network error, not a dictionary) means: read the stream uncompressed.
        try:
            blob = ClientRaw(base_url=self.http_origin).network.bsky.jetstream.get_zstd_dictionary()
            self.compression = ZstdDecompression(MAX_FRAME_BYTES)
            self.dictionary_id = self.compression.load(blob)
        except Exception as error:
            log.warning('jetstream %s: no zstd dictionary (%s); reading uncompressed frames', self.url, error)
            self.compress = False

    def _refused(self, error: InvalidStatus) -> None:
        """Acts on the XRPC error of a refused upgrade: `CursorTooOld` and `UnknownZstdDictionary`."""
        try:
            body = json.loads(error.response.body or b'{}')
        except ValueError:
            return
        name = body.get('error') if isinstance(body, dict) else None
        message = str(body.get('message', '')) if isinstance(body, dict) else ''
        if name == 'UnknownZstdDictionary':
            self.dictionary_id = None
        elif name == 'CursorTooOld':
            self.pipeline.flush()
            self.pipeline.stats.skipped['cursor_too_old'] += 1
            floor = _FLOOR.search(message)
            self.floor = int(floor.group(1)) if floor else None
            self.handoff_us = None
            if self.floor is None:
                self.pipeline.indexer.cursor = None
            if self.pipeline.backfill is not None:
                self.pipeline.backfill.holds_less(f'it answered CursorTooOld: {message}')
            log.error(
                'jetstream %s: cursor %s is older than the server keeps (%s); resuming from %s: the events in between'
                ' are not in this store',
                self.url,
                self.pipeline.indexer.cursor,
                message,
                self.floor if self.floor is not None else 'the live tip',
            )


def handoff_time_us(source: str) -> int | None:
    """A time cursor (unix microseconds) a little before the last event another source stored, or None."""
    times = [
        time for (time,) in IngestState.select(IngestState.time).where(IngestState.firehose != source).tuples() if time
    ]
    stamps = []
    for time in times:
        try:
            stamps.append(datetime.fromisoformat(time.replace('Z', '+00:00')).timestamp())
        except ValueError:
            continue
    return int(max(stamps) * 1_000_000) - HANDOFF_REWIND_US if stamps else None


class SourceSwitchRefused(ValueError):
    """The store holds another source's position that this source cannot resume from."""


def check_firehose_switch(subscribe_url: str) -> None:
    """Refuses to start the firehose on a store Jetstream filled: a relay cannot resume from a Jetstream position.

    Raises:
        SourceSwitchRefused: the store has a Jetstream cursor and none for this firehose.
    """
    rows = {state.firehose: state for state in IngestState.select()}
    if subscribe_url in rows:
        return
    for name, state in rows.items():
        if METHOD in name:
            raise SourceSwitchRefused(
                f'this store was filled from Jetstream ({name}, up to {state.time or state.cursor}); a firehose cannot'
                ' resume from a Jetstream position, so starting it here would lose the events in between. Keep'
                ' FEEDGEN_JETSTREAM set, or start a new store for the firehose.'
            )
