"""algorithms/catch_up: the most engaged posts of the last day, minus what the reader has seen."""

from __future__ import annotations

import itertools
import time

import peewee
import pytest
from feedgen_algorithms.catch_up import CatchUp

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import check_contract
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.feedback import LESS, SEEN
from tests.captured import read_truth, replay_at
from tests.conftest import CAPTURE_20
from tests.paging import walk, walk_items
from tests.plans import ordered_plans
from tests.worlds import NOW_MS, READER, engaged, feedback


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


def test_the_most_engaged_posts_of_the_last_24_hours_come_first(store: StoreBuilder, db: peewee.Database) -> None:
    replies_only = engaged(store, 'ana', 3, replies=3)
    likes_and_reposts = engaged(store, 'bob', 20, likes=2, reposts=2)
    newest_liked = engaged(store, 'carol', 0.5, likes=1)
    older_than_a_day = engaged(store, 'dan', 25, likes=40)
    store.make_post('erin', 'nobody engaged', at=NOW_MS / 1000 - 60)
    catch_up = CatchUp()
    catch_up.refresh(db, now_ms=NOW_MS)
    items = walk_items(catch_up, 2, at_ms=NOW_MS)
    assert [item.post for item in items] == [likes_and_reposts, replies_only, newest_liked]
    assert items[0].context == '4 likes, reposts and replies in the last 24h'
    assert catch_up.explain(older_than_a_day, FeedRequest(limit=1, at_ms=NOW_MS)) is None
    explanation = catch_up.explain(replies_only, FeedRequest(limit=1, at_ms=NOW_MS))
    assert explanation['score'] == {'likes': 0, 'reposts': 0, 'replies': 3, 'score': 3}


def test_posts_the_reader_has_seen_are_left_out_for_that_reader(store: StoreBuilder, db: peewee.Database) -> None:
    posts = [engaged(store, f'a{n}', 1, likes=5 - n) for n in range(4)]
    catch_up = CatchUp()
    catch_up.refresh(db, now_ms=NOW_MS)
    feedback(READER, SEEN, posts[1])
    assert walk(catch_up, 2, viewer=READER, at_ms=NOW_MS) == [posts[0], posts[2], posts[3]]
    assert 'not seen by you before' in catch_up.page(FeedRequest(limit=1, viewer=READER)).trace['filters']
    assert walk(catch_up, 2, at_ms=NOW_MS) == posts
    assert walk(catch_up, 2, viewer='did:plc:other', at_ms=NOW_MS) == posts
    assert catch_up.explain(posts[1], FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS)) is None


def test_request_less_demotes_the_author(store: StoreBuilder, db: peewee.Database) -> None:
    first = engaged(store, 'alice', 1, likes=8)
    second = engaged(store, 'bob', 1, likes=3)
    catch_up = CatchUp()
    catch_up.refresh(db, now_ms=NOW_MS)
    feedback(READER, LESS, first)
    assert walk(catch_up, 1, viewer=READER, at_ms=NOW_MS) == [second, first]


def test_catch_up_pages_walk_the_snapshot_index(store: StoreBuilder, db: peewee.Database) -> None:
    posts = [engaged(store, f'a{n % 3}', n % 20, likes=n % 4 + 1) for n in range(25)]
    catch_up = CatchUp()
    catch_up.refresh(db, now_ms=NOW_MS)
    feedback(READER, SEEN, posts[3])
    feedback(READER, LESS, posts[4])
    first = catch_up.page(FeedRequest(limit=4, at_ms=NOW_MS))
    for viewer in (None, READER):
        plans = ordered_plans(
            db, lambda v=viewer: catch_up.page(FeedRequest(4, first.cursor, v, at_ms=NOW_MS)), 'scored_post'
        )
        assert plans
        for query_plan in plans:
            assert 'SEARCH t1 USING PRIMARY KEY (snapshot=? AND (score,post_id)<(?,?))' in query_plan, query_plan
            assert 'TEMP B-TREE' not in query_plan, query_plan


def test_catch_up_passes_the_contract(store: StoreBuilder) -> None:
    for n in range(10):
        engaged(store, f'author{n % 3}', n + 1, likes=n % 3 + 1, now_s=time.time())
    check_contract(CatchUp(), store)
    check_contract(CatchUp(), store, viewer=READER)


def test_catch_up_on_the_capture_counts_what_the_capture_holds(db: peewee.Database) -> None:
    truth = read_truth(CAPTURE_20)
    replay_at(db, CAPTURE_20, truth.end_ms + 1000)
    catch_up = CatchUp()
    catch_up.refresh(db, now_ms=truth.end_ms + 60_000)
    expected = {uri: sum(truth.counts(uri)) for uri in truth.visible() if sum(truth.counts(uri))}
    served = walk(catch_up, 25, at_ms=truth.end_ms + 60_000)
    assert len(expected) > 50
    assert sorted(served) == sorted(expected)
    assert all(expected[a] >= expected[b] for a, b in itertools.pairwise(served))
