"""algorithms/quiet: rare posters among the accounts a reader follows are lifted over loud ones."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import peewee
import pytest
from feedgen_algorithms.quiet import Quiet

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import check_contract
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.feedback import LESS
from tests.captured import read_truth, replay_at
from tests.conftest import CAPTURE_20
from tests.paging import walk, walk_items
from tests.worlds import HOUR_MS, NOW_MS, NOW_S, READER, feedback, reader_following


def published_score(age_hours: float, author_posts: int, half_life_hours: float = 12.0) -> float:
    return 0.5 ** (age_hours / half_life_hours) / author_posts


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return reader_following(StoreBuilder(db), 'loud', 'rare', 'mid')


def test_a_rare_poster_is_lifted_over_a_loud_one(store: StoreBuilder) -> None:
    ages = {}
    for n in range(30):
        ages[store.make_post('loud', f'loud {n}', at=NOW_S - (0.02 + 2 * n) * 3600)] = ('loud', 0.02 + 2 * n)
    ages[store.make_post('rare', 'once a day', at=NOW_S - 5 * 3600)] = ('rare', 5)
    for age in (1, 30, 60):
        ages[store.make_post('mid', f'mid {age}', at=NOW_S - age * 3600)] = ('mid', age)
    store.make_post('stranger', 'not followed', at=NOW_S - 60)
    rates = Counter(author for author, _ in ages.values())

    items = walk_items(Quiet(), 4, viewer=READER, at_ms=NOW_MS)
    expected = sorted(ages, key=lambda uri: published_score(ages[uri][1], rates[ages[uri][0]]), reverse=True)
    assert [item.post for item in items] == expected
    assert ages[items[0].post][0] == 'rare', 'the rare poster comes first though the loud one posted a minute ago'
    assert items[0].context == 'from an account you follow that posted 1x in 72h'
    explanation = Quiet().explain(items[0].post, FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS))
    assert explanation['score']['author_posts'] == 1
    assert explanation['score']['age_hours'] == pytest.approx(5)


def test_replies_are_left_out_but_count_toward_the_rate(store: StoreBuilder) -> None:
    other = store.make_post('stranger', at=NOW_S - 7200)
    post = store.make_post('rare', 'a post', at=NOW_S - 3600)
    reply = store.make_post('rare', 'a reply', reply_to=other, at=NOW_S - 1800)
    quiet = Quiet()
    page = quiet.page(FeedRequest(limit=10, viewer=READER, at_ms=NOW_MS))
    assert [item.post for item in page.items] == [post]
    assert page.trace['removed'] == {'replies': 1}
    assert page.trace['scores'][post]['author_posts'] == 2
    assert walk(Quiet(no_replies=False), 10, viewer=READER, at_ms=NOW_MS) == [reply, post]


def test_posts_indexed_after_the_session_began_are_not_in_it(store: StoreBuilder) -> None:
    posts = [store.make_post('mid', f'post {n}', at=NOW_S - (4 - n) * 3600) for n in range(4)]
    quiet = Quiet()
    first = quiet.page(FeedRequest(limit=2, viewer=READER, at_ms=NOW_MS))
    store.make_post('mid', 'a late post', at=NOW_S + 5)
    second = quiet.page(FeedRequest(limit=2, cursor=first.cursor, viewer=READER))
    assert [item.post for item in first.items + second.items] == posts[::-1]


def test_request_less_demotes_the_author(store: StoreBuilder) -> None:
    rare = store.make_post('rare', at=NOW_S - 3600)
    mid = store.make_post('mid', at=NOW_S - 3600 * 2)
    assert walk(Quiet(), 1, viewer=READER, at_ms=NOW_MS) == [rare, mid]
    feedback(READER, LESS, rare)
    assert walk(Quiet(), 1, viewer=READER, at_ms=NOW_MS) == [mid, rare]


def test_quiet_passes_the_contract(store: StoreBuilder) -> None:
    now = time.time()
    for n in range(9):
        store.make_post(('loud', 'rare', 'mid')[n % 3] if n % 4 else 'loud', f'post {n}', at=now - 1000 * n)
    check_contract(Quiet(), store, viewer=READER)


@pytest.mark.parametrize('replayed_later', [False, True], ids=['indexed-live', 'replayed-later'])
def test_quiet_on_the_capture_follows_the_formula(db: peewee.Database, replayed_later: bool) -> None:
    truth = read_truth(CAPTURE_20)
    reader = max({follow.author for follow in truth.records['app.bsky.graph.follow'].values()}, key=truth.follows_of)
    replay_at(db, CAPTURE_20, None if replayed_later else truth.end_ms + 1000)
    as_of = truth.end_ms + HOUR_MS
    followed = {uri: post for uri, post in truth.visible().items() if post.author in truth.follows_of(reader)}
    rates = Counter(post.author for post in followed.values())
    expected = {
        uri: published_score((as_of - truth.sort_at[uri]) / HOUR_MS, rates[post.author])
        for uri, post in followed.items()
        if post.post.reply_parent is None
    }
    served = walk(Quiet(), 9, viewer=reader, at_ms=as_of)
    assert len(expected) > 20
    assert sorted(served) == sorted(expected)
    assert all(expected[a] >= expected[b] - 1e-9 for a, b in itertools.pairwise(served))
