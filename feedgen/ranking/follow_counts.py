"""Follow counts: how many posts a feed may show each account a reader follows made in a time window, and how many of
them are replies, in reads bounded by the window's hours rather than by how much the accounts post.

Owns reading the hourly counts the writers of posts keep (`PostCount`, `feedgen.store.writes`): the hours wholly in the
window come from those rows, the partial hours at its two ends, and any hour with a post indexed after the moment
asked for, from the posts themselves. The same numbers as counting every post (`visible_posts` in the window, indexed
by then). Until a store made before the counts has them all (`feedgen.store.post_counts`), it counts every post.
Reads the store, never writes it.
"""

from __future__ import annotations

from collections import Counter

import peewee

from feedgen.store.models import HOUR_MS, Follow, Post, PostCount, visible_posts
from feedgen.store.post_counts import counts_filled
from feedgen.store.prepared import Prepared, marker

_VIEWER = marker('viewer')
_AFTER, _UNTIL, _INDEXED, _FIRST, _LAST = (-(2**62) - n for n in (201, 203, 207, 209, 211))
"""Stand-ins in the prepared queries (`feedgen.store.prepared`)."""


def _followed() -> peewee.ModelSelect:
    return Follow.select(Follow.subject).where(Follow.author == _VIEWER)


def _posts_counted() -> Prepared:
    """Each followed account's visible posts made in `(_AFTER, _UNTIL]` and indexed by `_INDEXED`."""
    query = (
        visible_posts()
        .select(Post.author, peewee.fn.COUNT(Post.id), peewee.fn.COUNT(Post.reply_parent))
        .where(Post.author.in_(_followed()), Post.sort_at > _AFTER, Post.sort_at <= _UNTIL)
        .where(Post.indexed_at <= _INDEXED)
        .group_by(Post.author)
    )
    return Prepared(query, (_VIEWER, _AFTER, _UNTIL, _INDEXED))


def _hours() -> peewee.ModelSelect:
    hours = (PostCount.hour >= _FIRST) & (PostCount.hour <= _LAST)
    return PostCount.select(PostCount.author).where(PostCount.author.in_(_followed()), hours)


_POSTS = _posts_counted()
_HOURS = Prepared(
    _hours()
    .select_extend(
        peewee.fn.SUM(PostCount.posts), peewee.fn.SUM(PostCount.replies), peewee.fn.MAX(PostCount.indexed_max)
    )
    .group_by(PostCount.author),
    (_VIEWER, _FIRST, _LAST),
)
_LATE_HOURS = Prepared(
    _hours().select_extend(PostCount.hour, PostCount.posts, PostCount.replies).where(PostCount.indexed_max > _INDEXED),
    (_VIEWER, _FIRST, _LAST, _INDEXED),
)


def followed_post_counts(viewer: str, since: int, as_of: int, indexed_until: int) -> list[tuple[str, int, int]]:
    """`(author, posts, replies)` of each account `viewer` follows with visible posts made in `(since, as_of]` and
    indexed by `indexed_until` (milliseconds), by author."""
    first, last = since // HOUR_MS + 1, (as_of + 1) // HOUR_MS - 1  # the hours wholly in the window
    if first > last or not counts_filled():
        return sorted(_POSTS.tuples(viewer, since, as_of, indexed_until))
    posts: Counter[str] = Counter()
    replies: Counter[str] = Counter()

    def add(counted: list[tuple[str, int, int]], authors: set[str] | None = None, sign: int = 1) -> None:
        for author, author_posts, author_replies in counted:
            if authors is None or author in authors:
                posts[author] += sign * author_posts
                replies[author] += sign * author_replies

    hours = list(_HOURS.tuples(viewer, first, last))
    add([row[:3] for row in hours])
    add(list(_POSTS.tuples(viewer, since, first * HOUR_MS - 1, indexed_until)))
    add(list(_POSTS.tuples(viewer, (last + 1) * HOUR_MS - 1, as_of, indexed_until)))
    if any(newest > indexed_until for *_, newest in hours):  # hours with a post indexed since: count their posts
        late: dict[int, set[str]] = {}
        for author, hour, hour_posts, hour_replies in _LATE_HOURS.tuples(viewer, first, last, indexed_until):
            late.setdefault(hour, set()).add(author)
            add([(author, hour_posts, hour_replies)], sign=-1)
        for hour, authors in late.items():
            add(list(_POSTS.tuples(viewer, hour * HOUR_MS - 1, (hour + 1) * HOUR_MS - 1, indexed_until)), authors)
    return [(author, count, replies[author]) for author, count in sorted(posts.items()) if count]
