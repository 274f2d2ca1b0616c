"""algorithms/following: each viewer sees the posts of the accounts they follow, newest first, paged by index."""

from __future__ import annotations

import random
import threading

import peewee
import pytest
from feedgen_algorithms import following
from feedgen_algorithms.following import Following, followed_posts
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ranking import timelines
from feedgen.ranking.algorithm import FeedRequest, Page
from feedgen.ranking.pagination import decode_cursor
from feedgen.serve.app import create_app
from feedgen.serve.auth import ServiceAuth
from feedgen.settings import Settings
from feedgen.store.models import Follow, Post, Repost
from tests import frames
from tests.conftest import CAPTURE_20, load_session
from tests.jwts import FakeKeys, SigningKey, service_claims
from tests.paging import count_calls
from tests.test_server import SKELETON

VIEWER, BOB, CAROL = 'did:plc:viewer', 'did:plc:bob', 'did:plc:carol'
FEED = 'at://did:plc:publisher0000000000000000/app.bsky.feed.generator/following'


class Reader:
    """Reads the `following` feed through the server as any viewer, with tokens signed by each viewer's key."""

    def __init__(self, settings: Settings, db: peewee.Database) -> None:
        self.keys = FakeKeys()
        self.signing: dict[str, SigningKey] = {}
        self.service_did = settings.service_did
        self.client: FlaskClient = create_app(
            settings, db=db, auth=ServiceAuth(settings.service_did, self.keys)
        ).test_client()

    def get(self, viewer: str, limit: int = 50, cursor: str | None = None) -> TestResponse:
        if viewer not in self.signing:
            self.signing[viewer] = SigningKey()
            self.keys.published[viewer] = self.signing[viewer].did_key
        token = self.signing[viewer].jwt(service_claims(viewer, self.service_did))
        query = {'feed': FEED, 'limit': limit} | ({'cursor': cursor} if cursor else {})
        return self.client.get(SKELETON, query_string=query, headers={'Authorization': f'Bearer {token}'})

    def page(self, viewer: str, limit: int = 50, cursor: str | None = None) -> dict:
        response = self.get(viewer, limit, cursor)
        assert response.status_code == 200, response.json
        return response.json

    def all(self, viewer: str, limit: int = 50) -> list[str]:
        seen: list[str] = []
        cursor = None
        while True:
            body = self.page(viewer, limit, cursor)
            seen.extend(item['post'] for item in body['feed'])
            cursor = body.get('cursor')
            if cursor is None:
                return seen


@pytest.fixture
def reader(settings: Settings, db: peewee.Database) -> Reader:
    return Reader(settings, db)


def expected_for(viewer: str) -> list[str]:
    """The oracle, computed in Python: every visible post whose author `viewer` follows, at its time, and every other
    visible post reposted by an account `viewer` follows, at its newest such repost; newest first."""
    followed = {subject for (subject,) in Follow.select(Follow.subject).where(Follow.author == viewer).tuples()}
    posts = {row[0]: row for row in Post.select(Post.uri, Post.author, Post.sort_at, Post.id, Post.hidden).tuples()}
    visible = {uri: row for uri, row in posts.items() if not row[4]}
    entries = [(row[2], 1, row[3], uri) for uri, row in visible.items() if row[1] in followed]
    newest: dict[str, tuple[int, int, str, str]] = {}
    for uri, author, subject, indexed_at in Repost.select(
        Repost.uri, Repost.author, Repost.subject, Repost.indexed_at
    ).tuples():
        if author in followed and subject in visible and visible[subject][1] not in followed:
            newest[subject] = max(newest.get(subject, (0, 0, '', '')), (indexed_at, 0, uri, subject))
    entries += newest.values()
    return [entry[3] for entry in sorted(entries, reverse=True)]


@pytest.mark.parametrize(
    ('scan_rows', 'window', 'seeks'),
    [
        (following.SCAN_ROWS, following.WINDOW_MS, False),
        (40, following.WINDOW_MS, True),
        (1, 1, True),
        (1, 10**15, True),
    ],
)
def test_every_account_of_the_capture_sees_exactly_its_follows_posts(
    reader: Reader, pipeline: Pipeline, scan_rows: int, window: int, seeks: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With fewer rows to walk by time, more pages come from seeking the followed authors one by one, through time
    # ranges widened from `window` until they hold a page: same pages.
    monkeypatch.setattr(following, 'SCAN_ROWS', scan_rows)
    monkeypatch.setattr(following, 'WINDOW_MS', window)
    sought = []
    by_author = following.BY_AUTHOR

    class Spy:
        def widening_rows(self, *args: object, **kwargs: object) -> object:
            sought.append(args)
            return by_author.widening_rows(*args, **kwargs)

    monkeypatch.setattr(following, 'BY_AUTHOR', Spy())
    replay(CAPTURE_20, pipeline)
    feeds = {}
    for account in load_session(CAPTURE_20)['accounts']:
        did = account['did']
        feeds[did] = reader.all(did, limit=7)
        assert feeds[did] == expected_for(did)
        assert reader.all(did, limit=100) == feeds[did]
    assert sum(1 for feed in feeds.values() if feed) >= 15
    assert len({tuple(feed) for feed in feeds.values()}) >= 15
    assert bool(sought) == seeks


class _StoreOnly:
    """Timelines that keep nothing: every page is read from the store."""

    def rows(self, reader: str, count: int, below: tuple[object, ...]) -> None:
        return None


def store_only(algorithm: Following) -> Following:
    """`algorithm`, reading every page from the store (as with no timelines kept)."""
    algorithm.__dict__['_timelines'] = _StoreOnly()
    return algorithm


def pages_of(algorithm: Following, viewer: str, limit: int) -> list[Page]:
    pages = [algorithm.page(FeedRequest(limit=limit, viewer=viewer))]
    while pages[-1].cursor is not None:
        pages.append(algorithm.page(FeedRequest(limit=limit, viewer=viewer, cursor=pages[-1].cursor)))
    return pages


@pytest.mark.parametrize('depth', [3, 64])
def test_kept_timelines_page_exactly_as_the_store_while_the_world_changes(
    pipeline: Pipeline, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker keeps each reader's newest candidates and what checking them found, and reads what is indexed and
    # changed since; whatever happens between two pages (posts, backdated posts, reposts, of posts indexed later too,
    # deletes, follows, unfollows, deactivations), its pages are the store's.
    monkeypatch.setattr(timelines, 'DEPTH', depth)
    rng = random.Random(depth)
    accounts = [VIEWER, BOB, CAROL, *(f'did:plc:a{n}' for n in range(5))]
    kept, seq, made = Following(), 1, {'post': [], 'repost': [], 'follow': []}
    pending: list[tuple[str, str]] = []
    items = streams = 0
    from_store = count_calls(monkeypatch, kept, '_rows')
    for reader, subjects in ((VIEWER, accounts[1:5]), (CAROL, accounts[4:])):
        for subject in subjects:
            seq += 1
            record = frames.subject_record('app.bsky.graph.follow', subject)
            pipeline.feed_all([frames.commit(seq, reader, [('create', f'app.bsky.graph.follow/f{seq}', record)])])
            made['follow'].append((reader, f'app.bsky.graph.follow/f{seq}'))
    for step in range(120):
        seq += 1
        actor = rng.choice(accounts)
        roll = rng.random()
        if roll < 0.35:
            minute = rng.randrange(60) if rng.random() < 0.3 else 59
            # Now and then a post reposted before it was indexed.
            actor, rkey = pending.pop() if pending and rng.random() < 0.5 else (actor, f'p{seq}')
            frame = _post(seq, actor, rkey, f'2026-11-24T{10 + step // 60:02d}:{minute:02d}:00.000Z')
            made['post'].append((actor, f'app.bsky.feed.post/{rkey}'))
        elif roll < 0.55 and made['post']:
            author, path = rng.choice(made['post'])
            if rng.random() < 0.2:
                author, rkey = rng.choice(accounts), f'early{seq}'
                pending.append((author, rkey))
                path = f'app.bsky.feed.post/{rkey}'
            record = frames.subject_record('app.bsky.feed.repost', frames.strong_ref(f'at://{author}/{path}'))
            frame = frames.commit(seq, actor, [('create', f'app.bsky.feed.repost/r{seq}', record)])
            made['repost'].append((actor, f'app.bsky.feed.repost/r{seq}'))
        elif roll < 0.7:
            record = frames.subject_record('app.bsky.graph.follow', rng.choice(accounts))
            frame = frames.commit(seq, actor, [('create', f'app.bsky.graph.follow/f{seq}', record)])
            made['follow'].append((actor, f'app.bsky.graph.follow/f{seq}'))
        elif roll < 0.9:
            kind = rng.choice(['post', 'post', 'repost', 'follow'])
            if not made[kind]:
                continue
            author, path = made[kind].pop(rng.randrange(len(made[kind])))
            frame = frames.commit(seq, author, [('delete', path, None)])
        else:
            active = rng.random() < 0.6
            frame = frames.account(seq, rng.choice(accounts[1:]), active, None if active else 'deactivated')
        pipeline.feed_all([frame])
        for viewer in (VIEWER, CAROL):
            limit = rng.randint(1, 4)
            pages = pages_of(kept, viewer, limit)
            assert [(page.items, page.cursor) for page in pages] == [
                (page.items, page.cursor) for page in pages_of(store_only(Following()), viewer, limit)
            ]
            assert [item.post for page in pages for item in page.items] == expected_for(viewer)
            items += sum(len(page.items) for page in pages)
            streams += 2 * len(pages)
    assert items > 500
    # With 64 kept, the kept candidates answer every page; with 3, the pages below them come from the store.
    assert 0 < len(from_store) < streams if depth == 3 else not from_store


def test_a_kept_timeline_gets_the_rows_of_a_later_batch_stamped_in_the_same_millisecond(db: peewee.Database) -> None:
    # Ingest stamps a batch's rows alike; a worker reads the newest millisecond it has read again only when it has
    # more rows, which a later batch stamped in the same millisecond gives it.
    pipeline = Pipeline(Indexer(db, 'test', clock=lambda: 1_790_000_000.0), batch_size=100)
    pipeline.feed_all([_follow(1, 'f1', BOB), _post(2, BOB, 'b1', '2026-11-24T10:00:00.000Z')])
    kept = Following()
    assert [item.post for item in kept.page(FeedRequest(limit=10, viewer=VIEWER)).items] == expected_for(VIEWER)
    pipeline.feed_all([_post(3, BOB, 'b2', '2026-11-24T10:01:00.000Z')])
    pipeline.feed_all([_post(4, BOB, 'b3', '2026-11-24T10:02:00.000Z')])
    assert len(expected_for(VIEWER)) == 3
    for _ in range(2):
        assert [item.post for item in kept.page(FeedRequest(limit=10, viewer=VIEWER)).items] == expected_for(VIEWER)
        assert kept.page(FeedRequest(limit=10, viewer=VIEWER)).trace == {'read': 'kept timeline'}


def test_a_kept_timeline_gets_what_another_connection_indexed_and_reads_nothing_when_nothing_was(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On SQLite a worker reads what was indexed since its last look only when its connection's `data_version` moved
    # (a commit of another connection: ingest's, in another process) or the connection wrote itself.
    pipeline = Pipeline(Indexer(db, 'test', clock=lambda: 1_790_000_000.0), batch_size=100)
    pipeline.feed_all([_follow(1, 'f1', BOB), _post(2, BOB, 'b1', '2026-11-24T10:00:00.000Z')])
    kept = Following()
    looks = 0
    catch_up = timelines.Timelines._catch_up

    def counted(self: timelines.Timelines) -> None:
        nonlocal looks
        looks += 1
        catch_up(self)

    monkeypatch.setattr(timelines.Timelines, '_catch_up', counted)
    for _ in range(3):
        assert [item.post for item in kept.page(FeedRequest(limit=10, viewer=VIEWER)).items] == expected_for(VIEWER)
    sqlite = isinstance(db, peewee.SqliteDatabase)  # PostgreSQL has nothing as cheap as `data_version`: a look a page
    assert looks == (1 if sqlite else 3)
    elsewhere = threading.Thread(  # peewee opens a connection per thread
        target=lambda: pipeline.feed_all([_post(3, BOB, 'b2', '2026-11-24T10:01:00.000Z')])
    )
    elsewhere.start()
    elsewhere.join()
    assert len(expected_for(VIEWER)) == 2
    assert [item.post for item in kept.page(FeedRequest(limit=10, viewer=VIEWER)).items] == expected_for(VIEWER)
    assert looks == (2 if sqlite else 4)


def _identity(seq: int, did: str, handle: str) -> bytes:
    return frames.frame('#identity', {'seq': seq, 'did': did, 'handle': handle, 'time': frames.NOW})


def _follow(seq: int, rkey: str, subject: str) -> bytes:
    record = frames.subject_record('app.bsky.graph.follow', subject)
    return frames.commit(seq, VIEWER, [('create', f'app.bsky.graph.follow/{rkey}', record)])


def _post(seq: int, author: str, rkey: str, created_at: str) -> bytes:
    record = frames.post_record(f'{rkey} by {author}', created_at=created_at)
    return frames.commit(seq, author, [('create', f'app.bsky.feed.post/{rkey}', record)])


def test_follows_unfollows_deletes_and_deactivation_change_the_feed(reader: Reader, pipeline: Pipeline) -> None:
    bob_1, bob_2 = f'at://{BOB}/app.bsky.feed.post/b1', f'at://{BOB}/app.bsky.feed.post/b2'
    carol_1 = f'at://{CAROL}/app.bsky.feed.post/c1'
    pipeline.feed_all(
        [
            _identity(1, CAROL, 'carol.test'),
            _post(2, BOB, 'b1', '2026-11-24T10:00:00.000Z'),
            _post(3, CAROL, 'c1', '2026-11-24T10:30:00.000Z'),
            _post(4, BOB, 'b2', '2026-11-24T11:00:00.000Z'),
        ]
    )
    assert reader.all(VIEWER) == []
    pipeline.feed_all([_follow(5, 'f1', BOB)])
    body = reader.page(VIEWER)
    assert [item['post'] for item in body['feed']] == [bob_2, bob_1]
    assert [item['feedContext'] for item in body['feed']] == ['from an account you follow'] * 2
    pipeline.feed_all([_follow(6, 'f2', CAROL)])
    body = reader.page(VIEWER)
    assert [item['post'] for item in body['feed']] == [bob_2, carol_1, bob_1]
    assert body['feed'][1]['feedContext'] == 'you follow @carol.test'
    assert reader.all('did:plc:someone.else') == []
    pipeline.feed_all([frames.commit(7, BOB, [('delete', 'app.bsky.feed.post/b2', None)])])
    assert reader.all(VIEWER) == [carol_1, bob_1]
    pipeline.feed_all([frames.account(8, CAROL, active=False, status='deactivated')])
    assert reader.all(VIEWER) == [bob_1]
    pipeline.feed_all([frames.commit(9, VIEWER, [('delete', 'app.bsky.graph.follow/f1', None)])])
    assert reader.all(VIEWER) == []


def test_paging_is_stable_while_new_posts_arrive(reader: Reader, pipeline: Pipeline) -> None:
    pipeline.feed_all([_follow(1, 'f1', BOB)])
    pipeline.feed_all(_post(1 + n, BOB, f'p{n}', f'2026-11-24T10:{n:02d}:00.000Z') for n in range(1, 21))
    first = reader.page(VIEWER, limit=8)
    pipeline.feed_all([_post(30, BOB, 'newest', '2026-11-24T11:00:00.000Z')])
    second = reader.page(VIEWER, limit=8, cursor=first['cursor'])
    pages = [item['post'] for item in first['feed'] + second['feed']]
    assert pages == [f'at://{BOB}/app.bsky.feed.post/p{n}' for n in range(20, 4, -1)]
    assert decode_cursor(second['cursor'].split(':', 1)[1], 3)  # after a post: <time>:1:<post id>


def test_a_reader_whose_newest_rows_did_not_fill_a_page_is_sought_straight_away(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Walking the store's newest posts is wasted for a reader whose followed accounts post rarely: after it fails
    # once, that reader's next RETRY_PAGES pages seek the accounts without it, then it is tried again. Same pages.
    monkeypatch.setattr(following, 'SCAN_ROWS', 4)
    walks: list[object] = []
    recent = following.RECENT

    class Spy:
        def bounded_rows(self, after: object, count: int, scan_rows: int, values: tuple[str]) -> object:
            walks.append(values[0])
            return recent.bounded_rows(after, count, scan_rows, values)

    monkeypatch.setattr(following, 'RECENT', Spy())
    loud = 'did:plc:loud'
    carol_follows = frames.subject_record('app.bsky.graph.follow', loud)
    pipeline.feed_all(
        [_follow(1, 'f1', BOB), frames.commit(2, CAROL, [('create', 'app.bsky.graph.follow/f2', carol_follows)])]
    )
    pipeline.feed_all(_post(10 + n, BOB, f'b{n}', f'2026-11-24T09:{n:02d}:00.000Z') for n in range(3))
    pipeline.feed_all(_post(20 + n, loud, f'l{n}', f'2026-11-24T10:{n:02d}:00.000Z') for n in range(20))
    served = store_only(Following())
    pages = following.RETRY_PAGES + 2
    for _ in range(pages):
        for viewer in (VIEWER, CAROL):
            page = served.page(FeedRequest(limit=2, viewer=viewer))
            fresh = store_only(Following())  # a worker that remembers nothing
            assert page == fresh.page(FeedRequest(limit=2, viewer=viewer))
            assert [item.post for item in page.items] == expected_for(viewer)[:2]
    # Bob's 3 posts are not among the newest 4: the first page walks, the next RETRY_PAGES do not, the last walks.
    # The loud account's fill every page from the walk. (Each fresh worker above walked once more.)
    assert walks.count(VIEWER) - pages == 2
    assert walks.count(CAROL) - pages == pages


def test_the_query_seeks_the_author_index_and_never_scans_posts(
    db: peewee.Database, pipeline: Pipeline, backend: str
) -> None:
    if backend != 'sqlite':
        pytest.skip('a SQLite query plan')
    replay(CAPTURE_20, pipeline)
    query = followed_posts(VIEWER).where(peewee.Tuple(Post.sort_at, Post.id) < peewee.Tuple(2**62, 1))
    sql, params = query.order_by(Post.sort_at.desc(), Post.id.desc()).limit(51).sql()
    plan = ' | '.join(row[-1] for row in db.execute_sql('EXPLAIN QUERY PLAN ' + sql, params).fetchall())
    # One index range per followed author (`author=? AND sort_at<?`); the merge of those ranges is sorted in a
    # temporary B-tree bounded by LIMIT, never the post table.
    assert 'USING INDEX post_author_sort_at_id (author=? AND sort_at<?)' in plan, plan
    assert 'SCAN t1' not in plan and 'SCAN post' not in plan, plan


def test_explain_names_the_follow_that_put_a_post_in_the_feed(pipeline: Pipeline) -> None:
    pipeline.feed_all([_follow(1, 'f1', BOB), _post(2, BOB, 'b1', frames.NOW), _post(3, CAROL, 'c1', frames.NOW)])
    request = FeedRequest(limit=10, viewer=VIEWER)
    explained = Following().explain(f'at://{BOB}/app.bsky.feed.post/b1', request)
    assert explained is not None
    assert explained['filters'] == {'author followed by the reader': f'at://{VIEWER}/app.bsky.graph.follow/f1'}
    assert Following().explain(f'at://{CAROL}/app.bsky.feed.post/c1', request) is None


def test_the_feed_says_it_is_personalized(app: Flask) -> None:
    assert Following.personalized is True
    response = app.test_client().get(SKELETON, query_string={'feed': FEED})
    assert (response.status_code, response.json['error']) == (401, 'AuthRequired')
