"""Jobs: periodic work run by apscheduler next to ingest (retention pruning; algorithms' own jobs).

Owns the scheduler, which runs the pruning (records; receipts after a day), the expiry of reader feedback, and every
`Job` the served feeds' algorithms declare (`Algorithm.jobs()`: refreshing scores, indexing keyword matches), once each
when two feeds declare the same job. Each job runs first right away (and again soon after ingest writes its first batch:
`run_soon`), then every `Job.seconds`; a run that is due while the previous one still runs is skipped. Each run logs one
line with its outcome (what it returned, or its error); apscheduler's own lines are left out. Pruning deletes posts,
likes and reposts indexed more than `retention_hours` ago, labels put that long ago on posts no longer held, plugin
indexers' rows past their retention, and the `PostChange` and `VoteChange` rows older than an hour, in short
transactions with pauses between them (`feedgen.store.batches`), so ingest never waits on it for long, even for the
backlog of a restart after a long stop. Follows are kept longer only when their author is a reader (has a `ReaderGraph`:
asked for a feed with a verified token), the only follows any algorithm reads; a reader seen for the first time has
their follows read from their repository again (`feedgen.ingest.graph_sync`), so a follow pruned before they asked is
not missed. Counters stay exact: the kept posts that a pruned like, repost or reply pointed at have their counters
lowered in the same transaction (rarely any: a like is indexed after the post it points at, which is pruned first).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import peewee
from apscheduler.schedulers.background import BackgroundScheduler

from feedgen.ingest.plugin_indexers import RecordIndexer, prune_plugin_tables
from feedgen.ranking.algorithm import Job
from feedgen.ranking.plugins import Feed
from feedgen.serve.interactions import prune_interactions
from feedgen.serve.receipts import prune_receipts
from feedgen.store.batches import Batches
from feedgen.store.labels import prune_labels
from feedgen.store.models import (
    CHANGES_KEEP_SECONDS,
    CHANGES_PRUNED,
    Follow,
    Like,
    Post,
    PostChange,
    ReaderGraph,
    Repost,
    VoteChange,
    save_job_position,
)
from feedgen.store.statements import run_in_chunks
from feedgen.store.writes import Recount, delete_posts, delete_subject_records

log = logging.getLogger(__name__)
PRUNE_EVERY_SECONDS = 600
PRUNE_MAX_ROWS = 500
"""The most rows (of all tables) one prune transaction changes."""


def prune(
    db: peewee.Database,
    retention_hours: float,
    now: float | None = None,
    indexers: Sequence[RecordIndexer] = (),
    max_rows: int = PRUNE_MAX_ROWS,
) -> dict[str, int]:
    """Deletes what was indexed more than `retention_hours` ago (follows: only those of accounts that are not
    readers; labels: those on posts no longer held), and the rows of plugin `indexers` past their retention;
    returns how many rows of each kind (plugin tables by name)."""
    moment = time.time() if now is None else now
    cutoff = int((moment - retention_hours * 3600) * 1000)
    batches = Batches(db, max_rows)

    def posts(size: int) -> int:
        recount = Recount()
        deleted = delete_posts(Post.indexed_at < cutoff, recount, max_rows=size)
        recount.apply()
        return deleted

    def oldest(model: type[Like] | type[Repost], size: int) -> list[tuple[str, str, str, bool]]:
        """The first old records (at least one) whose deletion changes at most `size` rows (each record, and the
        counter and `PostChange` note of each kept post they point at): `(uri, subject, author, subject is kept)`."""
        old = model.select(model.uri, model.subject, model.author, Post.id.is_null(False))
        old = old.where(model.indexed_at < cutoff).join(Post, peewee.JOIN.LEFT_OUTER, on=Post.uri == model.subject)
        found: list[tuple[str, str, str, bool]] = []
        kept: set[str] = set()
        changed = 0
        for uri, subject, author, points_at_kept in old.limit(size).tuples():
            changed += 1 + (2 if points_at_kept and subject not in kept else 0)
            if found and changed > size:
                break
            found.append((uri, subject, author, points_at_kept))
            if points_at_kept:
                kept.add(subject)
        return found

    found_by_read: dict[type[peewee.Model], list[tuple[str, str, str, bool]]] = {}
    """The records each kind's read step found, which its next transaction deletes."""

    def read_records(model: type[Like] | type[Repost], size: int) -> None:
        """Finds the records the next transaction deletes, and reads, through each index their deletion changes,
        their entries, and the rows of the kept posts they point at (a cold cache's disk reads, before the write
        lock: `Batches.run`)."""
        found = found_by_read[model] = oldest(model, size)
        if not found:
            return
        uris, subjects, authors, kept = zip(*found, strict=True)
        read = 'COUNT(*)'
        if model is Repost:
            _read(model, 'uri', uris)
            _read(model, 'subject', set(subjects))
        else:  # the `Like` view spells a like's URI and subject out of its row: read the rows through the author
            read = 'COUNT(subject)'
        # the `(author, indexed_at)` entries of the old records only
        _read(model, 'author', set(authors), where=f' AND indexed_at < {cutoff:d}', read=read)
        held = {subject for subject, is_kept in zip(subjects, kept, strict=True) if is_kept}
        _read(Post, 'uri', held, read='SUM(like_count + repost_count)')  # the rows of the posts

    def records(model: type[Like] | type[Repost], size: int) -> int:
        """Deletes the records the read step found (or, without one, `oldest` finds), changing the counters of the
        kept posts they point at. Records found outside the transaction and deleted since by ingest are gone: then
        it looks again, so that a run ends only when no old record is left."""
        recount = Recount()
        found = found_by_read.pop(model, None)
        uris = [uri for uri, *_ in found] if found else []
        deleted = delete_subject_records(model, 'uri', uris, recount, note_voters=False) if uris else 0
        if not deleted:
            uris = [uri for uri, *_ in oldest(model, size)]
            deleted = delete_subject_records(model, 'uri', uris, recount, note_voters=False)
        recount.apply()
        return deleted

    removed = {
        'posts': batches.run(posts),
        'likes': batches.run(partial(records, Like), partial(read_records, Like)),
        'reposts': batches.run(partial(records, Repost), partial(read_records, Repost)),
        'follows': 0,
    }
    after: tuple[int, str] = (-1, '')

    def old_follows(size: int) -> list[tuple[int, str, str, bool]]:
        """The next `size` follows older than `cutoff` from where the last deletion stopped:
        `(indexed_at, uri, author, author is a reader)`."""
        reader = Follow.author.in_(ReaderGraph.select(ReaderGraph.did))
        old = Follow.select(Follow.indexed_at, Follow.uri, Follow.author, reader)
        old = old.where(Follow.indexed_at < cutoff, peewee.Tuple(Follow.indexed_at, Follow.uri) > peewee.Tuple(*after))
        return list(old.order_by(Follow.indexed_at, Follow.uri).limit(size).tuples())

    def read_follows(size: int) -> None:
        """Reads, through both indexes the deletion changes, the entries of the follows `follows` deletes next."""
        dropped = [(uri, author) for _, uri, author, reader in old_follows(size) if not reader]
        if dropped:
            uris, authors = zip(*dropped, strict=True)
            _read(Follow, 'uri', uris)
            _read(Follow, 'author', set(authors))  # the `(author, subject)` entries

    def follows(size: int) -> int:
        """Reads `size` follows older than `cutoff` from where the last call stopped; deletes those of non-readers."""
        nonlocal after
        read = old_follows(size)
        if read:
            after = read[-1][:2]
            dropped = [uri for _, uri, _, reader in read if not reader]
            removed['follows'] += delete_subject_records(Follow, 'uri', dropped, Recount())
        return len(read)

    batches.run(follows, read_follows)
    removed['labels'] = prune_labels(cutoff, batches)
    for changes in (PostChange, VoteChange):
        batches.run(partial(_prune_changes, changes, int((moment - CHANGES_KEEP_SECONDS) * 1000)))
    return removed | prune_plugin_tables(indexers, retention_hours, int(moment * 1000), batches)


def _read(
    model: type[peewee.Model], column: str, values: Collection[Any], where: str = '', read: str = 'COUNT(*)'
) -> None:
    """Reads `read` of `model`'s rows whose `column` is one of `values` (and that match the raw SQL `where`), a raw
    statement a chunk (`run_in_chunks`): the index entries it selects through (into the page cache, for the
    transaction that changes them next), and the rows when `read` needs a column the index lacks."""
    select = f'SELECT {read} FROM "{model._meta.table_name}" WHERE "{column}" IN'
    for _ in run_in_chunks(model._meta.database, select, sorted(values), where):
        pass  # an aggregate: its one step reads every entry


def _prune_changes(changes: type[PostChange] | type[VoteChange], cutoff: int, size: int) -> int:
    """Deletes the oldest `changes` rows, those older than `cutoff` (up to `size` rows changed, with `PostChange`'s
    position saved, at least one), never the newest (its id is not reused).

    A note's time grows with its id, so the oldest rows are the first ids: it reads `size` of them from the start of
    the table's key and keeps those before the first younger one. (Searching for the rows older than `cutoff`, with no
    index on the time, scans the whole table, holding the write lock, once none is left.)"""
    newest = changes.select(peewee.fn.MAX(changes.id)).scalar()
    first = changes.select(changes.id, changes.at).order_by(changes.id).limit(max(1, size - 1)).tuples()
    old = itertools.takewhile(lambda note: note[1] < cutoff and note[0] != newest, first)
    ids = [note_id for note_id, _ in old]
    if not ids:
        return 0
    changes.delete().where(changes.id.in_(ids)).execute()
    if changes is PostChange:
        save_job_position(CHANGES_PRUNED, ids[-1])
    return len(ids)


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
