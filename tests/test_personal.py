"""feedgen/personal: a session's pages, kept in memory or ranked again, follow the published formulas exactly."""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from feedgen_algorithms import network as network_module
from feedgen_algorithms import quiet as quiet_module
from feedgen_algorithms.network import Network
from feedgen_algorithms.quiet import Quiet

from bench.serve.fill import Filler
from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking import personal
from feedgen.ranking.algorithm import FeedRequest, Page
from feedgen.ranking.feedback import LESS, MORE, author_weights
from feedgen.ranking.personal import Ordering, PersonalAlgorithm, Sessions
from feedgen.store.models import Post, open_database
from tests.paging import count_calls, walk
from tests.worlds import HOUR_MS, NOW_MS, NOW_S, READER, feedback, reader_following

AS_OF = NOW_MS - 3 * HOUR_MS
"""Before the store's newest records, so the windows' ends and `sort_at <= as_of` are exercised."""


@pytest.fixture(scope='module')
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A generated day of 5,000 posts, likes, reposts and follows; its reader follows 500 of 1,000 accounts."""
    path = tmp_path_factory.mktemp('personal') / 'store.db'
    info = Filler(posts=5_000, accounts=1_000, seed=5, now_ms=NOW_MS).write(path)
    return path, info.viewer


@pytest.fixture
def store(filled: tuple[Path, str]) -> Iterator[tuple[Path, str]]:
    """The generated store, open, with the reader's feedback: less of two busy authors, more of one."""
    path, viewer = filled
    database = open_database(path)
    with sqlite3.connect(path) as conn:
        busy = conn.execute(
            'SELECT author, MIN(uri) FROM post GROUP BY author ORDER BY COUNT(*) DESC LIMIT 3'
        ).fetchall()
    for (_, post), event in zip(busy, (LESS, LESS, MORE), strict=True):
        feedback(viewer, event, post, at_ms=AS_OF - HOUR_MS)
    yield path, viewer
    database.execute_sql('DELETE FROM interaction')
    database.close()


def decay(age_ms: int, half_life_hours: float) -> float:
    return 0.5 ** (max(0, age_ms) / HOUR_MS / half_life_hours)


def weighted(score: float, weight: float) -> int:
    return round(score * 1_000_000) if weight == 1.0 else int(round(score * 1_000_000) * weight)


def expected_order(path: Path, viewer: str, name: str) -> tuple[list[str], int]:
    """The published formula of `name` computed straight from the store's tables: URIs best first, and how many."""
    with sqlite3.connect(path) as conn:
        follows = {subject for (subject,) in conn.execute('SELECT subject FROM follow WHERE author = ?', (viewer,))}
        posts = {
            uri: (i, a, s, h, r)
            for uri, i, a, s, h, r in conn.execute(
                'SELECT uri, id, author, sort_at, hidden, reply_parent IS NOT NULL FROM post'
            )
        }
        weights = {}
        for author, event in conn.execute(
            'SELECT author, event FROM interaction WHERE viewer = ? AND at <= ? ORDER BY at', (viewer, AS_OF)
        ):
            weights[author] = 0.25 if event == LESS else 2.0
        scores: dict[str, float] = {}
        if name == 'network':
            latest: dict[str, dict[str, int]] = defaultdict(dict)
            for table in ('"like"', 'repost'):
                votes: dict[str, list[tuple[int, str]]] = defaultdict(list)
                for voter, subject, at in conn.execute(f'SELECT author, subject, indexed_at FROM {table}'):
                    if voter in follows and at > AS_OF - 48 * HOUR_MS:
                        votes[voter].append((at, subject))
                for voter, cast in votes.items():
                    newest = sorted(at for at, _ in cast)[-10:][0]  # its 10 newest, and any at the same moment
                    for at, subject in cast:
                        post = posts.get(subject)
                        if at >= newest and post and not post[3] and post[1] != viewer:
                            latest[subject][voter] = max(at, latest[subject].get(voter, at))
            scores = {uri: sum(decay(AS_OF - at, 6.0) for at in votes.values()) for uri, votes in latest.items()}
        else:
            window = {uri: post for uri, post in posts.items() if post[1] in follows and not post[3]}
            window = {uri: post for uri, post in window.items() if AS_OF - 72 * HOUR_MS < post[2] <= AS_OF}
            rates = Counter(post[1] for post in window.values())
            shown = {uri: post for uri, post in window.items() if not post[4]}
            scores = {uri: decay(AS_OF - post[2], 12.0) / rates[post[1]] for uri, post in shown.items()}
    key = {uri: (weighted(score, weights.get(posts[uri][1], 1.0)), posts[uri][0]) for uri, score in scores.items()}
    return sorted(key, key=key.get, reverse=True), len(key)


def pages(algorithm: PersonalAlgorithm, viewer: str, limit: int, fresh: bool = False) -> Iterator[Page]:
    """A session's pages, each from `algorithm`, or (`fresh`) from a new instance that keeps no session."""
    cursor = None
    while True:
        feed = type(algorithm)() if fresh else algorithm
        page = feed.page(FeedRequest(limit=limit, cursor=cursor, viewer=viewer, at_ms=AS_OF))
        yield page
        cursor = page.cursor
        if cursor is None:
            return


def keep_session_depth(monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    """Sessions keep `depth` entries: in the base class and in `quiet`, which walks only as far as they need."""
    monkeypatch.setattr(personal, 'SESSION_DEPTH', depth)
    monkeypatch.setattr(quiet_module, 'SESSION_DEPTH', depth)


@pytest.mark.parametrize('algorithm', [Network, Quiet])
def test_sessions_follow_the_published_formula(
    store: tuple[Path, str], algorithm: type[PersonalAlgorithm], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, viewer = store
    expected, candidates = expected_order(path, viewer, algorithm.name)
    assert candidates > 500
    kept = [page for page in pages(algorithm(), viewer, 30)]
    assert [item.post for page in kept for item in page.items] == expected
    assert {page.trace['candidates'] for page in kept} == {candidates}
    ranked_again = [item.post for page in pages(algorithm(), viewer, 100, fresh=True) for item in page.items]
    assert ranked_again == expected
    keep_session_depth(monkeypatch, 250)  # a session keeps less than it pages through
    shallow = algorithm()
    assert [item.post for page in pages(shallow, viewer, 60) for item in page.items] == expected
    assert len(shallow.sessions._orderings) == 1, 'the pages of one session share one entry'


@pytest.mark.parametrize(('depth', 'batch'), [(1, 1), (7, 1), (60, 1), (60, 8), (500, 2), (500, 8)])
def test_quiet_reads_only_the_posts_its_best_entries_need(
    store: tuple[Path, str], depth: int, batch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = store[1]
    monkeypatch.setattr(quiet_module, 'BATCH', batch)  # small first reads: most authors are read again
    quiet = Quiet()
    weights = author_weights(viewer, AS_OF)
    assert sorted(weights.values()) == [0.25, 0.25, 2.0]
    everything = PersonalAlgorithm.order(quiet, viewer, AS_OF, NOW_MS, weights, None)
    starts = [None] + [entry[:2] for entry in everything.entries[:: len(everything.entries) // 5]]
    keep_session_depth(monkeypatch, depth)
    for start in starts:
        walked = quiet.order(viewer, AS_OF, NOW_MS, weights, start)
        ranked = PersonalAlgorithm.order(quiet, viewer, AS_OF, NOW_MS, weights, start)
        assert walked.entries == ranked.entries
        assert (walked.total, walked.trace) == (ranked.total, ranked.trace)
        assert walked.cut or not ranked.cut, 'a part that leaves entries out says so'


@pytest.mark.parametrize('depth', [1, 7, 60, 500])
def test_network_looks_up_only_the_posts_its_best_entries_need(
    store: tuple[Path, str], depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = store[1]
    network = Network()
    weights = author_weights(viewer, AS_OF)
    assert sorted(weights.values()) == [0.25, 0.25, 2.0]
    everything = PersonalAlgorithm.order(network, viewer, AS_OF, NOW_MS, weights, None)
    starts = [None] + [entry[:2] for entry in everything.entries[:: len(everything.entries) // 5]]
    looked_up = count_calls(monkeypatch, network._kept_posts, 'rows')
    monkeypatch.setattr(personal, 'SESSION_DEPTH', depth)
    monkeypatch.setattr(network_module, 'SESSION_DEPTH', depth)
    for start in starts:
        walked = network.order(viewer, AS_OF, NOW_MS, weights, start)
        ranked = PersonalAlgorithm.order(network, viewer, AS_OF, NOW_MS, weights, start)
        assert walked.entries == ranked.entries
        assert walked.total >= ranked.total
        assert walked.cut or not ranked.cut, 'a part that leaves entries out says so'
        if not walked.cut:
            assert (walked.total, walked.trace) == (ranked.total, ranked.trace), 'all looked up: the same counts'
    if depth < 60:
        looked_up.clear()
        network.order(viewer, AS_OF, NOW_MS, weights, None)
        assert sum(len(uris) for (uris,) in looked_up) < everything.total / 2, 'most voted posts are not looked up'


@pytest.mark.parametrize('depth', [1, 3, 10, 40])
def test_quiet_reads_far_enough_through_posts_that_tie(
    db: peewee.Database, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = reader_following(StoreBuilder(db), 'amy', 'ben', 'cat')
    for author, hours in (('amy', 1), ('ben', 1), ('cat', 0.5)):  # bursts a millisecond apart: scores that tie
        for n in range(12):
            store.make_post(author, f'{author} {n}', at=NOW_S - hours * 3600 - (12 - n) / 1000)
    feedback(READER, LESS, store.make_post('cat', 'one more', at=NOW_S - 7200))
    monkeypatch.setattr(quiet_module, 'BATCH', 1)
    quiet = Quiet()
    weights = author_weights(READER, NOW_MS)
    everything = PersonalAlgorithm.order(quiet, READER, NOW_MS, NOW_MS, weights, None)
    assert len({entry[0] for entry in everything.entries}) < len(everything.entries) / 2, 'most scores tie'
    keep_session_depth(monkeypatch, depth)
    for start in [None, *(entry[:2] for entry in everything.entries)]:
        walked = quiet.order(READER, NOW_MS, NOW_MS, weights, start)
        assert walked.entries == PersonalAlgorithm.order(quiet, READER, NOW_MS, NOW_MS, weights, start).entries


@pytest.mark.parametrize('depth', [1, 3, 10, 40])
def test_network_looks_up_far_enough_through_posts_that_tie(
    db: peewee.Database, depth: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = reader_following(StoreBuilder(db), 'amy', 'ben', 'cat')
    for n in range(36):  # liked at the same moment: scores that tie
        post = store.make_post(f'author{n % 5}', f'post {n}', at=NOW_S - 7200)
        for friend in ('amy', 'ben', 'cat')[: 1 + n % 2]:
            store.make_like(friend, post, at=NOW_S - 3600)
    feedback(READER, MORE, store.make_post('author1', 'one more', at=NOW_S - 7200))
    monkeypatch.setattr(network_module, '_FIRST_LOOKUPS', 1)
    network = Network(votes_per_account=100)
    weights = author_weights(READER, NOW_MS)
    everything = PersonalAlgorithm.order(network, READER, NOW_MS, NOW_MS, weights, None)
    assert len({entry[0] for entry in everything.entries}) < len(everything.entries) / 5, 'most scores tie'
    monkeypatch.setattr(personal, 'SESSION_DEPTH', depth)
    monkeypatch.setattr(network_module, 'SESSION_DEPTH', depth)
    for start in [None, *(entry[:2] for entry in everything.entries)]:
        walked = network.order(READER, NOW_MS, NOW_MS, weights, start)
        assert walked.entries == PersonalAlgorithm.order(network, READER, NOW_MS, NOW_MS, weights, start).entries


def test_the_pages_after_the_first_reuse_its_ranking(filled: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, viewer = filled
    database = open_database(path)
    network = Network()
    ranked = []
    monkeypatch.setattr(network, 'order', lambda *args: ranked.append(args) or Network.order(network, *args))
    walked = list(pages(network, viewer, 30))
    pages_a_part_holds = (personal.SESSION_DEPTH - 1) // 30  # a page needs the entry after it, for its cursor
    assert len(walked) > pages_a_part_holds
    assert len(ranked) == -(-len(walked) // pages_a_part_holds), 'ranked once per SESSION_DEPTH entries paged'
    ranked.clear()
    network.page(FeedRequest(limit=30, viewer=viewer, at_ms=AS_OF))
    assert len(ranked) == 1, 'a first page is a new session: it ranks again'
    database.close()


def test_feedback_sent_between_sessions_counts(db: peewee.Database) -> None:
    store = reader_following(StoreBuilder(db), 'amy', 'ben')
    first = store.make_post('amy', at=NOW_S - 3600)
    second = store.make_post('ben', at=NOW_S - 7200)
    quiet = Quiet()
    assert walk(quiet, 1, viewer=READER, at_ms=NOW_MS) == [first, second]
    feedback(READER, LESS, first)
    assert walk(quiet, 1, viewer=READER, at_ms=NOW_MS) == [second, first]


def test_a_post_deleted_while_the_reader_pages_is_left_out(db: peewee.Database) -> None:
    store = reader_following(StoreBuilder(db), 'amy')
    posts = [store.make_post('amy', f'post {n}', at=NOW_S - 3600 * (n + 1)) for n in range(4)]
    quiet = Quiet()
    first = quiet.page(FeedRequest(limit=2, viewer=READER, at_ms=NOW_MS))
    assert [item.post for item in first.items] == posts[:2]
    Post.delete().where(Post.uri == posts[2]).execute()
    second = quiet.page(FeedRequest(limit=2, cursor=first.cursor, viewer=READER, at_ms=NOW_MS))
    assert [item.post for item in second.items] == posts[3:]
    assert second.cursor is None


def test_sessions_keep_the_latest_paged() -> None:
    sessions = Sessions(size=2)
    orderings = [Ordering([], 0, None, False, {}) for _ in range(3)]
    sessions.put(('a',), orderings[0])
    sessions.put(('b',), orderings[1])
    assert sessions.get(('a',)) is orderings[0]
    sessions.put(('c',), orderings[2])
    assert sessions.get(('b',)) is None
    assert sessions.get(('a',)) is orderings[0]
    assert sessions.get(('c',)) is orderings[2]
