"""feedgen.store.schema: a store an earlier feedgen made opens with the columns (and their indexes) added since, and
without the indexes wider ones replaced."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.settings import Settings
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
    db.execute_sql('CREATE INDEX "like_author" ON "like" ("author")')
    db.execute_sql('CREATE INDEX "repost_author" ON "repost" ("author")')
    db.execute_sql('CREATE INDEX "follow_subject" ON "follow" ("subject")')
    db.execute_sql('CREATE INDEX "repost_indexed_at" ON "repost" ("indexed_at")')
    db.execute_sql('CREATE INDEX "repost_subject" ON "repost" ("subject")')
    db.close()
    reopened = open_database(settings.database)
    try:
        names = {index.name for table in ('like', 'repost', 'follow') for index in reopened.get_indexes(table)}
        assert names.isdisjoint(REPLACED_INDEXES)
        assert {'like_author_indexed_at', 'repost_indexed_at_uri', 'repost_subject_indexed_at'} <= names
        assert Like.select().count() == 1
    finally:
        reopened.close()


def test_a_sqlite_library_without_returning_is_refused_before_the_store_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, 'sqlite_version_info', (3, 34, 1))
    monkeypatch.setattr(sqlite3, 'sqlite_version', '3.34.1')
    with pytest.raises(RuntimeError, match=r'SQLite 3\.34\.1 is too old for the store: 3\.35 or newer is needed'):
        open_database(tmp_path / 'f.db')
    assert not (tmp_path / 'f.db').exists()
