"""Pagination: keyset cursors that never repeat or skip an item, for algorithms to build pages with.

Owns the cursor format of keyset pages (`<key>:<id>`, integers) and `keyset_page`, which walks an index
on `(key, id)` from the cursor down: an index range scan, never a sort of the table. Because `id` is
unique, items sharing a `key` (posts with the same timestamp or score) are neither repeated nor skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import peewee

from feedgen.algorithm import FeedRequest, InvalidCursor, Item, Page

_CURSOR = re.compile(r'^(-?[0-9]{1,19}):([0-9]{1,19})$')


def encode_cursor(key: int, item_id: int) -> str:
    return f'{key}:{item_id}'


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Parses a keyset cursor into `(key, id)`.

    Raises:
        InvalidCursor: the cursor is not two integers joined by a colon.
    """
    match = _CURSOR.match(cursor)
    if not match:
        raise InvalidCursor(f'malformed cursor {cursor[:40]!r}')
    return int(match[1]), int(match[2])


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
    if request.cursor is not None:
        after = decode_cursor(request.cursor)
        query = query.where(peewee.Tuple(key, item_id) < peewee.Tuple(*after))
    rows = list(query.order_by(key.desc(), item_id.desc()).limit(request.limit + 1).objects())
    more = len(rows) > request.limit
    rows = rows[: request.limit]
    items = [Item(post=getattr(row, uri.name), context=context(row)) for row in rows]
    cursor = None
    if more and rows:
        last = rows[-1]
        cursor = encode_cursor(getattr(last, key.name), getattr(last, item_id.name))
    return Page(items=items, cursor=cursor)
