"""Backfill: a new deployment's first ingest, from the oldest event the source still holds up to the live stream.

Owns whether a store backfills, its horizon, when it ends, and its progress. A store backfills when it is empty (no
firehose has a saved cursor) and `FEEDGEN_BACKFILL_HOURS` is above 0: the horizon, now minus those hours (at most the
retention), is fixed in the store's `BackfillState` row when the backfill starts, so a restart after a crash keeps
it. Ingest then asks a firehose for its whole window (`cursor=0`), and Jetstream for the events from the horizon on
(its time cursor, in unix microseconds); the indexer skips, counted as `before_horizon`, the events whose `time` is
older than the horizon. The saved cursor covers skipped events too, so a restart resumes after the last committed
batch, as live ingest does, and the stream runs on into the live one with nothing missed or doubled.

The backfill is over, and ingest live, at the first of: an event whose `time` is within `LIVE_SECONDS` of now; the
source sending nothing for `IDLE_SECONDS` (it has no more: a quiet PDS); the source closing the stream. That fact is
saved in the transaction of the batch that reached it, and a store whose backfill finished never starts another.
Where the source holds less than asked (a firehose's oldest event is younger than the horizon, or it answers
`OutdatedCursor`; Jetstream answers `CursorTooOld`), one log line says so and the backfill goes on with what there
is. It never touches the socket; the firehose calls it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from feedgen.ingest.events import Event, event_time_ms
from feedgen.ingest.indexer import Indexer
from feedgen.store.models import BackfillState, IngestState, write_transaction

log = logging.getLogger(__name__)
LIVE_SECONDS = 60.0
"""An event whose `time` is this close to now is live: the backfill is over."""
IDLE_SECONDS = 5.0
"""A source that sends nothing this long during a backfill has nothing older left: the backfill is over."""
PROGRESS_SECONDS = 5.0
"""A running backfill logs its progress this often."""


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec='seconds').replace('+00:00', 'Z')


class Backfill:
    """One firehose's running backfill; the pipeline calls `observe` for each event and `save` in each batch."""

    def __init__(self, row: BackfillState, clock: Callable[[], float] = time.time) -> None:
        self.row = row
        self.clock = clock
        self.done_because = ''
        """Why the backfill is over ('' while it runs); saved with the next batch."""
        self._told_less = False
        self._from_start = False
        self._started = clock()
        self._events_at_start = row.events
        self._observed = 0
        self._newest: Event | None = None
        self._first: tuple[float, int] | None = None
        """(wall clock, event time in ms) of the first event this process read: the ETA's starting point."""
        self._last_report = self._started

    @classmethod
    def plan(cls, indexer: Indexer, hours: float, clock: Callable[[], float] = time.time) -> Backfill | None:
        """The backfill `indexer`'s firehose runs now, or None (none asked, the store is not empty, or it finished).

        Starts one when the store is empty and `hours` > 0, saving its horizon; resumes one a restart interrupted.
        With `hours` 0, an unfinished backfill is ended as it stands.
        """
        row = BackfillState.get_or_none(BackfillState.firehose == indexer.firehose)
        if row is not None and row.finished_at is not None:
            return None
        now = clock()
        if hours <= 0:
            if row is not None:
                log.info(
                    'backfill: turned off (FEEDGEN_BACKFILL_HOURS=0); ingest goes on from cursor %s', indexer.cursor
                )
                with write_transaction(indexer.db):
                    BackfillState.update(finished_at=int(now * 1000)).where(
                        BackfillState.firehose == indexer.firehose
                    ).execute()
            return None
        if row is None:
            if IngestState.select().exists():
                return None
            row = BackfillState(
                firehose=indexer.firehose,
                hours=hours,
                horizon=int((now - hours * 3600) * 1000),
                started_at=int(now * 1000),
            )
            with write_transaction(indexer.db):
                row.save(force_insert=True)
            log.info(
                'backfill: the store is empty; ingesting the last %g h (events from %s on) first',
                hours,
                _iso(row.horizon),
            )
        else:
            log.info('backfill: resuming after cursor %s (events from %s on)', indexer.cursor, _iso(row.horizon))
        backfill = cls(row, clock)
        indexer.horizon_ms = row.horizon
        return backfill

    @property
    def running(self) -> bool:
        return not self.done_because

    def connected(self, from_start: bool) -> None:
        """A connection opens; `from_start`: it asked for the source's whole window (`cursor=0`)."""
        self._from_start = from_start

    def observe(self, event: Event) -> None:
        """Takes one sequenced event read from the source (before the pipeline batches it). Cheap: it runs for every
        event; the newest one is looked at when the batch is saved."""
        self._observed += 1
        self._newest = event
        if self._first is None or self._from_start:
            self._note_first(event)

    def _note_first(self, event: Event) -> None:
        """The first event this process reads, and the first of a connection that asked for the whole window."""
        moment = event_time_ms(event)
        if moment is None:
            return
        if self._first is None:
            self._first = (self.clock(), moment)
        if self._from_start:
            self._from_start = False
            if moment > self.row.horizon:
                self.holds_less(f'its oldest event is from {_iso(moment)}')
            if self.row.first_event_time is None:
                self.row.first_event_time = max(moment, self.row.horizon)

    def holds_less(self, what: str) -> None:
        """Says once, in one line, that the source holds less history than the backfill asked for."""
        if not self._told_less:
            self._told_less = True
            log.warning(
                'backfill: the source holds less than the %g h asked (%s, the horizon is %s); ingesting what it has',
                self.row.hours,
                what,
                _iso(self.row.horizon),
            )

    def finish(self, why: str) -> None:
        """Marks the backfill over (saved with the next batch): ingest is live."""
        if not self.done_because:
            self.done_because = why

    def save(self) -> None:
        """Writes the progress (and the end, once reached) into the current transaction, with the batch it covers."""
        row = self.row
        now = self.clock()
        moment = None if self._newest is None else event_time_ms(self._newest)
        if moment is not None:
            row.event_time = moment
            if moment >= (now - LIVE_SECONDS) * 1000:
                self.finish(f'an event is from {_iso(moment)}, within {LIVE_SECONDS:g} s of now')
        row.events = self._events_at_start + self._observed
        seconds = max(now - self._started, 1e-3)
        row.rate = self._observed / seconds
        row.eta_seconds = None
        if self._first is not None and row.event_time is not None and row.event_time > self._first[1]:
            wall, moment = self._first
            advance = (row.event_time - moment) / 1000 / max(now - wall, 1e-3)  # event seconds per second
            row.eta_seconds = max(0.0, (now - LIVE_SECONDS) - row.event_time / 1000) / advance
        if self.done_because:
            row.finished_at = int(now * 1000)
            row.eta_seconds = 0.0
        row.save()

    def report(self) -> None:
        """Logs the progress every `PROGRESS_SECONDS` (and the end, once)."""
        now = self.clock()
        if not self.done_because and now - self._last_report < PROGRESS_SECONDS:
            return
        self._last_report = now
        progress = backfill_progress(self.row)
        if self.done_because:
            log.info(
                'backfill: finished, ingest is live (%s): %d events, %.1f h covered, %.0f events/s',
                self.done_because,
                progress['events'],
                progress['hours_covered'],
                progress['events_per_second'],
            )
            return
        eta = progress['eta_seconds']
        log.info(
            'backfill: %d events, %.1f of %g h covered (up to %s), %.0f events/s, ETA %s',
            progress['events'],
            progress['hours_covered'],
            self.row.hours,
            progress['event_time'] or 'none yet',
            progress['events_per_second'],
            'unknown' if eta is None else f'{eta:.0f} s',
        )


def backfill_progress(row: BackfillState) -> dict[str, Any]:
    """A backfill's state for `feedgen status`, `/metrics` and `/xrpc/_health`, as JSON-able data."""
    start = max(row.horizon, row.first_event_time or row.horizon)
    covered = 0.0 if row.event_time is None else max(0.0, (row.event_time - start) / 3.6e6)
    return {
        'state': 'backfilling' if row.finished_at is None else 'finished',
        'hours': row.hours,
        'horizon': _iso(row.horizon),
        'events': row.events,
        'hours_covered': round(covered, 3),
        'event_time': None if row.event_time is None else _iso(row.event_time),
        'events_per_second': round(row.rate, 1),
        'eta_seconds': None if row.eta_seconds is None else round(row.eta_seconds, 1),
        'started_at': row.started_at / 1000,
        'finished_at': None if row.finished_at is None else row.finished_at / 1000,
    }
