"""Pagination: keyset cursors that never repeat or skip an item, for algorithms to build pages with.

Owns the cursor format of keyset pages (integers joined by colons: `<key>:<id>`, or with a leading
snapshot or moment) and three ways to page:
- `keyset_page` walks one index on `(key, id)` from the cursor down: an index range scan, never a sort
  of the table. Because `id` is unique, items sharing a `key` are neither repeated nor skipped.
- `streams_page` walks several such ranges at once (one per hashtag, say) and merges them.
- `ranked_page` pages an in-memory ranking `(score, id)`; the cursor keeps what the ranking was computed
  with (the moment, say), so every page of a session ranks alike.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import peewee

from feedgen.algorithm import FeedRequest, InvalidCursor, Item, Page

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
        query: a select of the candidate rows; it must select `key`, `item_id` and `uri`.
        key: the ranking column (a time or a score, as an integer).
        item_id: a unique integer column that breaks ties in `key`.
        uri: the column holding the post URI.
        context: makes an item's `feedContext` from its row.
    """
    rows = list(_plain_rows(_below_cursor(query, request, key, item_id).limit(request.limit + 1)))
    return _page(rows, request, key, item_id, uri, context)


def filtered_keyset_page(
    query: peewee.ModelSelect,
    request: FeedRequest,
    key: peewee.Field,
    item_id: peewee.Field,
    uri: peewee.Field,
    keep: Callable[[Any], bool],
    scan_rows: int,
    context: Callable[[Any], str | None] = lambda row: None,
) -> Page | None:
    """Like `keyset_page`, keeping only the rows `keep` accepts, from at most `scan_rows` rows of `query`.

    One index range scan that stops as soon as the page is full: cheap when kept rows are common. Returns None
    when the first `scan_rows` rows below the cursor do not hold a full page (the caller then asks another way).
    """
    kept, scanned = [], 0
    for row in _plain_rows(_below_cursor(query, request, key, item_id).limit(scan_rows)):
        scanned += 1
        if keep(row):
            kept.append(row)
            if len(kept) > request.limit:
                return _page(kept, request, key, item_id, uri, context, scanned)
    if scanned == scan_rows:
        return None
    return _page(kept, request, key, item_id, uri, context, scanned)


def _plain_rows(query: peewee.ModelSelect) -> Iterator[SimpleNamespace]:
    """The rows of `query` as plain objects with one attribute per selected column, straight off the cursor.

    Building a model instance (or running peewee's converters) per row cost more than the index walk itself.
    """
    cursor = query.model._meta.database.execute(query)
    names = [column[0] for column in cursor.description]
    for row in cursor:
        yield SimpleNamespace(**dict(zip(names, row, strict=True)))


def _below_cursor(
    query: peewee.ModelSelect, request: FeedRequest, key: peewee.Field, item_id: peewee.Field
) -> peewee.ModelSelect:
    if request.cursor is not None:
        after = decode_cursor(request.cursor)
        query = query.where(peewee.Tuple(key, item_id) < peewee.Tuple(*after))
    return query.order_by(key.desc(), item_id.desc())


def _page(
    read: list[Any],
    request: FeedRequest,
    key: peewee.Field,
    item_id: peewee.Field,
    uri: peewee.Field,
    context: Callable[[Any], str | None],
    candidates: int | None = None,
) -> Page:
    rows = read[: request.limit]
    items = [Item(post=getattr(row, uri.name), context=context(row)) for row in rows]
    cursor = None
    if len(read) > request.limit and rows:
        last = rows[-1]
        cursor = encode_cursor(getattr(last, key.name), getattr(last, item_id.name))
    return Page(items=items, cursor=cursor, trace={'candidates': len(read) if candidates is None else candidates})


@dataclass(frozen=True)
class Stream:
    """One index range to walk from the top: a select of candidate rows and the `(key, id)` of its index."""

    query: peewee.ModelSelect
    key: peewee.Field
    item_id: peewee.Field


def stream_rows(streams: Sequence[Stream], after: tuple[int, ...] | None, count: int) -> list[dict[str, Any]]:
    """The first `count` distinct rows below `after` over all `streams`, by `(key, id)` descending.

    Each stream reads at most `count` rows down its own index; the rows are merged and a row found in two
    streams (a post with two of the hashtags) is kept once. Every row has `rank_key` and `item_id`.
    """
    found: dict[int, dict[str, Any]] = {}
    for stream in streams:
        query = stream.query.select_extend(stream.key.alias('rank_key'), stream.item_id.alias('item_id'))
        if after is not None:
            query = query.where(peewee.Tuple(stream.key, stream.item_id) < peewee.Tuple(*after))
        for row in query.order_by(stream.key.desc(), stream.item_id.desc()).limit(count).dicts():
            found[row['item_id']] = row
    return sorted(found.values(), key=lambda row: (row['rank_key'], row['item_id']), reverse=True)[:count]


def streams_page(
    streams: Sequence[Stream], request: FeedRequest, context: Callable[[dict[str, Any]], str | None]
) -> Page:
    """Returns the page below `request.cursor` of the rows of `streams` (which select `uri`), newest first.

    One query per stream reads at most `limit + 1` rows down its index; see `stream_rows`.
    """
    after = decode_cursor(request.cursor) if request.cursor is not None else None
    read = stream_rows(streams, after, request.limit + 1)
    rows = read[: request.limit]
    cursor = encode_cursor(rows[-1]['rank_key'], rows[-1]['item_id']) if len(read) > request.limit else None
    items = [Item(post=row['uri'], context=context(row)) for row in rows]
    return Page(items=items, cursor=cursor, trace={'candidates': len(read)})


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
    cursor = encode_cursor(*session, page[-1][0], page[-1][1]) if len(top) > limit else None
    return page, cursor
