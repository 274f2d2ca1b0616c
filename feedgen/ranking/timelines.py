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
import heapq
import itertools
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import peewee

from feedgen.ranking.pagination import Stream
from feedgen.store.models import Follow
from feedgen.store.prepared import Prepared, Row, marker

DEPTH = 160
"""How many of a stream's newest candidates a timeline is built with: enough for a page of `MAX_LIMIT` when a third
of them are filtered out (a page of 30, the app's, five times over)."""
READERS = 300
"""How many readers' timelines a worker keeps, the least recently read going first (about 100 KB each at most)."""
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
_FOLLOWS = {
    sqlite: Prepared(Follow.select(concat(Follow.subject, ' ')).where(Follow.author == READER), (READER,))
    for sqlite, concat in ((True, peewee.fn.group_concat), (False, peewee.fn.string_agg))
}
"""Whom a reader follows, as one text (in the follows index's order): comparing it is how a page sees a change."""
_SINCE = -(2**62) - 31
"""The stand-in for the first `indexed_at` an arrivals query reads."""
_IDS = tuple(-(2**62) - 64 - n for n in range(CHECK))
_URIS = tuple(marker(f'checked {n}') for n in range(CHECK))
_END = object()
"""Stands for the first candidate a timeline does not keep."""


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
    follows: str
    accounts: frozenset[str]
    """The accounts in `follows`."""
    built: float
    streams: list[_Candidates]
    lock: threading.Lock = field(default_factory=threading.Lock)


class Timelines:
    """The timelines a worker keeps of one feed's `sources`; safe to share between a server's threads."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = sources
        self._kept: OrderedDict[str, _Timeline] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, reader: str, count: int, below: Sequence[tuple[Any, Any] | None]) -> list[tuple[int, Row]] | None:
        """The first `count` items of the reader's feed below `below[i]` in each source's stream (a `(key, id)`, or
        None: from the top), as `(source index, row)`, in the feed's order: by key, a source listed earlier first
        within one key, then by id; or None when the kept candidates cannot tell (read the store then)."""
        timeline = self._timeline(reader)
        streams = [
            _entries(index, kept, after)
            for index, (kept, after) in enumerate(zip(timeline.streams, below, strict=True))
        ]
        merged = heapq.merge(*streams, reverse=True)
        found: list[tuple[tuple[Any, ...], int, Row]] = []
        checked = 0
        while len(found) < count:
            # The next candidates in the feed's order, as many as the page still needs by the share that passed so far.
            size = min(CHECK, math.ceil((count - len(found)) * (checked + 1) / (len(found) + 1)))
            chunk: list[list[Any]] = [[] for _ in self.sources]
            for _, index, item_id in itertools.islice(merged, size):
                if item_id is _END:
                    break
                chunk[index].append(item_id)
            else:
                if any(chunk):
                    checked += sum(map(len, chunk))
                    found += self._checked(reader, chunk)
                    continue
                break
            # Stopped at the end of what is kept: the page is whole only if it filled above it.
            found += self._checked(reader, chunk)
            return None if len(found) < count else [(index, row) for _, index, row in found[:count]]
        return [(index, row) for _, index, row in found[:count]]

    def _checked(self, reader: str, chunk: list[list[Any]]) -> list[tuple[tuple[Any, ...], int, Row]]:
        """The rows of `chunk` (candidate ids per source) that pass their stream's filters, in the feed's order."""
        rows = [
            ((row.rank_key, -index, row.item_id), index, row)
            for index, ids in enumerate(chunk)
            if ids
            for row in self.sources[index].check.run(
                *ids, *[self.sources[index].blank] * (CHECK - len(ids)), *(reader,) * self.sources[index].readers
            )
        ]
        return sorted(rows, key=itemgetter(0), reverse=True)

    def _timeline(self, reader: str) -> _Timeline:
        sqlite = not isinstance(Follow._meta.database.obj, peewee.PostgresqlDatabase)
        follows = next(_FOLLOWS[sqlite].tuples(reader))[0] or ''
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
                    if account in timeline.accounts:
                        kept.add((key, item_id))
                if arrived:
                    kept.since = arrived[-1][0]
        return timeline

    def _build(self, reader: str, follows: str) -> _Timeline:
        streams = []
        for source in self.sources:
            # The newest stamp first: a row indexed while the candidates are read is read again as an arrival.
            since = next(source.newest.tuples())[0] or 0
            rows = source.candidates.widening_rows(source.top, DEPTH, WINDOW_MS, (reader,))
            keys = sorted((row.rank_key, row.item_id) for row in rows)
            streams.append(_Candidates(keys, keys[0] if len(keys) >= DEPTH else None, since))
        timeline = _Timeline(follows, frozenset(follows.split(' ')), time.monotonic(), streams)
        with self._lock:
            self._kept[reader] = timeline
            self._kept.move_to_end(reader)
            while len(self._kept) > READERS:
                self._kept.popitem(last=False)
        return timeline


def _entries(
    index: int, kept: _Candidates, after: tuple[Any, Any] | None
) -> Iterator[tuple[tuple[Any, ...], int, Any]]:
    """The kept candidates of source `index` below `after` as entries, newest first, then, when candidates below them
    are not kept, `_END` at the place where those begin."""
    keys = kept.keys[: bisect.bisect_left(kept.keys, after)] if after is not None else kept.keys[:]
    for key, item_id in reversed(keys):
        yield (key, -index, item_id), index, item_id
    if kept.bottom is not None:
        yield (kept.bottom[0], -index, kept.bottom[1]), index, _END
