"""feedgen.ranking.score_pool: an incremental score job's snapshots equal a full recompute's, run after run."""

from __future__ import annotations

import random
from collections.abc import Callable

import peewee
import pytest
from feedgen_algorithms.catch_up import CatchUp
from feedgen_algorithms.hot import Hot

from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest.events import Account
from feedgen.jobs import prune
from feedgen.ranking import scores
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.scores import SnapshotAlgorithm
from feedgen.store.models import ScoredPost, ScoreSnapshot
from tests.paging import walk
from tests.worlds import NOW_S

MINUTE = 60.0
AUTHORS = [f'author{n}' for n in range(12)]


def snapshot_rows(snapshot: ScoreSnapshot) -> tuple[int, list[tuple[int, int, int, int, int]]]:
    fields = (ScoredPost.score, ScoredPost.post_id, ScoredPost.likes, ScoredPost.reposts, ScoredPost.replies)
    query = ScoredPost.select(*fields).where(ScoredPost.snapshot == snapshot.id).order_by(*fields)
    return snapshot.candidates, list(query.tuples())


def set_status(store: StoreBuilder, author: str, active: bool, seconds: float) -> None:
    status = None if active else 'deactivated'
    seq = (store.indexer.cursor or 0) + 1
    store.indexer.write([Account(seq=seq, did=f'did:plc:{author}', time='', active=active, status=status)])


class World:
    """A store that changes at random between runs: posts, likes, reposts, replies, deletes, hidden authors."""

    def __init__(self, store: StoreBuilder, seed: int) -> None:
        self.store = store
        self.random = random.Random(seed)
        self.posts: list[str] = []
        self.engagements: list[str] = []
        self.now = NOW_S - 50 * 3600

    def step(self) -> None:
        chance, store = self.random.random, self.store
        self.now += self.random.choice([MINUTE, 5 * MINUTE, 40 * MINUTE, 3 * 3600])
        for _ in range(self.random.randint(0, 8)):
            author = self.random.choice(AUTHORS)
            tags = ['python'] if chance() < 0.5 else []
            reply_to = self.random.choice(self.posts) if self.posts and chance() < 0.2 else None
            made = self.now + self.random.uniform(-2 * 3600, 600)  # some made after the next run's moment
            self.posts.append(store.make_post(author, tags=tags, reply_to=reply_to, at=made))
        for _ in range(self.random.randint(0, 30)):
            if not self.posts:
                break
            post, fan = self.random.choice(self.posts[-40:]), f'fan{self.random.randrange(50)}'
            make = store.make_repost if chance() < 0.2 else store.make_like
            self.engagements.append(make(fan, post, at=self.now - self.random.uniform(0, MINUTE)))
        for pool in (self.engagements, self.posts):
            if pool and chance() < 0.5:
                store.delete(pool.pop(self.random.randrange(len(pool))), at=self.now)
        if chance() < 0.2:
            set_status(store, self.random.choice(AUTHORS), chance() < 0.5, self.now)


@pytest.mark.parametrize(
    'make',
    [Hot, CatchUp, lambda: Hot(tags=['python']), lambda: CatchUp(no_replies=True)],
    ids=['hot', 'catch-up', 'hot-tagged', 'catch-up-no-replies'],
)
@pytest.mark.parametrize('depth', [5, 1000])
def test_incremental_snapshots_equal_a_full_recompute(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch, make: Callable[[], SnapshotAlgorithm], depth: int
) -> None:
    monkeypatch.setattr(scores, 'SNAPSHOT_POSTS', depth)
    world = World(StoreBuilder(db), seed=depth)
    incremental = make()
    kept = 0
    for _ in range(40):
        world.step()
        pool = incremental._pool
        now_ms = int(world.now * 1000)
        ours = incremental.refresh(db, now_ms=now_ms)
        kept += incremental._pool is pool
        ours_rows, ours_page = snapshot_rows(ours), walk(incremental, 7, at_ms=now_ms)
        full = make()
        assert snapshot_rows(full.refresh(db, now_ms=now_ms)) == ours_rows
        assert walk(full, 7, at_ms=now_ms) == ours_page
    assert kept >= 20, 'most runs move the pool forward rather than scan the window'


def test_a_job_that_missed_pruned_changes_scans_again(db: peewee.Database) -> None:
    world = World(StoreBuilder(db), seed=3)
    hot = Hot()
    for _ in range(5):
        world.step()
    hot.refresh(db, now_ms=int(world.now * 1000))
    pool = hot._pool
    for _ in range(5):
        world.step()
    prune(db, retention_hours=1000, now=world.now + 10 * 24 * 3600)  # drops every change but the newest
    ours = snapshot_rows(hot.refresh(db, now_ms=int(world.now * 1000)))
    assert hot._pool is not pool
    assert snapshot_rows(Hot().refresh(db, now_ms=int(world.now * 1000))) == ours
    assert [item.post for item in hot.page(FeedRequest(limit=5, at_ms=int(world.now * 1000))).items]
