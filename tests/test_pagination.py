"""pagination: cursors are checked, merged index walks and in-memory rankings page without repeats or skips."""

from __future__ import annotations

import random

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.algorithm import FeedRequest, InvalidCursor
from feedgen.ranking.pagination import Stream, decode_cursor, encode_cursor, ranked_page, session_cursor, streams_page
from feedgen.store.models import Post, PostTerm


@pytest.mark.parametrize('cursor', ['', '1', '1:2:3', 'a:1', '1:2\n', '1: 2', '99999999999999999999:1', f'{2**63}:1'])
def test_a_malformed_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_cursors_round_trip() -> None:
    assert decode_cursor(encode_cursor(-5, 7)) == (-5, 7)
    assert decode_cursor(encode_cursor(1, 2, 3, 4), 4) == (1, 2, 3, 4)
    assert session_cursor(FeedRequest(limit=1, at_ms=42), 1) == (None, None)
    assert session_cursor(FeedRequest(limit=1, cursor='42:5:7:9'), 2) == ((42, 5), (7, 9))
    with pytest.raises(InvalidCursor):
        session_cursor(FeedRequest(limit=1, cursor='42:7:9'), 2)


def test_merged_streams_page_without_repeats_or_skips(db: peewee.Database) -> None:
    store = StoreBuilder(db)
    tags = [['a'], ['b'], ['a', 'b'], ['c']]
    posts = [store.make_post('ana', f'post {n}', tags=tags[n % 4], at=1_700_000_000 + n // 3) for n in range(40)]
    expected = [uri for n, uri in enumerate(posts) if n % 4 != 3][::-1]
    streams = [
        Stream(
            PostTerm.select(Post.uri).join(Post, on=Post.id == PostTerm.post_id).where(PostTerm.term == term),
            PostTerm.sort_at,
            PostTerm.post_id,
        )
        for term in ('tag:a', 'tag:b')
    ]
    for limit in (1, 4, 100):
        served, cursor = [], None
        while True:
            page = streams_page(streams, FeedRequest(limit=limit, cursor=cursor), context=lambda row: 'tagged')
            assert len(page.items) <= limit
            served.extend(item.post for item in page.items)
            cursor = page.cursor
            if cursor is None:
                break
        assert served == expected


def test_a_ranking_pages_by_score_then_id_and_keeps_its_session() -> None:
    ranking = [(score, item_id, f'post{item_id}') for item_id, score in enumerate([5, 9, 5, 1, 9, 7])]
    first, cursor = ranked_page(ranking, 2, None, (1234, 99))
    assert [entry[2] for entry in first] == ['post4', 'post1']
    assert cursor == '1234:99:9:1'
    served = []
    while cursor is not None:
        session, after = session_cursor(FeedRequest(limit=2, cursor=cursor), 2)
        assert session == (1234, 99)
        entries, cursor = ranked_page(ranking, 2, after, session)
        served.extend(entry[2] for entry in entries)
    assert served == ['post5', 'post2', 'post0', 'post3']


def test_widening_ranges_read_the_same_rows_as_one_walk(db: peewee.Database) -> None:
    rng = random.Random(7)
    store = StoreBuilder(db)
    authors = [f'author{n}' for n in range(8)]
    for n in range(300):  # bursts and quiet hours, many posts sharing a second
        store.make_post(rng.choice(authors), f'post {n}', at=1_700_000_000 + int(rng.paretovariate(0.7)) % 50_000)
    followed = sorted({author for (author,) in Post.select(Post.author).tuples()})[:3]
    stream = Stream(Post.select(Post.uri).where(Post.author.in_(followed)), Post.sort_at, Post.id)
    walked = list(stream.rows(None, 1000))
    assert 50 < len(walked) < 300
    starts = [None, *[(row.rank_key, row.item_id) for row in rng.sample(walked, 10)], (2**63 - 1, 0), (0, 0)]
    for after in starts:
        for count in (1, 7, 31, 1000):
            expected = list(stream.rows(after, count))
            for window in (1, 1000, 60_000, 10**15):
                assert stream.widening_rows(after, count, window) == expected
