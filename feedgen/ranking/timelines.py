"""Timelines: each reader's newest candidates of a personal feed's streams, kept by a serving worker and brought up
to date from what is indexed since (`following`'s posts and reposts of the accounts a reader follows).

Read from the store, such a page seeks every followed account (hundreds of index ranges) per page. A worker keeps
instead, per reader and stream, the newest `DEPTH` candidates: rows of the followed accounts before the stream's
other filters (visibility, reposts of followed authors...), as `(key, id)`, and what checking them against those
filters found. Before each page, the worker reads what was indexed since it last looked, once for all its readers
(`feedgen.ranking.arrivals`; on SQLite only when something was written since):
each stream's new rows (one range of its `indexed_at` index; the newest millisecond read before is read again only
when it has more rows since), added to the timelines of the readers following their account, and the posts writers
changed (`PostChange`: created, deleted, hidden or shown, counted again), whose candidates' check results are
forgotten. The page then reads whom the reader follows (one index range, as one text):
when that changed, or the timeline is older than `REBUILD_SECONDS`, it is built again. The page's rows are the
candidates below its cursor that pass the filters, in the feed's order, checked in the store `CHECK` at a time unless
checked since their post last changed: the rows the store's walk gives. A page the kept candidates cannot fill
(deeper than they reach, or most filtered out) is read from the store.

A stream that shows one row per group (`following`: a post at its newest repost by a followed account) keeps each
candidate's group too: a candidate no newer kept candidate shares a group with is the newest of its group (every
newer one would be kept), so it is checked without that condition, the costly part of the check.

That holds while the store's writer indexes rows in `indexed_at` order and notes changes in `PostChange.id` order, as
ingest does (one writer, batches in turn, each stamped when it starts). A row stamped before the newest one a worker
has seen but committed after it (a clock stepped back, a second writer of posts) is missed until the timeline is
rebuilt, at most `REBUILD_SECONDS` later, well within the hour pruning keeps `PostChange` rows. Memory is bounded:
`READERS` readers a worker, up to `2 * DEPTH` candidates a stream each."""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import peewee

from feedgen.ranking.arrivals import POST_CHANGES, Arrivals, Follower
from feedgen.ranking.pagination import Stream
from feedgen.store.models import Follow, Post
from feedgen.store.prepared import Prepared, Row, marker

DEPTH = 160
"""How many of a stream's newest candidates a timeline is built with: enough for a page of `MAX_LIMIT` when a third
of them are filtered out (a page of 30, the app's, five times over)."""
READERS = 200
"""How many readers' timelines a worker keeps, the least recently read going first (about 150 KB each at most)."""
REBUILD_SECONDS = 300.0
"""How old a timeline gets before it is built again from the store, whatever was indexed since."""
CHECK = 64
"""How many candidates one query checks against the stream's filters."""
WINDOW_MS = 15 * 60_000
"""How far back in time the first range of a build reads (widened until it holds `DEPTH` candidates)."""
READER = marker('reader')
_FOLLOWS = {
    sqlite: Prepared(Follow.select(concat).where(Follow.author == READER), (READER,))
    for sqlite, concat in (
        (True, peewee.fn.group_concat(Follow.subject, ' ')),  # in the order of the `(author, subject)` index it reads
        (False, peewee.fn.string_agg(Follow.subject, ' ').order_by(Follow.subject)),
    )
}
"""Whom a reader follows, as one text in a stable order: comparing it is how a page sees a change."""
_IDS = tuple(-(2**62) - 64 - n for n in range(CHECK))
_URIS = tuple(marker(f'checked {n}') for n in range(CHECK))
_END = object()
"""Stands for the first candidate a timeline does not keep."""


@dataclass(frozen=True)
class Check:
    """A prepared query selecting the stream's rows (with `rank_key`, `item_id` and the `post_id` they read) whose id is
    one of `CHECK` ids, given first, then the reader `readers` times."""

    query: Prepared
    readers: int
    blank: Any
    """An id no row has, for the unused places."""

    def run(self, reader: str, ids: list[Any]) -> Iterator[Row]:
        return self.query.run(*ids, *[self.blank] * (CHECK - len(ids)), *(reader,) * self.readers)


@dataclass(frozen=True)
class TimelineSource:
    """One stream of a personal feed as a timeline keeps it.

    `candidates` walks the followed accounts' rows, before the stream's filters, by the stream's `(key, id)` (its
    one marker: the reader). `arrivals` reads `(indexed_at, key, id, account, group)` of rows indexed at or after its
    one value, in `indexed_at` order, `later` of those indexed after it. `check` selects the stream's rows among
    candidates; `newest_check` too, for candidates known to be the newest of their group (without testing it).
    """

    candidates: Stream
    arrivals: Arrivals
    """What the table gained since: `(indexed_at, key, id, account, group)`."""
    check: Check
    newest_check: Check
    top: tuple[int, Any] | None
    """Above every `(key, id)` of the stream (None: the integer one pagination uses)."""
    grouped: bool

    @classmethod
    def of(
        cls,
        candidates: Stream,
        indexed_at: peewee.Field,
        check: tuple[peewee.ModelSelect, Sequence[Any]],
        *,
        group: tuple[peewee.Field, peewee.ModelSelect, Sequence[Any]] | None = None,
        text_ids: bool = False,
    ) -> TimelineSource:
        """The source of `candidates`, whose table stamps rows in `indexed_at`. `check` is the stream's rows, its id
        column compared with `IN` the stand-ins of `ids(text_ids)`, and the markers standing for the reader in it.
        `group`, for a stream showing one row per group: the group's column, and the check without that condition
        (with its markers)."""
        model = candidates.query.model
        key, item_id = candidates.key, candidates.item_id
        grouping = group[0] if group else peewee.Value(None)
        slots = _URIS if text_ids else _IDS

        def prepared(query: peewee.ModelSelect, readers: Sequence[Any]) -> Check:
            selected = query.select_extend(key.alias('rank_key'), item_id.alias('item_id'), Post.id.alias('post_id'))
            return Check(Prepared(selected, (*slots, *readers)), len(readers), '' if text_ids else -1)

        return cls(
            Stream(candidates.query.select_extend(grouping.alias('grouped')), key, item_id, candidates.markers),
            Arrivals.of(indexed_at, (key, item_id, model.author, grouping)),
            prepared(*check),
            prepared(*group[1:]) if group else prepared(*check),
            (2**63 - 1, '') if text_ids else None,
            group is not None,
        )

    @staticmethod
    def ids(text_ids: bool = False) -> tuple[Any, ...]:
        """The stand-ins a check compares its id column with."""
        return _URIS if text_ids else _IDS


Key = tuple[Any, Any]
"""A candidate's `(key, id)` in its stream."""


@dataclass
class _Candidates:
    """A stream's kept candidates: every candidate whose `(key, id)` is above `bottom` (None: all of them), and the
    check results of those checked since their post last changed.

    A check result depends on the candidate's post (the post itself, or the reposted one): `watched` finds the
    candidates by that post's id, and in a grouped stream (whose group is the post's URI) `members` by its URI.
    """

    keys: list[Key] = field(default_factory=list)
    """Ascending."""
    bottom: Key | None = None
    groups: dict[Any, Any] = field(default_factory=dict)
    """A grouped stream's candidates' groups, by id."""
    newest: dict[Any, Key] = field(default_factory=dict)
    """A grouped stream's newest kept candidate of each group."""
    members: dict[Any, set[Key]] = field(default_factory=dict)
    """A grouped stream's kept candidates by group."""
    checked: dict[Key, Row | None] = field(default_factory=dict)
    """The row a check found (None: it left the candidate out)."""
    watched: dict[int, set[Key]] = field(default_factory=dict)
    """The checked candidates by the id of the post their result read."""

    def add(self, key: Key, group: Any) -> None:
        if self.bottom is not None and key <= self.bottom:
            return
        at = bisect.bisect_left(self.keys, key)
        if at < len(self.keys) and self.keys[at] == key:
            return
        self.keys.insert(at, key)
        if group is not None:
            self.groups[key[1]] = group
            members = self.members.setdefault(group, set())
            for member in members:  # whether they are the newest changed (even if their post's change is read first)
                self.checked.pop(member, None)
            members.add(key)
            if self.newest.get(group, key) <= key:
                self.newest[group] = key
        if len(self.keys) > 2 * DEPTH:
            self.bottom = self.keys[-DEPTH - 1]
            for dropped in self.keys[:-DEPTH]:
                self.checked.pop(dropped, None)
                group = self.groups.pop(dropped[1], None)
                if group is not None:
                    self.members[group].discard(dropped)
                    if not self.members[group]:
                        del self.members[group], self.newest[group]
            del self.keys[:-DEPTH]

    def newest_of_group(self, key: Key) -> bool:
        """Whether no newer kept candidate shares `key`'s group (so none in the stream does)."""
        group = self.groups.get(key[1])
        return group is not None and self.newest[group] <= key

    def remember(self, key: Key, row: Row | None, post_id: int | None) -> None:
        """Keeps a check's result for `key`, which read the post `post_id` (None: only its group's)."""
        self.checked[key] = row
        if post_id is not None:
            self.watched.setdefault(post_id, set()).add(key)

    def forget(self, post_id: int, uri: str | None) -> None:
        """Forgets the check results that read the post `post_id` (at `uri`, when it still exists)."""
        for key in self.watched.pop(post_id, ()):
            self.checked.pop(key, None)
        for key in self.members.get(uri, ()) if uri is not None else ():
            self.checked.pop(key, None)


@dataclass
class _Timeline:
    follows: str
    accounts: frozenset[str]
    """The accounts in `follows`."""
    built: float
    streams: list[_Candidates]


Entry = tuple[tuple[Any, ...], int, Any]
"""A candidate in the feed's order: its place, its source's index, its `Key` (`_END`: where those not kept begin)."""


class Timelines(Follower):
    """The timelines a worker keeps of one feed's `sources`, and how far it has read what was indexed since; safe to
    share between a server's threads (one page at a time)."""

    def __init__(self, sources: Sequence[TimelineSource]) -> None:
        super().__init__([source.arrivals for source in sources], POST_CHANGES)
        self.sources = sources
        self._kept: OrderedDict[str, _Timeline] = OrderedDict()
        self._followers: dict[str, set[str]] = {}
        """The kept readers following each account."""

    def rows(self, reader: str, count: int, below: Sequence[Key | None]) -> list[tuple[int, Row]] | None:
        """The first `count` items of the reader's feed below `below[i]` in each source's stream (a `(key, id)`, or
        None: from the top), as `(source index, row)`, in the feed's order: by key, a source listed earlier first
        within one key, then by id; or None when the kept candidates cannot tell (read the store then)."""
        with self._lock:
            self._drop_stale()
            self._up_to_date()
            timeline = self._timeline(reader)
            kept = zip(timeline.streams, below, strict=True)
            merged = heapq.merge(*(_entries(index, *stream) for index, stream in enumerate(kept)), reverse=True)
            found: list[tuple[tuple[Any, ...], int, Row]] = []
            checked = 0
            ended = False
            while len(found) < count and not ended:
                # The next candidates in the feed's order, as many as the page still needs by the share that passed.
                size = min(CHECK, math.ceil((count - len(found)) * (checked + 1) / (len(found) + 1)))
                chunk: list[list[Key]] = [[] for _ in self.sources]
                for _, index, key in itertools.islice(merged, size):
                    if key is _END:
                        ended = True  # the end of what is kept: the page is whole only if it fills above it
                        break
                    chunk[index].append(key)
                if not any(chunk) and not ended:
                    break  # every candidate is kept, and all were read
                checked += sum(map(len, chunk))
                found += self._checked(reader, timeline, chunk)
            if ended and len(found) < count:
                return None
            return [(index, row) for _, index, row in found[:count]]

    def _checked(
        self, reader: str, timeline: _Timeline, chunk: list[list[Key]]
    ) -> list[tuple[tuple[Any, ...], int, Row]]:
        """The rows of `chunk` (candidates per source) that pass their stream's filters, in the feed's order."""
        rows = []
        for index, keys in enumerate(chunk):
            source, kept = self.sources[index], timeline.streams[index]
            newest: list[Key] = []
            others: list[Key] = []
            for key in keys:
                if key not in kept.checked:
                    (newest if source.grouped and kept.newest_of_group(key) else others).append(key)
            for check, part in ((source.newest_check, newest), (source.check, others)):
                if not part:
                    continue
                passed = {row.item_id: row for row in check.run(reader, [key[1] for key in part])}
                for key in part:
                    row = passed.get(key[1])
                    if row is not None and row.rank_key != key[0]:
                        row = None  # another row with the candidate's id since (SQLite reuses a deleted row's id)
                    # A stream without groups has post ids for ids; a grouped one's group is the post's URI.
                    post_id = row.post_id if row is not None else None if source.grouped else key[1]
                    kept.remember(key, row, post_id)
            rows += [((key[0], -index, key[1]), index, kept.checked[key]) for key in keys if kept.checked[key]]
        return sorted(rows, key=itemgetter(0), reverse=True)

    def _arrived(self, index: int, rows: list[tuple[Any, ...]]) -> None:
        """Adds source `index`'s new rows to the timelines of the readers following their account."""
        for _, key, item_id, account, group in rows:
            for reader in self._followers.get(account, ()):
                self._kept[reader].streams[index].add((key, item_id), group)

    def _changed(self, changes: list[tuple[Any, ...]]) -> None:
        """Forgets the check results of the posts changed."""
        for _, post_id, uri in changes:
            for timeline in self._kept.values():
                for kept in timeline.streams:
                    kept.forget(post_id, uri)

    def _drop_stale(self) -> None:
        """Drops the timelines older than `REBUILD_SECONDS` (built again when read: nothing to bring up to date)."""
        stale = time.monotonic() - REBUILD_SECONDS
        for reader in [reader for reader, timeline in self._kept.items() if timeline.built < stale]:
            self._drop(reader)

    def _forget(self) -> None:
        self._kept.clear()
        self._followers.clear()

    def _timeline(self, reader: str) -> _Timeline:
        sqlite = not isinstance(Follow._meta.database.obj, peewee.PostgresqlDatabase)
        follows = next(_FOLLOWS[sqlite].tuples(reader))[0] or ''
        timeline = self._kept.get(reader)
        if timeline is not None:
            self._kept.move_to_end(reader)
            if timeline.follows == follows:  # `_catch_up` dropped it if it was too old
                return timeline
            self._drop(reader)
        streams = []
        for source in self.sources:
            kept = _Candidates()
            rows = source.candidates.widening_rows(source.top, DEPTH, WINDOW_MS, (reader,))
            for row in rows:
                kept.add((row.rank_key, row.item_id), row.grouped if source.grouped else None)
            kept.bottom = kept.keys[0] if len(rows) >= DEPTH else None
            streams.append(kept)
        timeline = _Timeline(follows, frozenset(follows.split(' ')), time.monotonic(), streams)
        self._kept[reader] = timeline
        for account in timeline.accounts:
            self._followers.setdefault(account, set()).add(reader)
        while len(self._kept) > READERS:
            self._drop(next(iter(self._kept)))
        return timeline

    def _drop(self, reader: str) -> None:
        for account in self._kept.pop(reader).accounts:
            followers = self._followers[account]
            followers.discard(reader)
            if not followers:
                del self._followers[account]


def _entries(index: int, kept: _Candidates, after: Key | None) -> Iterator[Entry]:
    """The kept candidates of source `index` below `after`, newest first, then, when candidates below them are not
    kept, `_END` at the place where those begin."""
    keys = kept.keys[: bisect.bisect_left(kept.keys, after)] if after is not None else kept.keys[:]
    for key in reversed(keys):
        yield (key[0], -index, key[1]), index, key
    if kept.bottom is not None:
        yield (kept.bottom[0], -index, kept.bottom[1]), index, _END
