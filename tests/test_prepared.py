"""feedgen.store.prepared: a query compiled once per kind of database runs with new values in its markers' places."""

from __future__ import annotations

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.store.models import Post
from feedgen.store.prepared import Prepared, marker

AUTHOR = marker('author')
LIMIT = 2**31 - 1


def test_each_run_fills_the_markers_and_reads_named_rows(db: peewee.Database) -> None:
    store = StoreBuilder(db)
    posts = {name: [store.make_post(name, f'{name} {n}', at=1_700_000_000 + n) for n in range(3)] for name in 'ab'}
    query = Post.select(Post.uri, Post.id.alias('item')).where(Post.author == AUTHOR).order_by(Post.id).limit(LIMIT)
    prepared = Prepared(query, (AUTHOR, LIMIT))
    for uris in posts.values():
        author = Post.get(Post.uri == uris[0]).author
        rows = list(prepared.run(author, 2))
        assert [row.uri for row in rows] == uris[:2]
        assert [row.item for row in rows] == sorted(row.item for row in rows)
    assert list(prepared.run('did:plc:nobody', 10)) == []
    assert len(prepared._compiled) == 1  # compiled once, run six times


def test_a_marker_missing_from_the_query_is_refused(db: peewee.Database) -> None:
    prepared = Prepared(Post.select(Post.uri).where(Post.author == 'someone'), (AUTHOR,))
    with pytest.raises(ValueError, match='marker'):
        list(prepared.run('did:plc:x'))
