"""feedgen.jobs: retention pruning by indexing time, and the scheduler that runs it."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime, timedelta

import peewee
import pytest

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.jobs import feed_jobs, prune, run_logged, run_soon, start_scheduler
from feedgen.ranking.algorithm import Job
from feedgen.ranking.plugins import discover_algorithms, make_feed
from feedgen.store.models import Follow, Like, Post, PostTerm, Repost
from tests import frames

ALICE, BOB = 'did:plc:alice', 'did:plc:bob'
HOUR = 3600.0


def _index_at(db: peewee.Database, now: float, messages: list[bytes]) -> None:
    Pipeline(Indexer(db, 'test', clock=lambda: now)).feed_all(messages)


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
    assert removed == {'posts': 1, 'likes': 1, 'reposts': 0}
    assert [p.uri for p in Post.select()] == ['at://did:plc:alice/app.bsky.feed.post/new']
    assert PostTerm.select().count() == 1
    assert [like.uri for like in Like.select()] == ['at://did:plc:bob/app.bsky.feed.like/l2']
    assert Repost.select().count() == 1
    assert Follow.select().count() == 1, 'the follow graph is not pruned'


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
