"""Paging an algorithm to the end in tests, failing on what a reader would notice: repeats and dead ends."""

from __future__ import annotations

from typing import Any

import pytest

from feedgen.ranking.algorithm import Algorithm, FeedRequest, Item

MAX_PAGES = 1000


def walk_items(algorithm: Algorithm, limit: int, viewer: str | None = None, at_ms: int | None = None) -> list[Item]:
    """Every item of the feed, following cursors from the first page, as one reader's session sees it."""
    items: list[Item] = []
    cursor = None
    for _ in range(MAX_PAGES):
        page = algorithm.page(FeedRequest(limit=limit, cursor=cursor, viewer=viewer, at_ms=at_ms))
        assert len(page.items) <= limit
        assert page.items or page.cursor is None, 'a page with a cursor must have items'
        items.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            posts = [item.post for item in items]
            assert len(posts) == len(set(posts)), 'an item came twice'
            return items
    raise AssertionError('paging never ended')


def walk(algorithm: Algorithm, limit: int, viewer: str | None = None, at_ms: int | None = None) -> list[str]:
    """The posts of `walk_items`."""
    return [item.post for item in walk_items(algorithm, limit, viewer, at_ms)]


def count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[tuple[Any, ...]]:
    """Counts the calls of `owner.name` (made through `owner`) from now on: the list of their arguments."""
    calls: list[tuple[Any, ...]] = []
    method = getattr(owner, name)

    def counted(*args: Any) -> Any:
        calls.append(args)
        return method(*args)

    monkeypatch.setattr(owner, name, counted)
    return calls
