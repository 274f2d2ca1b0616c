"""Timelines: each reader's newest candidates of a personal feed's streams, kept by a serving worker and brought up
to date from what was indexed since (`following`'s posts and reposts of the accounts a reader follows).

Read from the store, such a page seeks every followed account (hundreds of index ranges) per page. A worker keeps
instead, per reader and stream, the newest `DEPTH` candidates: rows of the followed accounts before the stream's
other filters (visibility, reposts of followed authors...), as `(key, id)` only. A page first reads whom the reader
follows (one index range): when that changed, or the timeline is older than `REBUILD_SECONDS`, the timeline is
built again; otherwise the rows indexed since it was last read (one range of the `indexed_at` index, from that
millisecond on) are added when a followed account made them. The page's rows are the candidates below its cursor
that pass the stream's filters, checked in the store `CHECK` at a time, so they are the rows the store's walk gives.
A page the kept candidates cannot fill (deeper than they reach, or most filtered out) is read from the store.

That holds while the store's writer indexes rows in `indexed_at` order, as ingest does (one writer, batches in
turn, each stamped when it starts). A row stamped before the newest one a worker has seen but committed after it (a
clock stepped back, a second writer of posts) is missed until the timeline is rebuilt, at most `REBUILD_SECONDS`
later. Memory is bounded: `READERS` readers a worker, up to `2 * DEPTH` candidates a stream each.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from feedgen.ranking.pagination import Stream
from feedgen.store.models import Follow
from feedgen.store.prepared import Prepared, Row, marker

DEPTH = 64
"""How many of a stream's newest candidates a timeline is built with (two pages of 30 and the row after)."""
READERS = 500
"""How many readers' timelines a worker keeps, the least recently read going first."""
REBUILD_SECONDS = 300.0
"""How old a timeline gets before it is built again from the store, whatever was indexed since."""
ARRIVALS = 2000
"""The most rows indexed since a timeline was last read that bringing it up to date reads; more, and it is built
again (a reader away for long, a backfill)."""
CHECK = 64
"""How many candidates one query checks against the stream's filters."""
WINDOW_MS = 15 * 60_000
"""How far back in time the first range of a build reads (widened until it holds `DEPTH` candidates)."""
READER = marker('reader')
_FOLLOWS = Prepared(Follow.select(Follow.subject).where(Follow.author == READER), (READER,))
_SINCE = -(2**62) - 31
"""The stand-in for the first `indexed_at` an arrivals query reads."""
_IDS = tuple(-(2**62) - 64 - n for n in range(CHECK))
_URIS = tuple(marker(f'checked {n}') for n in range(CHECK))


@dataclass(frozen=True)
class Source:
    """One stream of a personal feed as a timeline keeps it.

    `candidates` walks the followed accounts' rows, before the stream's filters, by the stream's `(key, id)` (its
    one marker: the reader). `arrivals` reads `(indexed_at, key, id, account)` of rows indexed
    at or after its one value, in `indexed_at` order. `check` selects the stream's rows (with `rank_key` and `item_id`)
    whose id is one of `CHECK` ids, given first, then the reader `readers` times.
    """

    candidates: Stream
    newest: Prepared
    """The newest `indexed_at` of the table."""
    arrivals: Prepared
    check: Prepared
    blank: Any
    """An id no row has, for the unused places of `check`."""
    readers: int = 1
    """How many times the reader is given to `check`."""
    top: tuple[int, Any] | None = None
    """Above every `(key, id)` of the stream (None: the integer one pagination uses)."""

    @classmethod
    def of(
        cls,
        candidates: Stream,
        indexed_at: peewee.Field,
        check: peewee.ModelSelect,
        *,
        text_ids: bool = False,
        readers: Sequence[Any],
    ) -> Source:
        """The source of `candidates`, whose table stamps rows in `indexed_at`; `check` selects the stream's rows, its
        id column compared with `IN` the stand-ins of `ids(text_ids)`, the reader standing as `readers` (markers)."""
        model = candidates.query.model
        key, item_id = candidates.key, candidates.item_id
        arrivals = (
            model.select(indexed_at, key, item_id, model.author)
            .where(indexed_at >= _SINCE)
            .order_by(indexed_at)
            .limit(ARRIVALS + 1)
        )
        slots = _URIS if text_ids else _IDS
        checked = check.select_extend(key.alias('rank_key'), item_id.alias('item_id'))
        return cls(
            candidates,
            Prepared(model.select(peewee.fn.MAX(indexed_at)), ()),
            Prepared(arrivals, (_SINCE,)),
            Prepared(checked, (*slots, *readers)),
            '' if text_ids else -1,
            len(readers),
            (2**63 - 1, '') if text_ids else None,
        )

    @staticmethod
    def ids(text_ids: bool = False) -> tuple[Any, ...]:
        """The stand-ins a `check` query compares its id column with."""
        return _URIS if text_ids else _IDS


@dataclass
class _Candidates:
    """A stream's kept candidates: every candidate whose `(key, id)` is above `bottom` (None: all of them)."""

    keys: list[tuple[Any, Any]]
    """Ascending."""
    bottom: tuple[Any, Any] | None
    since: int
    """The newest `indexed_at` read: rows from this millisecond on are read again when the timeline is."""

    def add(self, key: tuple[Any, Any]) -> None:
        if self.bottom is not None and key <= self.bottom:
            return
        at = bisect.bisect_left(self.keys, key)
        if at == len(self.keys) or self.keys[at] != key:
            self.keys.insert(at, key)
        if len(self.keys) > 2 * DEPTH:
            self.bottom = self.keys[-DEPTH - 1]
            del self.keys[:-DEPTH]


@dataclass
class _Timeline:
    follows: frozenset[str]
    built: float
    streams: list[_Candidates]
    lock: threading.Lock = field(default_factory=threading.Lock)


class Timelines:
    """The timelines a worker keeps of one feed's `sources`; safe to share between a server's threads."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = sources
        self._kept: OrderedDict[str, _Timeline] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, reader: str, count: int, below: Sequence[tuple[Any, Any] | None]) -> list[list[Row] | None]:
        """For each source, the first `count` rows of the reader's stream below `below[i]` (a `(key, id)`, or None:
        from the top), or None when its kept candidates cannot tell (read them from the store then)."""
        timeline = self._timeline(reader)
        return [
            self._rows(source, reader, kept, after, count)
            for source, kept, after in zip(self.sources, timeline.streams, below, strict=True)
        ]

    def _timeline(self, reader: str) -> _Timeline:
        follows = frozenset(subject for (subject,) in _FOLLOWS.tuples(reader))
        with self._lock:
            timeline = self._kept.get(reader)
            if timeline is not None:
                self._kept.move_to_end(reader)
        if timeline is None or timeline.follows != follows or time.monotonic() - timeline.built > REBUILD_SECONDS:
            return self._build(reader, follows)
        with timeline.lock:
            for source, kept in zip(self.sources, timeline.streams, strict=True):
                arrived = list(source.arrivals.tuples(kept.since))
                if len(arrived) > ARRIVALS:
                    return self._build(reader, follows)
                for _, key, item_id, account in arrived:
                    if account in follows:
                        kept.add((key, item_id))
                if arrived:
                    kept.since = arrived[-1][0]
        return timeline

    def _build(self, reader: str, follows: frozenset[str]) -> _Timeline:
        streams = []
        for source in self.sources:
            # The newest stamp first: a row indexed while the candidates are read is read again as an arrival.
            since = next(source.newest.tuples())[0] or 0
            rows = source.candidates.widening_rows(source.top, DEPTH, WINDOW_MS, (reader,))
            keys = sorted((row.rank_key, row.item_id) for row in rows)
            streams.append(_Candidates(keys, keys[0] if len(keys) >= DEPTH else None, since))
        timeline = _Timeline(follows, time.monotonic(), streams)
        with self._lock:
            self._kept[reader] = timeline
            self._kept.move_to_end(reader)
            while len(self._kept) > READERS:
                self._kept.popitem(last=False)
        return timeline

    @staticmethod
    def _rows(
        source: Source, reader: str, kept: _Candidates, after: tuple[Any, Any] | None, count: int
    ) -> list[Row] | None:
        keys = kept.keys[: bisect.bisect_left(kept.keys, after)] if after is not None else list(kept.keys)
        found: list[Row] = []
        while keys and len(found) < count:
            chunk, keys = keys[-CHECK:], keys[:-CHECK]
            ids = [item_id for _, item_id in chunk]
            checked = source.check.run(*ids, *[source.blank] * (CHECK - len(ids)), *(reader,) * source.readers)
            found += sorted(checked, key=lambda row: (row.rank_key, row.item_id), reverse=True)
        if len(found) >= count:
            return found[:count]
        return found if kept.bottom is None else None
