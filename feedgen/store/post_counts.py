"""Post counts: how many posts each author made in each hour (`PostCount`), so `quiet` reads an author's rate from a
row an hour instead of from every post.

Owns filling the counts of a store that lacks them. The writers of posts keep the counts exact from then on
(`feedgen.store.writes.recount_buckets`: like the posts' counters, a count is recounted from the post rows in the
transaction that changes them), so the counts are a function of the post rows alone, whatever order or batching wrote
them, and a crash loses none. A store made before the counts, or written in bulk past the indexer, is counted once, an
hour of posts a transaction (`fill_post_counts`); until that ends, readers count the posts themselves
(`counts_filled`).
"""

from __future__ import annotations

import logging
import time

import peewee

from feedgen.store.models import (
    HOUR_MS,
    JobState,
    Post,
    PostCount,
    job_position,
    save_job_position,
    visible_posts,
    write_transaction,
)
from feedgen.store.writes import count_columns, save_counts

log = logging.getLogger(__name__)

FILL_STATE = 'post counts filled'
"""The `JobState` row of the fill: the first hour not counted yet, or `FILLED`."""
FILLED = 2**62
_PROGRESS_SECONDS = 10.0


def counts_filled() -> bool:
    """Whether every bucket is counted (`fill_post_counts` ended)."""
    return job_position(FILL_STATE) == FILLED


def fill_post_counts(db: peewee.Database, again: bool = False) -> int:
    """Counts the hours of posts not counted yet, one hour a transaction, from the oldest; returns how many it counted.

    A new store has nothing to count. A store made before `PostCount` is counted when first opened; a store written
    in bulk, past the indexer, is counted again from nothing (`again`). Several processes opening the store share the
    work: each transaction counts the next hour not counted yet.
    """
    if not again and counts_filled():  # the usual case, read without taking the write lock
        return 0
    if again:
        with write_transaction(db):
            PostCount.delete().execute()
            JobState.delete().where(JobState.name == FILL_STATE).execute()
    hours, started = 0, time.monotonic()
    reported = started
    while _fill_hour(db):
        hours += 1
        if time.monotonic() - reported > _PROGRESS_SECONDS:
            reported = time.monotonic()
            log.info('counting posts per author and hour: %d hours in %.0f s', hours, reported - started)
    if hours:
        log.info('counted posts per author and hour: %d hours in %.1f s', hours, time.monotonic() - started)
    return hours


def _fill_hour(db: peewee.Database) -> bool:
    """Counts the next hour with posts not counted yet, in one transaction; False when none is left."""
    with write_transaction(db):
        position = job_position(FILL_STATE)
        if position == FILLED:
            return False
        if isinstance(db, peewee.PostgresqlDatabase):
            db.execute_sql('LOCK TABLE "post" IN SHARE MODE')  # no post written while its hour is counted
        oldest = Post.select(peewee.fn.MIN(Post.sort_at))
        first = (oldest if position is None else oldest.where(Post.sort_at >= position * HOUR_MS)).scalar()
        if first is not None:
            hour = first // HOUR_MS
            window = (Post.sort_at >= hour * HOUR_MS) & (Post.sort_at < (hour + 1) * HOUR_MS)
            query = visible_posts().select(Post.author, peewee.Value(hour), *count_columns()).where(window)
            save_counts(db.execute(query.group_by(Post.author)).fetchall())
        position = FILLED if first is None else hour + 1
        save_job_position(FILL_STATE, position)
        return first is not None
