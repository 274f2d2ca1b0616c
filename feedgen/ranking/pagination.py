"""Pagination: keyset cursors that never repeat or skip an item, for algorithms to build pages with.

Owns the cursor format of keyset pages (integers joined by colons: `<key>:<id>`, or with a leading
snapshot or moment) and three ways to page:
- a `Stream` (and `keyset_page`, its one-off form) walks one index on `(key, id)` from the cursor down: an index
  range scan, never a sort of the table. Because `id` is unique, items sharing a `key` are neither repeated nor
  skipped. A stream compiles its SQL once and reads rows as named tuples straight off the database cursor.
- `streams_page` walks several such ranges at once (one per hashtag, say) and merges them.
- `ranked_page` pages an in-memory ranking `(score, id)`; the cursor keeps what the ranking was computed
  with (the moment, say), so every page of a session ranks alike.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import peewee

from feedgen.ranking.algorithm import FeedRequest, InvalidCursor, Item, Page
from feedgen.store.prepared import Prepared, Row

T = TypeVar('T')
_CURSOR_PART = re.compile(r'-?[0-9]{1,19}')
_INT64 = 2**63


def encode_cursor(*keys: int) -> str:
    return ':'.join(str(key) for key in keys)


def decode_cursor(cursor: str, count: int = 2) -> tuple[int, ...]:
    """Parses a keyset cursor into its `count` integers (`(key, id)` by default).

    Raises:
        InvalidCursor: the cursor is not `count` integers joined by colons.
    """
    parts = cursor.split(':')
    if len(parts) != count or not all(_CURSOR_PART.fullmatch(part) for part in parts):
        raise InvalidCursor(f'malformed cursor {cursor[:40]!r}')
    keys = tuple(int(part) for part in parts)
    if not all(-_INT64 <= key < _INT64 for key in keys):
        raise InvalidCursor(f'cursor out of range {cursor[:40]!r}')
    return keys


_TOP = (2**63 - 1, 2**63 - 1)
"""Above every `(key, id)`: where a first page walks from."""
_AFTER = (-(2**62) - 7, -(2**62) - 11)
_FLOOR = (-(2**62) - 13, -(2**62) - 17)
_COUNT = 2**31 - 19
_SCAN_OFFSET = 2**31 - 23
_CEILING = -(2**62) - 29
"""Stand-ins in a walk's prepared SQL (`feedgen.store.prepared`) for the page's `(key, id)`, the floor's, the row count,
how far down the floor is and the key a range is below."""


@dataclass(frozen=True, eq=False)
class Stream:
    """One index range to walk from the top: a select of candidate rows and the `(key, id)` of its index.

    A stream prepares its SQL once (`feedgen.store.prepared`) and reads rows as named tuples of the selected columns
    plus `rank_key` and `item_id`: keep a stream for as long as its query stays the same (a module constant, or
    an attribute of the algorithm) to pay for compiling only once. Values that change per request (the reader)
    go in as `markers` (`feedgen.store.prepared.marker`), given to each walk as `values`.
    """

    query: peewee.ModelSelect
    key: peewee.Field
    item_id: peewee.Field
    markers: tuple[Any, ...] = ()

    def rows(
        self,
        after: tuple[Any, ...] | None,
        count: int,
        values: Sequence[Any] = (),
        floor: tuple[Any, ...] | None = None,
    ) -> Iterator[Row]:
        """The first `count` rows below `after` (a `(key, id)`, or None: from the top), by `(key, id)` descending.

        One index range scan, read as the rows are iterated; with a `floor`, it stops at that `(key, id)` (included).
        """
        if floor is None:
            return self._walk.run(*(after or _TOP), count, *values)
        return self._floored_walk.run(*(after or _TOP), *floor, count, *values)

    def page(
        self,
        request: FeedRequest,
        uri: peewee.Field,
        context: Callable[[Any], str | None] = lambda row: None,
        values: Sequence[Any] = (),
    ) -> Page:
        """The page below `request.cursor`, newest (highest key) first.

        Args:
            uri: the selected column holding the post URI.
            context: makes an item's `feedContext` from its row.
            values: the values of the stream's markers.
        """
        rows = list(self.rows(_after(request), request.limit + 1, values))
        return _page(rows, request, uri.name, context)

    def bounded_page(
        self,
        request: FeedRequest,
        uri: peewee.Field,
        scan_rows: int,
        context: Callable[[Any], str | None] = lambda row: None,
        values: Sequence[Any] = (),
    ) -> Page | None:
        """Like `page`, but walking at most the next `scan_rows` entries of the key's index (the rows of its table,
        before the query's filters): None when those do not hold a full page (ask another way then).

        Cheap when the query's filters keep many rows, and bounded when they keep few.
        """
        rows = self.bounded_rows(_after(request), request.limit + 1, scan_rows, values)
        return None if rows is None else _page(rows, request, uri.name, context)

    def bounded_rows(
        self, after: tuple[Any, ...] | None, count: int, scan_rows: int, values: Sequence[Any] = ()
    ) -> list[Row] | None:
        """Like `rows`, but walking at most the next `scan_rows` entries of the key's index: None when those do not
        hold `count` rows (ask another way then)."""
        after = after or _TOP
        floor = next(self._floor.run(*after, scan_rows - 1), None)
        rows = list(self.rows(after, count, values, floor))
        if len(rows) < count and floor is not None:
            return None
        return rows

    def widening_rows(
        self, after: tuple[Any, ...] | None, count: int, window: int, values: Sequence[Any] = ()
    ) -> list[Row]:
        """The same rows as `rows`, read through key ranges below `after`: the top `window` of keys first, then the
        keys below it, each range wider than all before it together, until `count` rows are read or the index's lowest
        key is. The next range is as wide as the rows found so far say a page needs, and half again (2 to 16 times
        the keys read so far); after no rows at all, 16 times.

        For queries the database can only answer by sorting every matching row (`author IN (...)` ordered by time,
        say): each range sorts only the rows inside it, so the work follows the rows a page needs, not every match.
        """
        highest = next(self._highest.tuples(), (None,))[0]
        lowest = next(self._lowest.tuples(), (None,))[0]
        if highest is None or lowest is None:
            return []
        top = highest if after is None else min(after[0], highest)
        start, ceiling = after or _TOP, top + 1
        found: list[Row] = []
        while True:
            floor = max(top - window, lowest)
            found += self._ranged_walk.run(*start, ceiling, floor, count - len(found), *values)
            if len(found) >= count or floor <= lowest:
                return found
            ceiling = floor
            window *= min(16, max(2, math.ceil(1.5 * count / len(found)))) if found else 16

    @cached_property
    def _walk(self) -> Prepared:
        return self._prepare(floored=False)

    @cached_property
    def _ranged_walk(self) -> Prepared:
        row = peewee.Tuple(self.key, self.item_id)
        query = self.query.select_extend(self.key.alias('rank_key'), self.item_id.alias('item_id'))
        query = query.where(row < peewee.Tuple(*_AFTER), self.key < _CEILING, self.key >= _FLOOR[0])
        query = query.order_by(self.key.desc(), self.item_id.desc()).limit(_COUNT)
        return Prepared(query, (*_AFTER, _CEILING, _FLOOR[0], _COUNT, *self.markers))

    @cached_property
    def _highest(self) -> Prepared:
        return Prepared(self.key.model.select(peewee.fn.MAX(self.key)), ())

    @cached_property
    def _lowest(self) -> Prepared:
        return Prepared(self.key.model.select(peewee.fn.MIN(self.key)), ())

    @cached_property
    def _floored_walk(self) -> Prepared:
        return self._prepare(floored=True)

    def _prepare(self, floored: bool) -> Prepared:
        row = peewee.Tuple(self.key, self.item_id)
        query = self.query.select_extend(self.key.alias('rank_key'), self.item_id.alias('item_id'))
        query = query.where(row < peewee.Tuple(*_AFTER))
        if floored:
            query = query.where(row >= peewee.Tuple(*_FLOOR))
        query = query.order_by(self.key.desc(), self.item_id.desc()).limit(_COUNT)
        return Prepared(query, (*_AFTER, *(_FLOOR if floored else ()), _COUNT, *self.markers))

    @cached_property
    def _floor(self) -> Prepared:
        """The `(key, id)` some entries below a `(key, id)` in the key's index."""
        query = (
            self.key.model.select(self.key, self.item_id)
            .where(peewee.Tuple(self.key, self.item_id) < peewee.Tuple(*_AFTER))
            .order_by(self.key.desc(), self.item_id.desc())
            .limit(1)
            .offset(_SCAN_OFFSET)
        )
        return Prepared(query, (*_AFTER, _SCAN_OFFSET))


def keyset_page(
    query: peewee.ModelSelect,
    request: FeedRequest,
    key: peewee.Field,
    item_id: peewee.Field,
    uri: peewee.Field,
    context: Callable[[Any], str | None] = lambda row: None,
) -> Page:
    """Returns the page of `query` below `request.cursor`, ordered by `(key, item_id)` descending.

    Args:
        query: a select of the candidate rows; it must select `uri`.
        key: the ranking column (a time or a score, as an integer).
        item_id: a unique integer column that breaks ties in `key`.
        uri: the column holding the post URI.
        context: makes an item's `feedContext` from its row.

    To page the same query again and again, keep a `Stream` of it and call its `page`: its SQL is then compiled once.
    """
    return Stream(query, key, item_id).page(request, uri, context)


def _after(request: FeedRequest) -> tuple[int, ...] | None:
    return decode_cursor(request.cursor) if request.cursor is not None else None


def _page(
    read: list[Row],
    request: FeedRequest,
    uri: str,
    context: Callable[[Any], str | None],
) -> Page:
    """The page of the rows `read` below the cursor (one more than a page when there is a next one); `uri` names the
    column holding the post URI."""
    rows = read[: request.limit]
    items = [Item(getattr(row, uri), context(row)) for row in rows]
    cursor = None
    if len(read) > request.limit and rows:
        cursor = encode_cursor(rows[-1].rank_key, rows[-1].item_id)
    return Page(items=items, cursor=cursor, trace={'candidates': len(read)})


def stream_rows(streams: Sequence[Stream], after: tuple[int, ...] | None, count: int) -> list[Row]:
    """The first `count` distinct rows below `after` over all `streams`, by `(key, id)` descending.

    Each stream reads at most `count` rows down its own index; the rows are merged and a row found in two
    streams (a post with two of the hashtags) is kept once. Every row has `rank_key` and `item_id`.
    """
    if len(streams) == 1:
        return list(streams[0].rows(after, count))
    found: dict[int, Row] = {}
    for stream in streams:
        for row in stream.rows(after, count):
            found[row.item_id] = row
    return sorted(found.values(), key=lambda row: (row.rank_key, row.item_id), reverse=True)[:count]


def streams_page(streams: Sequence[Stream], request: FeedRequest, context: Callable[[Row], str | None]) -> Page:
    """Returns the page below `request.cursor` of the rows of `streams` (which select `uri`), newest first.

    One query per stream reads at most `limit + 1` rows down its index; see `stream_rows`.
    """
    return _page(stream_rows(streams, _after(request), request.limit + 1), request, 'uri', context)


def encode_session_cursor(session: Sequence[int], last: tuple[int, int, *tuple[object, ...]]) -> str:
    """The cursor of a ranked page (what `session_cursor` reads): the session values, then the `(score, id)` of the
    page's last entry (`last` may hold more after those two)."""
    return encode_cursor(*session, last[0], last[1])


def session_cursor(request: FeedRequest, size: int) -> tuple[tuple[int, ...] | None, tuple[int, int] | None]:
    """The session values and the `(score, id)` to page below, from a `ranked_page` cursor; None on a first page.

    Raises:
        InvalidCursor: the cursor is not `size` session values and a `(score, id)`.
    """
    if request.cursor is None:
        return None, None
    values = decode_cursor(request.cursor, size + 2)
    return values[:size], (values[-2], values[-1])


def ranked_page(
    ranking: Iterable[tuple[int, int, T]], limit: int, after: tuple[int, int] | None, session: tuple[int, ...]
) -> tuple[list[tuple[int, int, T]], str | None]:
    """The page of an in-memory ranking of `(score, id, value)` below `after`, by `(score, id)` descending.

    Returns the page's entries and its cursor: the `session` values the ranking was computed with (such as
    the moment it ranks as of), then the last entry's `(score, id)`. The next page computes the ranking
    with the same session values, so the order stays fixed while the reader pages.
    """
    below = (entry for entry in ranking if after is None or (entry[0], entry[1]) < after)
    top = heapq.nlargest(limit + 1, below, key=lambda entry: (entry[0], entry[1]))
    page = top[:limit]
    cursor = encode_session_cursor(session, page[-1]) if len(top) > limit else None
    return page, cursor
