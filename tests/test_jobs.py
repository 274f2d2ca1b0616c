"""feedgen.jobs: retention pruning by indexing time, and the scheduler that runs it."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest

from feedgen import jobs
from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest.events import decode_frame
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import LIKE
from feedgen.jobs import feed_jobs, prune, run_logged, run_soon, start_scheduler
from feedgen.ranking.algorithm import Job
from feedgen.ranking.plugins import discover_algorithms, make_feed
from feedgen.store import batches
from feedgen.store.labels import LabelState, store_labels
from feedgen.store.likes import delete_likes
from feedgen.store.models import (
    CHANGES_KEEP_SECONDS,
    CHANGES_PRUNED,
    Follow,
    Label,
    Like,
    Post,
    PostChange,
    PostTerm,
    ReaderGraph,
    Repost,
    VoteChange,
    job_position,
    open_database,
    write_transaction,
)
from tests import frames
from tests.conftest import POSTGRES_URL, empty_postgres
from tests.paging import walk
from tests.stores import database_records, write_like
from tests.worlds import NOW_MS, NOW_S, READER

ALICE, BOB = 'did:plc:alice', 'did:plc:bob'
HOUR = 3600.0
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason='FEEDGEN_TEST_DATABASE_URL is not set')


def _index_at(db: peewee.Database, now: float, messages: list[bytes]) -> None:
    Pipeline(Indexer(db, 'test', clock=lambda: now)).feed_all(messages)


@contextmanager
def rows_per_transaction(db: peewee.Database) -> Iterator[list[int]]:
    """The rows each write transaction on `db`'s SQLite connection changes inside the block, in order."""
    changed: list[int] = []
    connection = db.connection()

    def trace(statement: str) -> None:
        if statement.startswith('BEGIN'):
            changed.append(-connection.total_changes)
        elif statement == 'COMMIT':
            changed[-1] += connection.total_changes

    connection.set_trace_callback(trace)
    try:
        yield changed
    finally:
        connection.set_trace_callback(None)


def test_prune_removes_only_what_was_indexed_before_the_retention_window(db: peewee.Database) -> None:
    old_post = 'at://did:plc:alice/app.bsky.feed.post/old'
    like = frames.subject_record('app.bsky.feed.like', frames.strong_ref(old_post))
    _index_at(
        db,
        1_000 * HOUR,
        [
            frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/old', frames.post_record('hi', langs=['en']))]),
            frames.commit(2, BOB, [('create', 'app.bsky.feed.like/l1', like)]),
            frames.commit(
                3, BOB, [('create', 'app.bsky.graph.follow/f', frames.subject_record('app.bsky.graph.follow', ALICE))]
            ),
        ],
    )
    _index_at(
        db,
        1_070 * HOUR,
        [
            frames.commit(4, ALICE, [('create', 'app.bsky.feed.post/new', frames.post_record('hi', langs=['en']))]),
            frames.commit(5, BOB, [('create', 'app.bsky.feed.like/l2', like)]),
            frames.commit(
                6,
                BOB,
                [
                    (
                        'create',
                        'app.bsky.feed.repost/r',
                        frames.subject_record('app.bsky.feed.repost', frames.strong_ref(old_post)),
                    )
                ],
            ),
        ],
    )
    removed = prune(db, retention_hours=24, now=1_080 * HOUR)
    assert removed == {'posts': 1, 'likes': 1, 'reposts': 0, 'follows': 1, 'labels': 0}
    assert [p.uri for p in Post.select()] == ['at://did:plc:alice/app.bsky.feed.post/new']
    assert PostTerm.select().count() == 1
    assert [like.uri for like in Like.select()] == ['at://did:plc:bob/app.bsky.feed.like/l2']
    assert Repost.select().count() == 1
    assert Follow.select().count() == 0, 'BOB is no reader: his follow goes with the retention'


def test_prune_removes_labels_put_before_the_retention_on_posts_no_longer_held(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels on accounts, on posts still held and on posts not indexed yet stay; the table does not keep growing."""
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)
    old, new = (f'at://{ALICE}/app.bsky.feed.post/{rkey}' for rkey in ('old', 'new'))
    for n, (hour, post) in enumerate(((1_000, old), (1_070, new)), start=1):
        record = ('create', post.split('/', 3)[3], frames.post_record(post))
        _index_at(db, hour * HOUR, [frames.commit(n, ALICE, [record])])
    never, soon = (f'at://{BOB}/app.bsky.feed.post/{rkey}' for rkey in ('never', 'soon'))
    put = {old: 1_001, new: 1_001, ALICE: 1_001, never: 1_001, soon: 1_075}
    labeler = 'did:plc:labeler'
    labels = [LabelState(labeler, uri, val, 'cts', int(h * HOUR * 1000)) for uri, h in put.items() for val in 'ab']
    store_labels(db, labeler, None, labels, {})
    removed = prune(db, retention_hours=24, now=1_080 * HOUR, max_rows=3)
    assert removed['labels'] == 4
    assert sorted(uri for (uri,) in Label.select(Label.uri).distinct().tuples()) == sorted([new, ALICE, soon])


@pytest.mark.parametrize('name', ['prune', 'prune receipts'])
def test_the_scheduler_prunes_records_and_receipts_every_ten_minutes(db: peewee.Database, name: str) -> None:
    scheduler = start_scheduler(db, retention_hours=24)
    try:
        job = scheduler.get_job(name)
        assert job is not None
        assert job.trigger.interval.total_seconds() == 600
    finally:
        scheduler.shutdown(wait=True)


def test_the_jobs_of_served_feeds_are_scheduled_once_each(db: peewee.Database) -> None:
    algorithms = discover_algorithms()
    specs = [
        {'rkey': 'hot', 'algorithm': 'hot'},
        {'rkey': 'hot-again', 'algorithm': 'hot'},
        {'rkey': 'hot-pt', 'algorithm': 'hot', 'params': {'langs': ['pt']}},
        {'rkey': 'words', 'algorithm': 'topic', 'params': {'keywords': ['atproto']}},
        {'rkey': 'latest', 'algorithm': 'latest'},
    ]
    jobs = feed_jobs(make_feed(algorithms, spec) for spec in specs)
    assert sorted(job.name.split()[0] for job in jobs) == ['matches', 'scores', 'scores']
    scheduler = start_scheduler(db, retention_hours=24, jobs=jobs)
    try:
        scheduled = {job.id: job.trigger.interval.total_seconds() for job in scheduler.get_jobs()}
        assert {job.name: scheduled[job.name] for job in jobs} == {job.name: job.seconds for job in jobs}
        assert {'prune', 'prune interactions'} <= set(scheduled)
    finally:
        scheduler.shutdown(wait=True)


def test_a_job_run_logs_one_line_with_its_outcome(db: peewee.Database, caplog: pytest.LogCaptureFixture) -> None:
    def fail(_db: peewee.Database) -> None:
        raise RuntimeError('the disk is full')

    with caplog.at_level(logging.INFO, logger='feedgen.jobs'):
        run_logged(Job(name='count', run=lambda _db: {'posts': 3, 'likes': 0}, seconds=60), db)
        run_logged(Job(name='refresh', run=lambda _db: None, seconds=60), db)
        run_logged(Job(name='fail', run=fail, seconds=60), db)
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in lines] == ['INFO', 'INFO', 'ERROR']
    assert re.fullmatch(r'job count done in [\d.]+s: posts 3, likes 0', lines[0][1])
    assert re.fullmatch(r'job refresh done in [\d.]+s', lines[1][1])
    assert re.fullmatch(r'job fail failed after [\d.]+s: the disk is full', lines[2][1])


def test_run_soon_moves_every_job_to_run_within_the_second(db: peewee.Database) -> None:
    scheduler = start_scheduler(db, retention_hours=24)
    try:
        deadline = time.monotonic() + 30
        while any(job.next_run_time < datetime.now(UTC) + timedelta(minutes=1) for job in scheduler.get_jobs()):
            assert time.monotonic() < deadline, 'the first runs are done and the next are ten minutes away'
            time.sleep(0.05)
        run_soon(scheduler, seconds=0.5)
        soon = datetime.now(UTC) + timedelta(seconds=1)
        assert all(job.next_run_time <= soon for job in scheduler.get_jobs())
    finally:
        scheduler.shutdown(wait=True)


def _old_store(db: peewee.Database, posts: int = 120) -> None:
    """Posts (with terms, some of them replies), likes and reposts made over 30 hours from hour 1,000."""
    builder, rng = StoreBuilder(db), random.Random(7)
    uris: list[str] = []
    for n in range(posts):
        at = 1_000 * HOUR + n * 900 * 120 / posts
        reply_to = rng.choice(uris) if uris and rng.random() < 0.3 else None
        uris.append(builder.make_post(f'author{n % 9}', tags=['x'], reply_to=reply_to, at=at))
        for fan in range(rng.randrange(4)):
            make = builder.make_repost if fan == 2 else builder.make_like
            make(f'fan{fan}', rng.choice(uris), at=at + 1)


def _pruned_store(url: str, max_rows: int) -> dict[str, list[tuple]]:
    """The records of an `_old_store` at `url` pruned to 12 hours with `max_rows` per batch."""
    db = open_database(url)
    _old_store(db)
    prune(db, retention_hours=12, now=1_000 * HOUR + 30 * HOUR, max_rows=max_rows)
    try:
        return database_records(db)
    finally:
        db.close()


@pytest.mark.parametrize('backend', ['sqlite', pytest.param('postgresql', marks=needs_postgres)])
def test_pruning_in_batches_of_one_row_ends_with_the_store_pruning_at_once_does(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)  # no other writer waits here

    def url(name: str) -> str:
        return empty_postgres(POSTGRES_URL) if backend == 'postgresql' else str(tmp_path / name)

    at_once = _pruned_store(url('once.db'), max_rows=1_000_000)
    assert 0 < len(at_once['post']) < 120
    assert len(at_once['like']) > 0 and len(at_once['post_term']) > 0
    assert _pruned_store(url('batches.db'), max_rows=1) == at_once


def test_a_prune_of_a_large_backlog_runs_many_transactions_of_at_most_max_rows_rows_each(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a long stop everything the store held is past the retention: the prune still changes at most `max_rows`
    rows (of all tables: posts, their terms and change notes, the parents' counts) in any one transaction."""
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)
    _old_store(db)
    total = sum(db.execute_sql(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] for table in ('post', 'like', 'repost'))
    with rows_per_transaction(db) as changed:
        removed = prune(db, retention_hours=1, now=1_100 * HOUR, max_rows=20)
    assert Post.select().count() == Like.select().count() == Repost.select().count() == 0
    assert removed['posts'] + removed['likes'] + removed['reposts'] == total
    assert max(changed) <= 20
    assert len(changed) >= total / 20


def test_a_prune_whose_read_records_are_deleted_before_its_transaction_still_prunes_every_old_one(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The records a read step finds are deleted outside the write lock by ingest before the transaction that would
    delete them: the transaction looks again, and the run ends only when no old record is left."""
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)
    _old_store(db)
    likes = Like.select().count()
    deleted_meanwhile: list[tuple[str, str]] = []
    reads_left = [3]  # of likes' authors, after which ingest deletes what the read step found
    read = jobs._read

    def read_then_ingest_deletes(model: type[peewee.Model], column: str, values: Collection[Any], **rest: Any) -> None:
        read(model, column, values, **rest)
        if model is Like and column == 'author' and reads_left[0]:
            reads_left[0] -= 1
            deleted_meanwhile.extend(delete_likes(db, 'author', list(values)))  # ingest, between read and write

    monkeypatch.setattr(jobs, '_read', read_then_ingest_deletes)
    removed = prune(db, retention_hours=1, now=1_100 * HOUR, max_rows=20)
    assert deleted_meanwhile and Like.select().count() == 0
    assert removed['likes'] == likes - len(deleted_meanwhile)


def test_pruning_likes_of_kept_posts_lowers_their_counters_within_max_rows(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Likes that arrived before the posts they point at are pruned while those posts are kept: each post's counter
    drops with its like, and a transaction still changes at most `max_rows` rows (a like, and its post's counter and
    change note)."""
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)
    clock = [1_000 * HOUR]
    indexer = Indexer(db, 'test', clock=lambda: clock[0])
    posts = [f'app.bsky.feed.post/p{n}' for n in range(6)]
    likes = [
        (f'app.bsky.feed.like/l{n}', frames.strong_ref(f'at://did:plc:author/{post}')) for n, post in enumerate(posts)
    ]
    indexer.write([decode_frame(frames.commit(1, 'did:plc:fan', [('create', path, frames.subject_record(LIKE, ref))
                                                                  for path, ref in likes]))])  # fmt: skip
    clock[0] += 20 * HOUR
    indexer.write([decode_frame(frames.commit(2, 'did:plc:author', [('create', post, frames.post_record())
                                                                     for post in posts]))])  # fmt: skip
    assert [count for (count,) in Post.select(Post.like_count).tuples()] == [1] * 6
    with rows_per_transaction(db) as changed:
        removed = prune(db, retention_hours=12, now=clock[0] + HOUR, max_rows=4)
    assert (removed['likes'], removed['posts']) == (6, 0)
    assert [count for (count,) in Post.select(Post.like_count).tuples()] == [0] * 6
    assert max(changed) <= 4


def test_ingest_commits_between_the_transactions_of_a_prune_with_a_large_backlog(db: peewee.Database) -> None:
    """A restart after a long stop prunes a large backlog while ingest writes: ingest takes the write lock between
    the prune's transactions (it once waited for the whole prune, and failed with `database is locked` when that took
    longer than its busy timeout)."""
    _old_store(db)
    backlog = Post.select().count()
    seen: list[int] = []
    pruned = threading.Event()

    def ingest() -> None:
        number = 0
        while not pruned.is_set():
            with write_transaction(db):
                write_like(db, number)
                seen.append(Post.select().count())
            number += 1
            pruned.wait(0.01)  # the next batch

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        prune(db, retention_hours=1, now=1_100 * HOUR, max_rows=20)
    finally:
        pruned.set()
        writer.join()
    assert Post.select().count() == 0
    assert len({count for count in seen if 0 < count < backlog}) >= 2, 'ingest wrote while posts were being pruned'


def test_pruning_follows_keeps_every_personalized_page_of_readers(db: peewee.Database) -> None:
    """Follows of readers (a graph sync synced or failed) stay; other accounts' follows go after the retention."""
    builder, rng = StoreBuilder(db), random.Random(5)
    readers, stranger = [READER, 'did:plc:other'], 'did:plc:stranger'
    accounts = [f'did:plc:account{n}' for n in range(15)]
    for follower in [*readers, stranger]:
        for account in rng.sample(accounts, 8):
            builder.make_follow(follower, account, at=NOW_S - 100 * 3600)
    recent = builder.make_follow(stranger, accounts[0], at=NOW_S - 3600)
    for account in accounts:  # accounts follow each other, as on the network
        builder.make_follow(account, rng.choice(accounts), at=NOW_S - 90 * 3600)
    posts = [builder.make_post(rng.choice(accounts), at=NOW_S - rng.uniform(0, 20) * 3600) for _ in range(60)]
    for _ in range(150):
        builder.make_like(rng.choice(accounts), rng.choice(posts), at=NOW_S - rng.uniform(0, 20) * 3600)
    for reader, state in zip(readers, ('synced', 'failed'), strict=True):
        ReaderGraph.create(did=reader, state=state, updated_at=NOW_MS)
    feeds = [discover_algorithms()[name]() for name in ('following', 'network', 'quiet')]

    def pages() -> list[list[str]]:
        return [walk(feed, 7, viewer=reader, at_ms=NOW_MS) for feed in feeds for reader in readers]

    before = pages()
    assert all(before)
    removed = prune(db, retention_hours=72, now=NOW_S)
    assert removed['follows'] == 8 + len(accounts)
    assert pages() == before
    assert [uri for (uri,) in Follow.select(Follow.uri).where(Follow.author == stranger).tuples()] == [recent]


def test_prune_drops_the_change_notes_older_than_an_hour_and_keeps_the_newest(db: peewee.Database) -> None:
    hour_ago_ms = (NOW_S - CHANGES_KEEP_SECONDS) * 1000
    for changes, column, values in ((PostChange, 'post_id', range(1, 8)), (VoteChange, 'account', 'abcdefg')):
        ats = [hour_ago_ms - 60_000] * 4 + [hour_ago_ms + 60_000] * 3  # four old notes, then three young ones
        changes.insert_many([{column: value, 'at': at} for value, at in zip(values, ats, strict=True)]).execute()
    prune(db, 72, now=NOW_S)
    assert [row.id for row in PostChange.select().order_by(PostChange.id)] == [5, 6, 7]
    assert [row.account for row in VoteChange.select().order_by(VoteChange.id)] == ['e', 'f', 'g']
    assert job_position(CHANGES_PRUNED) == 4, 'the score jobs learn which notes they can no longer read'
    prune(db, 72, now=NOW_S + 7200)
    assert [row.id for row in PostChange.select()] == [7], 'the newest note stays: its id is not reused'


def test_pruning_change_notes_reads_only_the_oldest_of_them(db: peewee.Database) -> None:
    # With none old enough left, a prune's last transaction must not read every note (an hour of the network's:
    # millions of rows) while it holds the write lock.
    if not isinstance(db, peewee.SqliteDatabase):
        pytest.skip("counts SQLite's virtual machine steps")
    young = (NOW_S - 60) * 1000
    PostChange.insert_many([{'post_id': n, 'at': young} for n in range(20_000)]).execute()
    steps = []
    db.connection().set_progress_handler(lambda: steps.append(1) and 0, 1000)
    try:
        prune(db, 72, now=NOW_S)
    finally:
        db.connection().set_progress_handler(None, 1000)
    assert PostChange.select().count() == 20_000
    assert len(steps) < 20, f'{len(steps)} thousand steps: a scan of the notes'
