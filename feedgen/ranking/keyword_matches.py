"""Matches: feeds whose filter no index answers (keywords) decided once per post by a job, paged by index.

Owns `index_matches`, the job body that tests every post indexed since its last run against one feed's
filter and records the matching ones in `FeedEntry` under the feed's `state_key`, and `entries_stream`,
the index range on `(key, sort_at, post_id)` a page of such a feed walks. Reads posts; writes only
`FeedEntry` and its own `JobState` row, in small transactions.

A job remembers the last post id it tested. Ids grow with insertion, but SQLite hands the id of a deleted
newest post to the next one, so each run tests again the last `OVERLAP` ids before its mark (inserting an
entry twice is a no-op); an entry whose post was replaced this way is ignored at page time, since the page
joins on both id and `sort_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import peewee

from feedgen.ranking.pagination import Stream
from feedgen.store.models import FeedEntry, Post, job_position, save_job_position, write_transaction

CHUNK = 2000
"""Posts read and tested per transaction."""
OVERLAP = 500
"""Ids before the mark tested again on each run."""
log = logging.getLogger(__name__)


def index_matches(db: peewee.Database, key: str, test: Callable[[Post], bool]) -> int:
    """Tests the posts indexed since the last run of the job `key` and records those `test` accepts.

    Also drops the entries of posts older than every post still in the store (pruned). Returns how many
    posts were tested.
    """
    saved = job_position(key)
    position = max(0, saved - OVERLAP) if saved is not None else 0
    tested = 0
    while True:
        posts = list(Post.select().where(Post.id > position).order_by(Post.id).limit(CHUNK))
        if not posts:
            break
        rows = [{'key': key, 'sort_at': post.sort_at, 'post_id': post.id} for post in posts if test(post)]
        position = posts[-1].id
        with write_transaction(db):
            if rows:
                FeedEntry.insert_many(rows).on_conflict_ignore().execute()
            save_job_position(key, position)
        tested += len(posts)
        if len(posts) < CHUNK:
            break
    stale = FeedEntry.key == key
    oldest = Post.select(peewee.fn.MIN(Post.sort_at)).scalar()
    if oldest is not None:
        stale &= FeedEntry.sort_at < oldest
    with write_transaction(db):
        FeedEntry.delete().where(stale).execute()
    log.debug('matches %s: tested %d posts up to id %d', key, tested, position)
    return tested


def entries_stream(key: str, *columns: peewee.Field) -> Stream:
    """The visible posts recorded under `key`, as a stream walking `FeedEntry`'s `(key, sort_at, post_id)`."""
    query = (
        FeedEntry.select(*columns)
        .join(Post, on=(Post.id == FeedEntry.post_id) & (Post.sort_at == FeedEntry.sort_at))
        .where(FeedEntry.key == key, Post.hidden == False)  # noqa: E712 (peewee expression)
    )
    return Stream(query, FeedEntry.sort_at, FeedEntry.post_id)


def has_entry(key: str, post: Post) -> bool:
    """True when the job `key` has recorded `post`."""
    recorded: bool = (
        FeedEntry.select()
        .where(FeedEntry.key == key, FeedEntry.sort_at == post.sort_at, FeedEntry.post_id == post.id)
        .exists()
    )
    return recorded
