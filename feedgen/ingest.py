"""Ingest: the pipeline from raw firehose messages to indexed batches, shared by live ingest and replay.

Owns batching (a batch is written when it holds `batch_size` events or is `batch_seconds` old), the
counters of what was seen and skipped, noticing a relay whose sequence went backwards, and replaying ATFH
capture files. Decoding is `feedgen.events`, writing is `feedgen.indexer`; the websocket is `feedgen.firehose`.

A relay reset: the indexer skips every sequenced event at or below its saved cursor as a duplicate. A relay that
lost its sequence (restarted empty, or replaced by another) numbers new events from a lower seq, which would all
be skipped until the new sequence passed the old cursor. So when the first event of a new connection has a seq
below the cursor, or the relay answers `FutureCursor`, the pipeline takes the relay's new sequence from there:
it logs one line and lets the indexer accept the next event whatever its seq. Nothing is doubled (records are
stored once by URI and counters are recounted from the rows); what the relay no longer has is lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from feedgen.capture import read_capture
from feedgen.events import SEQUENCED, ErrorFrame, Event, FrameError, Info, decode_frame
from feedgen.indexer import Indexer

log = logging.getLogger(__name__)


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

    def as_dict(self) -> dict:
        return {
            'frames': self.frames,
            'events': dict(self.events),
            'skipped': dict(self.skipped),
            'batches': self.batches,
            'reconnects': dict(self.reconnects),
            'relay_resets': self.relay_resets,
            'seconds': round(time.monotonic() - self.started, 3),
        }


class Pipeline:
    """Decodes messages, batches the events and hands full batches to the indexer."""

    def __init__(
        self,
        indexer: Indexer,
        batch_size: int = 2000,
        batch_seconds: float = 0.25,
        on_batch: Callable[[Pipeline], None] | None = None,
    ) -> None:
        self.indexer = indexer
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.on_batch = on_batch
        self.stats = IngestStats()
        self._pending: list[Event] = []
        self._oldest = 0.0
        self._new_connection = False

    def feed(self, message: bytes) -> ErrorFrame | Info | None:
        """Takes one websocket message. Returns an error or info frame for the caller to act on."""
        self.stats.frames += 1
        try:
            event = decode_frame(message)
        except FrameError as error:
            self.stats.skipped[error.reason] += 1
            log.debug('skipped frame: %s', error)
            return None
        kind = type(event).__name__
        self.stats.events[kind] += 1
        if isinstance(event, ErrorFrame | Info):
            return event
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

    def connected(self) -> None:
        """Notes that a new connection starts: its first sequenced event is checked for a relay reset."""
        self._new_connection = True

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
        """True when a partial batch has waited `batch_seconds` and should be written now."""
        return bool(self._pending) and time.monotonic() - self._oldest >= self.batch_seconds

    def flush(self) -> None:
        """Writes the pending events (and their cursor) in one transaction."""
        if not self._pending:
            return
        events, self._pending = self._pending, []
        result = self.indexer.write(events)
        self.stats.skipped.update(result.skipped)
        self.stats.batches += 1
        last = events[-1]
        self.stats.last_event_time = getattr(last, 'time', self.stats.last_event_time)
        if self.on_batch:
            self.on_batch(self)

    def feed_all(self, messages: Iterable[bytes]) -> None:
        for message in messages:
            self.feed(message)
        self.flush()


def replay(path: str | Path, pipeline: Pipeline) -> IngestStats:
    """Indexes every message of the ATFH capture at `path`, resuming after the indexer's saved cursor."""
    pipeline.feed_all(read_capture(path))
    return pipeline.stats
