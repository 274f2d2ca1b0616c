"""feedgen.store.post_counts and feedgen.ranking.follow_counts: the hourly post counts stay a function of the posts,
and `quiet` ranks from them exactly as from every post.

A random store changes step by step (posts at random moments, on hour boundaries and backdated, replies, self-labels,
deletes, accounts deactivated and back, pruning); after each step the counts equal a straightforward count of the post
rows, and `quiet`'s sessions (random moments, watermarks, feedback, cursors, windows) equal those of the base class,
which ranks every candidate `Quiet.rank` lists.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import peewee
import pytest
from feedgen_algorithms import quiet as quiet_module
from feedgen_algorithms.quiet import Quiet

from feedgen.authoring.builder import StoreBuilder, did
from feedgen.ingest.records import POST
from feedgen.jobs import prune
from feedgen.ranking import personal
from feedgen.ranking.follow_counts import followed_post_counts
from feedgen.ranking.personal import PersonalAlgorithm
from feedgen.settings import Settings
from feedgen.store.models import (
    HOUR_MS,
    JobState,
    Post,
    PostCount,
    ReaderGraph,
    open_database,
)
from feedgen.store.post_counts import FILL_STATE, fill_post_counts
from tests.stores import counted_from_rows, stored_counts
from tests.worlds import NOW_S, READER, reader_following

FOLLOWED = [f'author{n}' for n in range(6)]
AUTHORS = [*FOLLOWED, 'stranger']
LABELS = [(), (), (), ('porn',), ('spoiler',), ('nudity', 'spoiler')]


class Reference(Quiet):
    """`quiet` ranked the straightforward way: every candidate of `Quiet.rank`, counted from every post."""

    order = PersonalAlgorithm.order


class World:
    """A store that changes at random, step by step, through the indexer and pruning."""

    def __init__(self, db: peewee.Database, seed: int) -> None:
        self.db = db
        self.store = reader_following(StoreBuilder(db), *FOLLOWED)
        ReaderGraph.insert(did=READER, state='synced').execute()  # a reader: pruning keeps their follows
        self.random = random.Random(seed)
        self.posts: list[str] = []
        self.now = NOW_S - 80 * 3600

    def step(self) -> None:
        chance, store = self.random.random, self.store
        self.now += self.random.choice([60, 1200, 3600, 5 * 3600])
        for _ in range(self.random.randint(1, 12)):
            author = self.random.choice(AUTHORS)
            reply_to = self.random.choice(self.posts) if self.posts and chance() < 0.25 else None
            made = self.now - self.random.choice([0, 0.001, 1, 3599.999, 3600, 7200, 20 * 3600])  # on and near hours
            if chance() < 0.1:  # made long before it is indexed (a backdated createdAt): into an older hour
                self.posts.append(self.backdated(author, made - self.random.uniform(3600, 60 * 3600)))
            else:
                labels = self.random.choice(LABELS)
                self.posts.append(store.make_post(author, reply_to=reply_to, labels=labels, at=made))
        for _ in range(self.random.randint(0, 3)):
            if self.posts and chance() < 0.5:
                store.delete(self.posts.pop(self.random.randrange(len(self.posts))), at=self.now)
        if chance() < 0.2:
            status = self.random.choice(['deactivated', 'takendown', 'active', 'active'])
            store.set_account(self.random.choice(AUTHORS), status, at=self.now)
        if chance() < 0.1:
            prune(self.db, retention_hours=self.random.choice([24, 60]), now=self.now)

    def backdated(self, author: str, created: float) -> str:
        if self.random.random() < 0.5:  # at the very end or start of an hour
            created = ((int(created * 1000) // HOUR_MS + 1) * HOUR_MS + self.random.choice([-1, 0])) / 1000
        record = {'$type': POST, 'text': 'backdated', 'createdAt': _iso(round(created * 1000))}
        return self.store.make_record(author, record, at=self.now + self.random.uniform(0, 600))

    def moments(self, window_hours: float) -> Iterator[tuple[int, int]]:
        """`(as_of, indexed_until)` of sessions: now and ahead, and with either end of the window next to a post's
        hour's edge; watermarks of every post or of some."""
        indexed = sorted(moment for (moment,) in Post.select(Post.indexed_at).distinct().tuples()) or [0]
        made = sorted(moment for (moment,) in Post.select(Post.sort_at).tuples()) or [0]
        on_edges = [moment for moment in made if (moment + 1) % HOUR_MS in (0, 1)]  # an hour's last or first ms
        now_ms = int(self.now * 1000)
        edge = (self.random.choice(on_edges or made) + 1) // HOUR_MS * HOUR_MS
        window = int(window_hours * HOUR_MS)
        for as_of in (now_ms, now_ms + 1800_000, *(edge + n for n in (-2, -1, 0, 1)), edge + window - 1, edge + window):
            yield as_of, indexed[-1]
            yield as_of, self.random.choice(indexed)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime('%Y-%m-%dT%H:%M:%S') + f'.{ms % 1000:03d}Z'


@pytest.fixture
def shallow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions keep 7 entries, so `quiet` stops its walks early and ranks from cursors."""
    monkeypatch.setattr(personal, 'SESSION_DEPTH', 7)
    monkeypatch.setattr(quiet_module, 'SESSION_DEPTH', 7)


def assert_same_orderings(world: World, params: dict[str, object]) -> None:
    quiet, reference = Quiet(**params), Reference(**params)
    weights = {did(author): world.random.choice([0.25, 1.0, 2.0]) for author in FOLLOWED[:3]}
    for as_of, indexed_until in world.moments(quiet.params.window_hours):
        for feedback in ({}, weights):
            expected = reference.order(READER, as_of, indexed_until, feedback, None)
            ordering = quiet.order(READER, as_of, indexed_until, feedback, None)
            assert ordering.entries == expected.entries, (as_of, indexed_until, params)
            assert (ordering.total, ordering.trace) == (expected.total, expected.trace)
            for start in [entry[:2] for entry in expected.entries[1::3]]:  # ranked again from a cursor
                below = reference.order(READER, as_of, indexed_until, feedback, start)
                assert quiet.order(READER, as_of, indexed_until, feedback, start).entries == below.entries


@pytest.mark.parametrize('seed', range(4))
def test_counts_and_quiet_sessions_equal_a_straightforward_count(settings: Settings, seed: int, shallow: None) -> None:
    db = open_database(settings.database)
    world = World(db, seed)
    windows = [{}, {'window_hours': 5.5, 'no_replies': False}, {'window_hours': 0.75}, {'half_life_hours': 2.0}]
    for step in range(24):
        world.step()
        assert stored_counts() == counted_from_rows(), f'step {step}'
        if step % 3 == 2:
            assert_same_orderings(world, world.random.choice(windows))
    assert stored_counts(), 'the world has posts to count'
    db.close()


def test_a_store_without_counts_is_counted_when_opened(settings: Settings) -> None:
    db = open_database(settings.database)
    world = World(db, seed=11)
    for _ in range(12):
        world.step()
    maintained = stored_counts()
    as_of, indexed_until = int(world.now * 1000), max(Post.select(Post.indexed_at).tuples())[0]
    expected = followed_post_counts(READER, as_of - 72 * HOUR_MS, as_of, indexed_until)
    PostCount.delete().execute()
    JobState.delete().where(JobState.name == FILL_STATE).execute()  # as a store made before the counts
    assert followed_post_counts(READER, as_of - 72 * HOUR_MS, as_of, indexed_until) == expected, 'counts every post'
    db.close()
    db = open_database(settings.database)
    assert stored_counts() == maintained == counted_from_rows()
    assert followed_post_counts(READER, as_of - 72 * HOUR_MS, as_of, indexed_until) == expected
    assert fill_post_counts(db) == 0, 'counted once'
    assert fill_post_counts(db, again=True) > 0
    assert stored_counts() == maintained
    db.close()
