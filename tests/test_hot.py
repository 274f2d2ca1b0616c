"""algorithms/hot: the published formula, its window and filters, reader feedback, and the capture."""

from __future__ import annotations

import itertools
import random
import time

import peewee
import pytest
from feedgen_algorithms.hot import Hot

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import check_contract
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.feedback import LESS, MORE
from tests.captured import read_truth, replay_at
from tests.conftest import CAPTURE_20
from tests.paging import walk
from tests.plans import ordered_plans
from tests.worlds import NOW_MS, NOW_S, READER, engaged, feedback


def published_score(age_hours: float, likes: int, reposts: int, replies: int) -> float:
    """The formula as hot's docstring publishes it, written again from the text."""
    return (likes + 2 * reposts + replies) / (age_hours + 2) ** 1.5


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


def test_hot_orders_posts_by_the_published_formula(store: StoreBuilder, db: peewee.Database) -> None:
    rng = random.Random(7)
    inputs = {}
    for n in range(40):
        counts = (rng.uniform(0, 47), rng.randint(0, 6), rng.randint(0, 3), rng.randint(0, 2))
        inputs[engaged(store, f'author{n % 9}', *counts)] = counts
    unengaged = store.make_post('author0', 'nobody liked this', at=NOW_S - 3600)
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    engaged_posts = [uri for uri, counts in inputs.items() if sum(counts[1:])]
    expected = sorted(engaged_posts, key=lambda uri: published_score(*inputs[uri]), reverse=True)
    assert walk(hot, 7, at_ms=NOW_MS) == expected
    explanation = hot.explain(expected[0], FeedRequest(limit=1, at_ms=NOW_MS))
    age, likes, reposts, replies = inputs[expected[0]]
    assert explanation is not None
    assert (explanation['score']['likes'], explanation['score']['reposts'], explanation['score']['replies']) == (
        likes,
        reposts,
        replies,
    )
    assert explanation['score']['score'] == pytest.approx(published_score(age, likes, reposts, replies))
    assert hot.explain(unengaged, FeedRequest(limit=1)) is None


def test_only_posts_of_the_window_passing_the_filters_are_ranked(store: StoreBuilder, db: peewee.Database) -> None:
    recent_pt = engaged(store, 'ana', 47, likes=1, langs=['pt-BR'])
    recent_en = engaged(store, 'bob', 1, likes=9, langs=['en'])
    too_old = engaged(store, 'ana', 49, likes=50, langs=['pt'])
    everything, portuguese = Hot(), Hot(langs=['pt'])
    for hot in (everything, portuguese):
        hot.refresh(db, now_ms=NOW_MS)
    assert walk(everything, 10, at_ms=NOW_MS) == [recent_en, recent_pt]
    assert walk(portuguese, 10, at_ms=NOW_MS) == [recent_pt]
    assert everything.explain(too_old, FeedRequest(limit=1)) is None
    assert portuguese.explain(recent_pt, FeedRequest(limit=1))['filters'] == {'langs': ['pt']}


def test_request_less_demotes_the_author_for_that_reader_only(store: StoreBuilder, db: peewee.Database) -> None:
    loud = engaged(store, 'alice', 1, likes=8)
    middle = engaged(store, 'bob', 1, likes=4)
    low = engaged(store, 'carol', 1, likes=1)
    alice_again = engaged(store, 'alice', 2, likes=2)
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    feedback(READER, LESS, loud)
    # Scores: loud 1.54, middle 0.77, alice_again 0.25, low 0.19; alice counts a quarter for the reader.
    assert walk(hot, 2, viewer=READER, at_ms=NOW_MS) == [middle, loud, low, alice_again]
    assert walk(hot, 2, viewer='did:plc:someone', at_ms=NOW_MS) == [loud, middle, alice_again, low]
    page = hot.page(FeedRequest(limit=2, viewer=READER, at_ms=NOW_MS))
    assert 'you asked to see less of this author' in page.items[1].context
    assert page.trace['feedback'] == {'less': 1, 'more': 0}
    assert page.trace['scores'][loud]['viewer_weight'] == 0.25
    assert hot.explain(loud, FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS))['viewer_weight'] == 0.25


def test_pages_served_again_from_one_worker_match_a_fresh_ranking(store: StoreBuilder, db: peewee.Database) -> None:
    """A worker keeps each snapshot's items per post and reader weight; what it serves again must be what an
    algorithm that never served a page makes, for every reader's weights and after a new snapshot."""
    posts = [engaged(store, f'author{n % 3}', 1 + n / 4, likes=n + 1) for n in range(9)]
    feedback(READER, LESS, posts[0])
    feedback('did:plc:fan', MORE, posts[1])
    served = Hot()

    def pages(hot: Hot, viewer: str | None, now_ms: int) -> list[tuple[list[object], dict[str, object]]]:
        found, cursor = [], None
        while True:
            page = hot.page(FeedRequest(limit=4, cursor=cursor, viewer=viewer, at_ms=now_ms))
            found.append((page.items, page.trace['scores']))
            if (cursor := page.cursor) is None:
                return found

    for now_ms in (NOW_MS, NOW_MS + 60_000):
        served.refresh(db, now_ms=now_ms)
        for viewer in (READER, None, 'did:plc:fan', READER, None):
            fresh = Hot()
            assert pages(served, viewer, now_ms) == pages(fresh, viewer, now_ms)
        store.make_like('late-fan', posts[0])
    weights = {scores[posts[0]]['viewer_weight'] for _, scores in pages(served, READER, NOW_MS + 60_000)[:3]
               if posts[0] in scores}  # fmt: skip
    assert weights == {0.25}
    assert 'you asked to see less of this author' in next(
        item.context for items, _ in pages(served, READER, NOW_MS + 60_000) for item in items if item.post == posts[0]
    )


def test_request_more_lifts_and_the_latest_request_wins(store: StoreBuilder, db: peewee.Database) -> None:
    top = engaged(store, 'alice', 1, likes=6)
    second = engaged(store, 'bob', 1, likes=4)
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    feedback(READER, LESS, second, at_ms=NOW_MS - 5000)
    feedback(READER, MORE, second, at_ms=NOW_MS - 1000)
    assert walk(hot, 1, viewer=READER, at_ms=NOW_MS) == [second, top]
    # Feedback sent after the moment a session ranks as of does not count in it.
    assert walk(hot, 1, viewer=READER, at_ms=NOW_MS - 3000) == [top, second]


def test_a_paging_session_keeps_its_snapshot_while_scores_change(store: StoreBuilder, db: peewee.Database) -> None:
    posts = [engaged(store, f'a{n}', 1, likes=n + 1) for n in range(6)]
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    first = hot.page(FeedRequest(limit=3, at_ms=NOW_MS))
    for n in range(10):
        store.make_like(f'fan{n}', posts[0])
    hot.refresh(db, now_ms=NOW_MS + 60_000)
    second = hot.page(FeedRequest(limit=3, cursor=first.cursor, at_ms=NOW_MS))
    assert [item.post for item in first.items + second.items] == posts[::-1]
    assert second.cursor is None
    assert walk(hot, 3, at_ms=NOW_MS)[0] == posts[0], 'a new session reads the new snapshot'


def test_an_expired_snapshot_goes_on_in_the_newest_below_the_same_score(
    store: StoreBuilder, db: peewee.Database
) -> None:
    posts = [engaged(store, f'a{n}', 1, likes=n + 1) for n in range(4)]
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    first = hot.page(FeedRequest(limit=2, at_ms=NOW_MS))
    hot.refresh(db, now_ms=NOW_MS + 901_000)
    second = hot.page(FeedRequest(limit=2, cursor=first.cursor, at_ms=NOW_MS))
    assert second.trace['snapshot']['expired_cursor'] is True
    assert [item.post for item in first.items + second.items] == posts[::-1]


def test_hot_pages_walk_the_snapshot_index(store: StoreBuilder, db: peewee.Database) -> None:
    for n in range(30):
        engaged(store, f'a{n % 4}', n, likes=n % 5 + 1)
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    feedback(READER, LESS, engaged(store, 'a1', 1, likes=1))
    first = hot.page(FeedRequest(limit=5, at_ms=NOW_MS))
    for viewer in (None, READER):
        plans = ordered_plans(
            db, lambda v=viewer: hot.page(FeedRequest(5, first.cursor, v, at_ms=NOW_MS)), 'scored_post'
        )
        assert plans, 'the page query was not seen'
        for query_plan in plans:
            assert 'SEARCH t1 USING PRIMARY KEY (snapshot=? AND (score,post_id)<(?,?))' in query_plan, query_plan
            assert 'TEMP B-TREE' not in query_plan, query_plan


def test_hot_passes_the_contract(store: StoreBuilder) -> None:
    for n in range(12):
        engaged(store, f'author{n % 3}', n * 3 + 1, likes=n % 4, reposts=n % 2, replies=1, now_s=time.time())
    check_contract(Hot(), store)
    check_contract(Hot(), store, viewer=READER)


def test_hot_on_the_capture_follows_the_formula(db: peewee.Database) -> None:
    truth = read_truth(CAPTURE_20)
    replay_at(db, CAPTURE_20, truth.end_ms + 1000)
    now = truth.end_ms + 60_000
    hot = Hot()
    hot.refresh(db, now_ms=now)
    expected = {}
    for uri in truth.visible():
        likes, reposts, replies = truth.counts(uri)
        if likes + reposts + replies:
            expected[uri] = published_score((now - truth.sort_at[uri]) / 3_600_000, likes, reposts, replies)
    served = walk(hot, 10, at_ms=now)
    assert len(expected) > 50
    assert sorted(served) == sorted(expected)
    scores = [expected[uri] for uri in served]
    assert all(a >= b - 1e-6 for a, b in itertools.pairwise(scores))


def test_a_page_after_the_next_ranking_shows_its_counts(store: StoreBuilder, db: peewee.Database) -> None:
    """A page's reasons come from the snapshot it walks: the next run's counts, not the parts remembered of the last."""
    post = engaged(store, 'alice', 1, likes=2)
    hot = Hot()
    hot.refresh(db, now_ms=NOW_MS)
    first = hot.page(FeedRequest(limit=5, at_ms=NOW_MS))
    assert [item.context for item in first.items] == ['hot: 2 likes, 0 reposts, 0 replies in 1h']
    for n in range(3):
        store.make_like(f'late{n}', post)
    hot.refresh(db, now_ms=NOW_MS + 60_000)
    again = hot.page(FeedRequest(limit=5, at_ms=NOW_MS + 60_000))
    assert [item.context for item in again.items] == ['hot: 5 likes, 0 reposts, 0 replies in 1h']
    assert again.trace['scores'][post]['likes'] == 5
