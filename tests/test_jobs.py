"""feedgen.jobs: retention pruning by indexing time, and the scheduler that runs it."""

from __future__ import annotations

import peewee
import pytest

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.jobs import feed_jobs, prune, start_scheduler
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
