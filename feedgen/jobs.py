"""Jobs: periodic work run by apscheduler next to ingest (retention pruning; algorithms' own jobs).

Owns the scheduler, which runs the pruning (records; receipts after a day), the expiry of reader
feedback, and every `Job` the served feeds' algorithms declare (`Algorithm.jobs()`: refreshing scores,
indexing keyword matches), once each when two feeds declare the same job. Each job runs first right
away (and again soon after ingest writes its first batch: `run_soon`), then every `Job.seconds`; a run
that is due while the previous one still runs is skipped. Each run logs one line with its outcome (what
it returned, or its error); apscheduler's own lines are left out. Pruning deletes posts, likes and
reposts indexed more than `retention_hours` ago (and plugin indexers' rows past theirs), in small
transactions so ingest is never blocked for long. Counters stay exact: a like or repost is always indexed
after the post it points at, so it is never pruned while that post is kept, and the reply counts of kept
parents are recounted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

import peewee
from apscheduler.schedulers.background import BackgroundScheduler

from feedgen.ingest.plugin_indexers import RecordIndexer, prune_plugin_tables
from feedgen.ranking.algorithm import Job
from feedgen.ranking.plugins import Feed
from feedgen.serve.interactions import prune_interactions
from feedgen.serve.receipts import prune_receipts
from feedgen.store.models import Like, Post, Repost, write_transaction
from feedgen.store.writes import Recount, delete_posts

log = logging.getLogger(__name__)
PRUNE_CHUNK = 5000
PRUNE_EVERY_SECONDS = 600


def prune(
    db: peewee.Database, retention_hours: float, now: float | None = None, indexers: Sequence[RecordIndexer] = ()
) -> dict[str, int]:
    """Deletes what was indexed more than `retention_hours` ago, and the rows of plugin `indexers` past their
    retention; returns how many rows of each kind (plugin tables by name)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    cutoff = now_ms - int(retention_hours * 3_600_000)
    removed = {'posts': 0, 'likes': 0, 'reposts': 0}
    while True:
        with write_transaction(db):
            ids = [i for (i,) in Post.select(Post.id).where(Post.indexed_at < cutoff).limit(PRUNE_CHUNK).tuples()]
            if not ids:
                break
            recount = Recount()
            removed['posts'] += delete_posts(Post.id.in_(ids), recount)
            recount.apply()
    for name, model in (('likes', Like), ('reposts', Repost)):
        while True:
            with write_transaction(db):
                old = model.select(model.uri).where(model.indexed_at < cutoff).limit(PRUNE_CHUNK)
                count = model.delete().where(model.uri.in_(old)).execute()
            removed[name] += count
            if count < PRUNE_CHUNK:
                break
    if indexers:
        with write_transaction(db):
            removed |= prune_plugin_tables(indexers, retention_hours, now_ms)
    return removed


def feed_jobs(feeds: Iterable[Feed]) -> list[Job]:
    """The jobs the algorithms of `feeds` declare, each name once."""
    return list({job.name: job for feed in feeds for job in feed.algorithm.jobs()}.values())


def run_logged(job: Job, db: peewee.Database) -> None:
    """Runs `job` once and logs one line with its outcome: what it returned (a count or counts), or its error."""
    started = time.monotonic()
    try:
        result = job.run(db)
    except Exception as error:
        log.exception('job %s failed after %.3fs: %s', job.name, time.monotonic() - started, error)
        return
    log.info('job %s done in %.3fs%s', job.name, time.monotonic() - started, _outcome(result))


def _outcome(result: object) -> str:
    if isinstance(result, dict):
        return ': ' + ', '.join(f'{key} {value}' for key, value in result.items())
    if isinstance(result, int):
        return f': {result}'
    return ''


def start_scheduler(
    db: peewee.Database,
    retention_hours: float,
    jobs: Iterable[Job] = (),
    indexers: Sequence[RecordIndexer] = (),
) -> BackgroundScheduler:
    """Starts the background scheduler with the pruning jobs (of `indexers`' tables too) and `jobs` (first runs right
    away)."""
    scheduler = BackgroundScheduler(daemon=True)
    pruning = partial(prune, retention_hours=retention_hours, indexers=indexers)
    builtin = [
        Job(name='prune', run=pruning, seconds=PRUNE_EVERY_SECONDS),
        Job(name='prune interactions', run=prune_interactions, seconds=PRUNE_EVERY_SECONDS),
        Job(name='prune receipts', run=prune_receipts, seconds=PRUNE_EVERY_SECONDS),
    ]
    for job in [*builtin, *jobs]:
        scheduler.add_job(
            run_logged,
            'interval',
            seconds=job.seconds,
            args=(job, db),
            id=job.name,
            name=job.name,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
        )
    scheduler.start()
    return scheduler


def run_soon(scheduler: BackgroundScheduler, seconds: float = 1.0) -> None:
    """Moves every job's next run to `seconds` from now: once the first records are in, say, rather than a period
    after a first run that found the store empty."""
    at = datetime.now(UTC) + timedelta(seconds=seconds)
    for job in scheduler.get_jobs():
        job.modify(next_run_time=at)
