"""Ingest: the pipeline from raw firehose messages to indexed batches, shared by live ingest and replay.

Owns batching (a batch is written when it holds `batch_size` events or is `batch_seconds` old), the
counters of what was seen and skipped and their running totals in the store (`IngestStat`, updated in the
batch's own transaction, so they are exactly as durable as the data they count), noticing a relay whose
sequence went backwards, a running backfill's progress (`feedgen.ingest.backfill`, saved in the same transaction),
and replaying ATFH capture files. Decoding is `feedgen.ingest.events`, writing is
`feedgen.ingest.indexer`; the websocket is `feedgen.ingest.firehose`.

A relay reset: the indexer skips every sequenced event at or below its saved cursor as a duplicate. A relay that
lost its sequence (restarted empty, or replaced by another) numbers new events from a lower seq, which would all
be skipped until the new sequence passed the old cursor. So when the first event of a new connection has a seq
below the cursor, or the relay answers `FutureCursor`, the pipeline takes the relay's new sequence from there:
it logs one line and lets the indexer accept the next event whatever its seq. Nothing is doubled (records are
stored once by URI and counters are recounted from the rows); what the relay no longer has is lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from feedgen.ingest.backfill import Backfill
from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import SEQUENCED, ErrorFrame, Event, Info, decode_frame
from feedgen.ingest.fields import FrameError
from feedgen.ingest.indexer import Indexer
from feedgen.store.database import SqliteDatabase
from feedgen.store.models import IngestStat, write_transaction

log = logging.getLogger(__name__)
RATE_WINDOW_SECONDS = 10.0
"""The saved ingest rate is frames per second over about this many seconds."""


@dataclass
class IngestStats:
    frames: int = 0
    events: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    """Frames and ops left out, by reason (`bad_cbor`, `missing_block`, `duplicate_seq`, ...)."""
    batches: int = 0
    last_event_time: str = ''
    reconnects: Counter[str] = field(default_factory=Counter)
    """Why the firehose reconnected, by kind (`connection dropped`, `stalled`, `error frame`, ...)."""
    relay_resets: int = 0
    started: float = field(default_factory=time.monotonic)

    def totals(self) -> dict[str, Any]:
        """The counters: numbers, and by label (`events`, `skipped`, `reconnects`) dicts of numbers."""
        return {
            'frames': self.frames,
            'events': dict(self.events),
            'skipped': dict(self.skipped),
            'batches': self.batches,
            'reconnects': dict(self.reconnects),
            'relay_resets': self.relay_resets,
        }

    def as_dict(self) -> dict[str, Any]:
        return self.totals() | {'seconds': round(time.monotonic() - self.started, 3)}


def merge_totals(base: dict[str, Any], change: dict[str, Any], sign: int = 1) -> dict[str, Any]:
    """`base + sign * change`, key by key, for totals whose values are numbers or dicts of numbers."""
    merged = dict(base)
    for key, value in change.items():
        if isinstance(value, dict):
            merged[key] = merge_totals(base.get(key, {}), value, sign)
        else:
            merged[key] = base.get(key, 0) + sign * value
    return merged


class Pipeline:
    """Decodes messages, batches the events and hands full batches to the indexer."""

    def __init__(
        self,
        indexer: Indexer,
        batch_size: int = 2000,
        batch_seconds: float = 0.25,
        on_batch: Callable[[Pipeline], None] | None = None,
        backfill: Backfill | None = None,
        decode: Callable[[bytes | str], Event] | None = None,
    ) -> None:
        self.indexer = indexer
        self.backfill = backfill
        """The running history backfill (`feedgen.ingest.backfill`), None once ingest is live."""
        plugin_collections = indexer.plugins.collections
        self.decode = decode or (
            partial(decode_frame, plugin_collections=plugin_collections) if plugin_collections else decode_frame
        )
        """Turns one websocket message into an event: `decode_frame` for a firehose (keeping the records of the
        collections the indexer's plugin indexers read), a Jetstream decoder otherwise."""
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.on_batch = on_batch
        self.stats = IngestStats()
        self._pending: list[Event] = []
        self._oldest = 0.0
        self._new_connection = False
        self._saved: dict[str, Any] = {}
        """The totals already added to the store's `IngestStat` row."""
        self._saved_at = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque([(self._saved_at, 0)])

    def feed(self, message: bytes | str) -> ErrorFrame | Info | None:
        """Takes one websocket message. Returns an error or info frame for the caller to act on."""
        self.stats.frames += 1
        try:
            event = self.decode(message)
        except FrameError as error:
            self.stats.skipped[error.reason] += 1
            log.debug('skipped frame: %s', error)
            return None
        kind = type(event).__name__
        self.stats.events[kind] += 1
        if isinstance(event, ErrorFrame | Info):
            return event
        if self.backfill is not None and isinstance(event, SEQUENCED):
            self.backfill.observe(event)
        if self._new_connection and isinstance(event, SEQUENCED):
            self._new_connection = False
            cursor = self.indexer.cursor
            if cursor is not None and event.seq < cursor:
                self.restart_sequence(f'the first seq of a new connection, {event.seq}, is below the cursor {cursor}')
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(event)
        if len(self._pending) >= self.batch_size:
            self.flush()
        return None

    def connected(self, from_start: bool = True) -> None:
        """Notes that a new connection starts: its first sequenced event is checked for a relay reset.

        `from_start`: without a saved cursor, the connection asked for the source's whole window.
        """
        self._new_connection = True
        if self.backfill is not None:
            self.backfill.connected(from_start=from_start and self.indexer.cursor is None)

    def restart_sequence(self, why: str) -> None:
        """Takes the relay's sequence afresh: the next sequenced event is indexed whatever its seq.

        The saved cursor is replaced when the batch holding that event commits; until then a restart resumes from
        the old cursor and meets the reset again.
        """
        self.flush()
        self.stats.relay_resets += 1
        log.warning(
            "relay reset: %s; taking the relay's new sequence from here (stored records are kept, none doubled)", why
        )
        self.indexer.cursor = None

    def due(self) -> bool:
        """True when a partial batch, or counters not yet saved, have waited `batch_seconds` to be written, and the
        previous batch's commit has ended.

        With the store's commits in the background (`feedgen.store.database`), a batch keeps taking events while the
        previous one still commits (a slow disk), instead of the pipeline stopping to wait for it; a full batch
        still waits.
        """
        if self._pending:
            waited = time.monotonic() - self._oldest >= self.batch_seconds
        else:
            waited = self._unsaved() and time.monotonic() - self._saved_at >= self.batch_seconds
        db = self.indexer.db
        return waited and not (isinstance(db, SqliteDatabase) and db.committing())

    def _unsaved(self) -> bool:
        saved = self._saved
        if self.backfill is not None and not self.backfill.running:
            return True
        unsaved: bool = (
            self.stats.frames != saved.get('frames', 0)
            or self.stats.relay_resets != saved.get('relay_resets', 0)
            or sum(self.stats.reconnects.values()) != sum(saved.get('reconnects', {}).values())
        )
        return unsaved

    def flush(self) -> None:
        """Writes the pending events, their cursor and the counters' increase, in one transaction."""
        if not self._pending and not self._unsaved():
            return
        events, self._pending = self._pending, []
        with write_transaction(self.indexer.db):
            if events:
                result = self.indexer.write(events)
                self.stats.skipped.update(result.skipped)
                self.stats.batches += 1
                self.stats.last_event_time = getattr(events[-1], 'time', self.stats.last_event_time)
            totals = self.stats.totals() | {
                'ops': dict(self.indexer.written),
                'plugin_errors': dict(self.indexer.plugins.errors),
            }
            self._save(totals)
            if self.backfill is not None:
                self.backfill.save()
        self._saved, self._saved_at = totals, time.monotonic()
        if self.backfill is not None:
            self.backfill.report()
            if not self.backfill.running:
                self.backfill, self.indexer.horizon_ms = None, None
        if events and self.on_batch:
            self.on_batch(self)

    def _save(self, totals: dict[str, Any]) -> None:
        """Adds what the counters gained since the last save to the store's running totals of this firehose."""
        firehose = self.indexer.firehose
        row = IngestStat.get_or_none(IngestStat.firehose == firehose)
        stored = json.loads(row.totals) if row else {}
        merged = merge_totals(stored, merge_totals(totals, self._saved, -1))
        now = time.monotonic()
        while len(self._samples) > 1 and self._samples[1][0] <= now - RATE_WINDOW_SECONDS:
            self._samples.popleft()
        then, frames_then = self._samples[0]
        self._samples.append((now, totals['frames']))
        row_values = {
            IngestStat.totals: json.dumps(merged, sort_keys=True),
            IngestStat.rate: (totals['frames'] - frames_then) / max(now - then, 1e-3),
            IngestStat.updated_at: int(time.time() * 1000),
        }
        IngestStat.insert({IngestStat.firehose: firehose, **row_values}).on_conflict(
            conflict_target=[IngestStat.firehose], update=row_values
        ).execute()

    def feed_all(self, messages: Iterable[bytes]) -> None:
        for message in messages:
            self.feed(message)
        self.flush()


def replay(path: str | Path, pipeline: Pipeline) -> IngestStats:
    """Indexes every message of the ATFH capture at `path`, resuming after the indexer's saved cursor."""
    pipeline.feed_all(read_capture(path))
    return pipeline.stats
