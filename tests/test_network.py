"""algorithms/network: only followed accounts' likes and reposts count, by how many and how recently."""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict

import peewee
import pytest
from feedgen_algorithms.network import Network

from feedgen.authoring.builder import StoreBuilder, did
from feedgen.authoring.contract import check_contract
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import LIKE, REPOST
from feedgen.ranking.algorithm import FeedRequest, Page
from feedgen.ranking.feedback import LESS
from tests import frames
from tests.captured import read_truth, replay_at
from tests.conftest import CAPTURE_20
from tests.paging import count_calls, walk, walk_items
from tests.worlds import HOUR_MS, NOW_MS, NOW_S, READER, feedback, reader_following


def published_score(vote_ages_hours: list[float], half_life_hours: float = 6.0) -> float:
    return sum(0.5 ** (age / half_life_hours) for age in vote_ages_hours)


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return reader_following(StoreBuilder(db), 'amy', 'ben', 'cat')


def hours_ago(hours: float) -> float:
    return NOW_S - hours * 3600


def test_only_the_likes_and_reposts_of_followed_accounts_count(store: StoreBuilder) -> None:
    two_friends = store.make_post('pia', 'liked by two friends', at=hours_ago(3))
    store.make_like('amy', two_friends, at=hours_ago(1))
    store.make_repost('amy', two_friends, at=hours_ago(0.5))
    store.make_like('ben', two_friends, at=hours_ago(1))
    one_friend = store.make_post('quinn', 'liked by one friend', at=hours_ago(3))
    store.make_like('cat', one_friend, at=hours_ago(0.1))
    strangers_only = store.make_post('rob', 'liked by strangers', at=hours_ago(3))
    for stranger in ('xia', 'yan', 'zed', 'ulf'):
        store.make_like(stranger, strangers_only, at=hours_ago(0.1))
    own = store.make_post(READER, 'my own post', at=hours_ago(3))
    store.make_like('amy', own, at=hours_ago(0.1))
    store.make_like('ben', 'at://did:plc:gone/app.bsky.feed.post/unknown', at=hours_ago(0.1))
    too_old = store.make_post('sam', 'liked long ago', at=hours_ago(60))
    store.make_like('amy', too_old, at=hours_ago(49))

    network = Network()
    items = walk_items(network, 1, viewer=READER, at_ms=NOW_MS)
    expected = {two_friends: published_score([0.5, 1.0]), one_friend: published_score([0.1])}
    assert [item.post for item in items] == sorted(expected, key=expected.get, reverse=True)
    assert items[0].context == 'liked or reposted by 2 accounts you follow'
    page = network.page(FeedRequest(limit=5, viewer=READER, at_ms=NOW_MS))
    assert page.trace['removed'] == {
        'likes and reposts of your own posts': 1,
        'likes and reposts of posts not indexed or hidden': 1,
    }
    assert page.trace['scores'][two_friends]['score'] == pytest.approx(expected[two_friends])
    explanation = network.explain(two_friends, FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS))
    assert set(explanation['score']['voters']) == {did('amy'), did('ben')}
    for post in (strangers_only, own, too_old):
        assert network.explain(post, FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS)) is None


def test_many_votes_this_morning_outrank_one_vote_a_minute_ago(store: StoreBuilder) -> None:
    morning = store.make_post('pia', at=hours_ago(10))
    for friend in ('amy', 'ben', 'cat'):
        store.make_like(friend, morning, at=hours_ago(8))
    just_now = store.make_post('quinn', at=hours_ago(1))
    store.make_like('amy', just_now, at=hours_ago(0.02))
    assert published_score([8, 8, 8]) > published_score([0.02])
    assert walk(Network(), 1, viewer=READER, at_ms=NOW_MS) == [morning, just_now]
    assert walk(Network(half_life_hours=1), 1, viewer=READER, at_ms=NOW_MS) == [just_now, morning]


def test_request_less_demotes_the_author_for_that_reader(store: StoreBuilder) -> None:
    top = store.make_post('pia', at=hours_ago(2))
    second = store.make_post('quinn', at=hours_ago(2))
    for friend in ('amy', 'ben'):
        store.make_like(friend, top, at=hours_ago(1))
    store.make_like('cat', second, at=hours_ago(1))
    assert walk(Network(), 1, viewer=READER, at_ms=NOW_MS) == [top, second]
    feedback(READER, LESS, top)
    assert walk(Network(), 1, viewer=READER, at_ms=NOW_MS) == [second, top]


def test_votes_indexed_after_the_session_began_do_not_reorder_it(store: StoreBuilder) -> None:
    posts = [store.make_post(f'author{n}', at=hours_ago(5)) for n in range(4)]
    for n, post in enumerate(posts):
        store.make_like('amy', post, at=hours_ago(4 - n))
    network = Network()
    first = network.page(FeedRequest(limit=2, viewer=READER, at_ms=NOW_MS))
    store.make_like('ben', posts[0], at=NOW_S + 5)
    store.make_like('cat', posts[0], at=NOW_S + 6)
    second = network.page(FeedRequest(limit=2, cursor=first.cursor, viewer=READER, at_ms=NOW_MS + 10_000))
    assert [item.post for item in first.items + second.items] == posts[::-1]
    assert walk(network, 2, viewer=READER, at_ms=NOW_MS + 10_000)[0] == posts[0]


def test_network_passes_the_contract(store: StoreBuilder) -> None:
    now = time.time()
    for n in range(8):
        post = store.make_post(f'author{n % 3}', at=now - 3600)
        for friend in ('amy', 'ben', 'cat')[: n % 3 + 1]:
            store.make_like(friend, post, at=now - 600 * n)
    check_contract(Network(), store, viewer=READER)


def test_of_each_followed_account_only_its_newest_likes_count(store: StoreBuilder) -> None:
    reader_following(store, 'amy', 'ben')
    posts = [store.make_post(f'author{n}', at=NOW_S - 7200) for n in range(6)]
    for n, post in enumerate(posts):
        store.make_like('amy', post, at=NOW_S - 3000 + n)
    store.make_like('ben', posts[0], at=NOW_S - 3000)
    network = Network(votes_per_account=3)
    assert walk(network, 10, viewer=READER, at_ms=NOW_MS) == [*posts[:2:-1], posts[0]], "amy's 3 newest, ben's"
    page = network.page(FeedRequest(limit=1, viewer=READER, at_ms=NOW_MS))
    assert 'of each account its newest 3 likes and 3 reposts' in page.trace['filters']


@pytest.mark.parametrize('replayed_later', [False, True], ids=['indexed-live', 'replayed-later'])
def test_network_on_the_capture_counts_the_follows_votes(db: peewee.Database, replayed_later: bool) -> None:
    truth = read_truth(CAPTURE_20)
    reader = max({follow.author for follow in truth.records['app.bsky.graph.follow'].values()}, key=truth.follows_of)
    replay_at(db, CAPTURE_20, None if replayed_later else truth.end_ms + 1000)
    voters: dict[str, set[str]] = defaultdict(set)
    visible = truth.visible()
    for collection in (LIKE, REPOST):
        for record in truth.records[collection].values():
            post = visible.get(record.subject)
            if record.author in truth.follows_of(reader) and post is not None and post.author != reader:
                voters[record.subject].add(record.author)
    served = walk(Network(votes_per_account=1_000_000), 7, viewer=reader, at_ms=truth.end_ms + 2 * HOUR_MS)
    assert len(voters) > 10
    assert sorted(served) == sorted(voters)
    assert all(len(voters[a]) >= len(voters[b]) for a, b in itertools.pairwise(served))


class _StoreOnly:
    """Reads every account's votes from the store (as with no votes kept)."""

    def __init__(self, network: Network) -> None:
        self.load = network._load

    def votes(self, accounts: list[str], since: int, until: int) -> list[list]:
        return [[vote[1:] for vote in self.load(account, since, until, (until, until))] for account in accounts]


def store_only(network: Network) -> Network:
    network.__dict__['_kept'] = _StoreOnly(network)
    return network


def pages_of(network: Network, viewer: str, limit: int, at_ms: int) -> list[Page]:
    pages = [network.page(FeedRequest(limit=limit, viewer=viewer, at_ms=at_ms))]
    while pages[-1].cursor is not None:
        pages.append(network.page(FeedRequest(limit=limit, viewer=viewer, cursor=pages[-1].cursor, at_ms=at_ms)))
    return pages


@pytest.mark.parametrize('count', [1, 3])
def test_kept_votes_rank_exactly_as_the_store_while_the_world_changes(
    pipeline: Pipeline, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker keeps each followed account's newest votes and reads what is indexed and deleted since; whatever
    # happens between two first pages (likes and reposts, of posts not indexed yet or ever, more than `count` a kind,
    # their deletes, posts deleted, follows, unfollows, deactivations, deleted accounts), they rank as the store does.
    rng = random.Random(count)
    viewers = ['did:plc:viewer', 'did:plc:carol']
    accounts = [*viewers, *(f'did:plc:a{n}' for n in range(6))]
    kept, seq = Network(votes_per_account=count), 0
    made: dict[str, list[tuple[str, str]]] = {'post': [], 'like': [], 'repost': [], 'follow': []}
    pending: list[tuple[str, str]] = []
    loads = count_calls(monkeypatch, kept, '_load')

    def commit(actor: str, collection: str, record: dict | None, kind: str | None = None) -> bytes:
        nonlocal seq
        seq += 1
        if kind is not None:
            made[kind].append((actor, f'{collection}/r{seq}'))
        return frames.commit(seq, actor, [('create', f'{collection}/r{seq}', record)])

    for viewer, follows in ((viewers[0], accounts[1:6]), (viewers[1], accounts[3:])):
        for subject in follows:
            record = frames.subject_record('app.bsky.graph.follow', subject)
            pipeline.feed_all([commit(viewer, 'app.bsky.graph.follow', record, 'follow')])
    ranked = 0
    for _ in range(160):
        actor = rng.choice(accounts)
        roll = rng.random()
        if roll < 0.2 or not made['post']:
            if pending and rng.random() < 0.5:  # a post voted on before it was indexed
                actor, rkey = pending.pop()
                seq += 1
                made['post'].append((actor, f'app.bsky.feed.post/{rkey}'))
                record = frames.post_record('late')
                frame = frames.commit(seq, actor, [('create', f'app.bsky.feed.post/{rkey}', record)])
            else:
                frame = commit(actor, 'app.bsky.feed.post', frames.post_record('hi'), 'post')
        elif roll < 0.6:
            author, path = rng.choice(made['post'])
            uri = f'at://{author}/{path}'
            if rng.random() < 0.15:
                pending.append((author, f'early{seq}'))
                uri = f'at://{author}/app.bsky.feed.post/early{seq}'
            kind = 'like' if roll < 0.45 else 'repost'
            record = frames.subject_record(f'app.bsky.feed.{kind}', frames.strong_ref(uri))
            frame = commit(actor, f'app.bsky.feed.{kind}', record, kind)
        elif roll < 0.7:
            record = frames.subject_record('app.bsky.graph.follow', rng.choice(accounts))
            frame = commit(rng.choice(viewers), 'app.bsky.graph.follow', record, 'follow')
        elif roll < 0.92:
            kind = rng.choice(['like', 'like', 'repost', 'post', 'follow'])
            if not made[kind]:
                continue
            author, path = made[kind].pop(rng.randrange(len(made[kind])))
            seq += 1
            frame = frames.commit(seq, author, [('delete', path, None)])
        else:
            seq += 1
            status = rng.choice([None, 'deactivated', 'deleted'])
            frame = frames.account(seq, rng.choice(accounts[2:]), status is None, status)
        pipeline.feed_all([frame])
        for viewer in viewers:
            limit, at_ms = rng.randint(1, 4), int(time.time() * 1000)
            pages = pages_of(kept, viewer, limit, at_ms)
            expected = pages_of(store_only(Network(votes_per_account=count)), viewer, limit, at_ms)
            assert [(page.items, page.cursor) for page in pages] == [(page.items, page.cursor) for page in expected]
            ranked += sum(len(page.items) for page in pages)
    assert ranked > 300
    # the kept votes answered most first pages: far fewer reads of an account than first pages times follows
    assert 0 < len(loads) < 160 * 2 * 5 / 4
