"""Ingest: the pipeline from raw firehose messages to indexed batches, shared by live ingest and replay.

Owns batching (a batch is written when it holds `batch_size` events or is `batch_seconds` old), the
counters of what was seen and skipped, and replaying ATFH capture files. Decoding is `feedgen.events`,
writing is `feedgen.indexer`; the websocket is `feedgen.firehose`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from feedgen.capture import read_capture
from feedgen.events import ErrorFrame, Event, FrameError, Info, decode_frame
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
    started: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict:
        return {
            'frames': self.frames,
            'events': dict(self.events),
            'skipped': dict(self.skipped),
            'batches': self.batches,
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
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append(event)
        if len(self._pending) >= self.batch_size:
            self.flush()
        return None

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
