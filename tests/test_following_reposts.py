"""algorithms/following with reposts: a followed account's repost brings in the reposted post, named as a repost,
each post once, paged without repeats or gaps."""

from __future__ import annotations

import peewee
import pytest
from feedgen_algorithms import following
from feedgen_algorithms.following import Following

from feedgen.authoring import StoreBuilder
from feedgen.ranking.algorithm import FeedRequest
from feedgen.settings import Settings
from tests.test_following import VIEWER, Reader, expected_for

REPOST = 'app.bsky.feed.defs#skeletonReasonRepost'
T = 1_790_000_000
"""A moment (epoch seconds) the records are made after."""


@pytest.fixture
def reader(settings: Settings, db: peewee.Database) -> Reader:
    return Reader(settings, db)


@pytest.fixture
def builder(db: peewee.Database) -> StoreBuilder:
    builder = StoreBuilder(db)
    builder.make_follow(VIEWER, 'alice', at=T)
    builder.make_follow(VIEWER, 'bob', at=T)
    return builder


def test_a_followed_accounts_repost_shows_the_post_with_the_repost_as_reason(
    reader: Reader, builder: StoreBuilder
) -> None:
    carol_post = builder.make_post('carol', 'by carol', at=T + 100)
    bob_post = builder.make_post('bob', 'by bob', at=T + 150)
    repost = builder.make_repost('alice', carol_post, at=T + 200)
    builder.make_repost('dave', builder.make_post('erin', 'by erin', at=T + 210), at=T + 220)  # nobody followed
    feed = reader.page(VIEWER)['feed']
    assert feed[0] == {
        'post': carol_post,
        'reason': {'$type': REPOST, 'repost': repost},
        'feedContext': 'reposted by an account you follow',
    }
    assert [item['post'] for item in feed] == [carol_post, bob_post]
    assert 'reason' not in feed[1]


def test_each_post_shows_once(reader: Reader, builder: StoreBuilder) -> None:
    # Reposted by two followed accounts: once, at the newest repost. A followed author's post: as itself.
    carol_post = builder.make_post('carol', at=T + 100)
    bob_post = builder.make_post('bob', at=T + 110)
    builder.make_repost('alice', carol_post, at=T + 200)
    newest = builder.make_repost('bob', carol_post, at=T + 300)
    builder.make_repost('alice', bob_post, at=T + 400)
    builder.make_repost(VIEWER, carol_post, at=T + 500)  # the reader's own repost: the reader does not follow self
    feed = reader.page(VIEWER)['feed']
    assert [item['post'] for item in feed] == [carol_post, bob_post]
    assert feed[0]['reason'] == {'$type': REPOST, 'repost': newest}
    assert 'reason' not in feed[1]
    builder.delete(newest, at=T + 600)
    assert reader.page(VIEWER)['feed'][0]['reason']['repost'].startswith('at://did:plc:alice/')
    builder.delete(carol_post, at=T + 700)
    assert [item['post'] for item in reader.page(VIEWER)['feed']] == [bob_post]


@pytest.mark.parametrize('scan_rows', [following.SCAN_ROWS, 3, 1])
def test_pages_of_posts_and_reposts_never_repeat_or_skip(
    reader: Reader, builder: StoreBuilder, scan_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Many records share a millisecond: posts and reposts at the same time, reposts of one post at the same time.
    monkeypatch.setattr(following, 'SCAN_ROWS', scan_rows)
    others = [builder.make_post(f'other{n % 4}', at=T + n // 3) for n in range(30)]
    for n in range(30):
        builder.make_post(('alice', 'bob', 'carol')[n % 3], at=T + 5 + n // 4)
        builder.make_repost(('alice', 'bob', 'dave')[n % 3], others[(7 * n) % 30], at=T + 5 + n // 5)
    expected = expected_for(VIEWER)
    assert len(expected) > 30
    for limit in (1, 4, 7, 100):
        assert reader.all(VIEWER, limit=limit) == expected


def test_a_new_repost_above_the_cursor_leaves_later_pages_alone(reader: Reader, builder: StoreBuilder) -> None:
    posts = [builder.make_post('carol', at=T + n) for n in range(6)]
    for n, post in enumerate(posts):
        builder.make_repost('alice', post, at=T + 100 + n)
    first = reader.page(VIEWER, limit=3)
    builder.make_repost('bob', posts[0], at=T + 200)  # posts[0] moves to the top, above the first page
    second = reader.page(VIEWER, limit=3, cursor=first['cursor'])
    assert [item['post'] for item in first['feed'] + second['feed']] == posts[:0:-1]
    assert [item['post'] for item in reader.page(VIEWER, limit=3)['feed']] == [posts[0], posts[5], posts[4]]


@pytest.mark.parametrize('cursor', ['1:0:', '1:1:at://x', '1:2:3', '1:5', '99999999999999999999:1:1'])
def test_a_bad_cursor_is_refused(reader: Reader, cursor: str) -> None:
    response = reader.get(VIEWER, cursor=f'following:{cursor}')
    assert (response.status_code, response.json['error']) == (400, 'InvalidRequest')


def test_explain_names_the_repost(builder: StoreBuilder) -> None:
    carol_post = builder.make_post('carol', at=T + 100)
    repost = builder.make_repost('alice', carol_post, at=T + 200)
    explained = Following().explain(carol_post, FeedRequest(limit=10, viewer=VIEWER))
    assert explained is not None
    assert explained['filters'] == {'reposted by an account the reader follows': repost}
    assert explained['reposter'] == 'did:plc:alice'
