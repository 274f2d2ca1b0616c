"""feedgen.store.schema: a store an earlier feedgen made opens with the columns (and their indexes) added since, and
without the indexes wider ones replaced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.settings import Settings
from feedgen.store.likes import number_stored_likes
from feedgen.store.models import Like, Receipt, open_database
from feedgen.store.schema import REPLACED_INDEXES


def test_a_store_from_before_receipts_named_readers_gains_the_column_and_its_index(tmp_path: Path) -> None:
    path = tmp_path / 'old.db'
    with sqlite3.connect(path) as old:
        old.execute('CREATE TABLE receipt (req_id TEXT PRIMARY KEY, feed TEXT, created_at INTEGER, payload BLOB)')
        old.execute("INSERT INTO receipt VALUES ('0123456789abcdef', 'latest', 1, x'00')")
    db = open_database(path)
    try:
        assert [(row.req_id, row.viewer) for row in Receipt.select()] == [('0123456789abcdef', None)]
        assert 'receipt_viewer' in {index.name for index in db.get_indexes('receipt')}
    finally:
        db.close()


def test_an_older_store_loses_the_indexes_wider_ones_replaced(settings: Settings, db: peewee.Database) -> None:
    builder = StoreBuilder(db)
    builder.make_like('bob', builder.make_post('alice', 'an old post'))
    db.execute_sql('CREATE INDEX "repost_author" ON "repost" ("author")')
    db.execute_sql('CREATE INDEX "follow_subject" ON "follow" ("subject")')
    db.execute_sql('CREATE INDEX "repost_indexed_at" ON "repost" ("indexed_at")')
    db.execute_sql('CREATE INDEX "repost_subject" ON "repost" ("subject")')
    db.close()
    reopened = open_database(settings.database)
    try:
        names = {index.name for table in ('repost', 'follow') for index in reopened.get_indexes(table)}
        assert names.isdisjoint(REPLACED_INDEXES)
        assert {'repost_indexed_at_uri', 'repost_subject_indexed_at'} <= names
        assert Like.select().count() == 1
    finally:
        reopened.close()


def test_a_store_whose_likes_are_text_opens_with_the_same_likes_numbered(settings: Settings) -> None:
    post = 'at://did:plc:alice/app.bsky.feed.post/3kpost'
    likes = [
        ('at://did:plc:bob/app.bsky.feed.like/3kbob', 'did:plc:bob', post, 5),
        ('at://did:plc:carol/app.bsky.feed.like/3kcarol', 'did:plc:carol', post, 7),
        ('at://did:plc:bob/app.bsky.feed.like/3kgone', 'did:plc:bob', 'at://did:plc:dan/app.bsky.feed.post/3kx', 6),
    ]
    skipped = [
        ('at://did:plc:bob/app.bsky.feed.like/3kfeed', 'did:plc:bob', 'at://did:plc:x/app.bsky.feed.generator/f', 8),
        ('at://did:plc:eve/app.bsky.feed.like/3k', 'did:plc:eve', 'at://did:plc:x/app.bsky.feed.post', 9),
    ]
    db = open_database(settings.database)  # today's tables, then the likes as an earlier feedgen kept them
    db.execute_sql('DROP VIEW "like"')
    db.execute_sql('CREATE TABLE "like" (uri TEXT PRIMARY KEY, author TEXT, subject TEXT, indexed_at BIGINT)')
    db.execute_sql('CREATE INDEX "like_author" ON "like" ("author")')
    for row in [*likes, *skipped]:
        db.execute_sql(f'INSERT INTO "like" VALUES ({", ".join([db.param] * 4)})', row)
    db.close()
    db = open_database(settings.database)
    try:
        assert sorted(Like.select().tuples()) == sorted(likes)  # likes of anything but a post are not kept
        bobs = Like.select().where(Like.author == 'did:plc:bob').order_by(Like.indexed_at).tuples()
        assert list(bobs) == [likes[0], likes[2]]
        assert not db.table_exists('like_text')
        assert 'like_author' not in {index.name for index in db.get_indexes('like')}
        assert {'like_record_author_rkey', 'like_record_subject_author_subject_rkey'} <= {
            index.name for index in db.get_indexes('like_record')
        }
        assert number_stored_likes(db) == 0  # once moved, never again
    finally:
        db.close()


def test_a_sqlite_library_without_returning_is_refused_before_the_store_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, 'sqlite_version_info', (3, 34, 1))
    monkeypatch.setattr(sqlite3, 'sqlite_version', '3.34.1')
    with pytest.raises(RuntimeError, match=r'SQLite 3\.34\.1 is too old for the store: 3\.35 or newer is needed'):
        open_database(tmp_path / 'f.db')
    assert not (tmp_path / 'f.db').exists()
