"""Jobs: periodic work run by apscheduler next to ingest (retention pruning; algorithms' own jobs).

Owns the scheduler and the pruning of old records. Pruning deletes posts, likes and reposts indexed
more than `retention_hours` ago, in small transactions so ingest is never blocked for long. Counters
stay exact: a like or repost is always indexed after the post it points at, so it is never pruned while
that post is kept, and the reply counts of kept parents are recounted.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import peewee
from apscheduler.schedulers.background import BackgroundScheduler

from feedgen.indexer import Recount, delete_posts
from feedgen.store import Like, Post, Repost

log = logging.getLogger(__name__)
PRUNE_CHUNK = 5000
PRUNE_EVERY_SECONDS = 600


def prune(db: peewee.Database, retention_hours: float, now: float | None = None) -> dict[str, int]:
    """Deletes what was indexed more than `retention_hours` ago; returns how many rows of each kind."""
    cutoff = int(((time.time() if now is None else now) - retention_hours * 3600) * 1000)
    removed = {'posts': 0, 'likes': 0, 'reposts': 0}
    while True:
        with db.atomic():
            ids = [i for (i,) in Post.select(Post.id).where(Post.indexed_at < cutoff).limit(PRUNE_CHUNK).tuples()]
            if not ids:
                break
            recount = Recount()
            removed['posts'] += delete_posts(Post.id.in_(ids), recount)
            recount.apply()
    for name, model in (('likes', Like), ('reposts', Repost)):
        while True:
            with db.atomic():
                old = model.select(model.uri).where(model.indexed_at < cutoff).limit(PRUNE_CHUNK)
                count = model.delete().where(model.uri.in_(old)).execute()
            removed[name] += count
            if count < PRUNE_CHUNK:
                break
    log.info('pruned records indexed before %d: %s', cutoff, removed)
    return removed


def start_scheduler(db: peewee.Database, retention_hours: float) -> BackgroundScheduler:
    """Starts the background scheduler with the pruning job (first run right away)."""
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        prune,
        'interval',
        seconds=PRUNE_EVERY_SECONDS,
        args=(db, retention_hours),
        id='prune',
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
    )
    scheduler.start()
    return scheduler
