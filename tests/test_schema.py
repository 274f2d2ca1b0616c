"""feedgen.store.schema: a store an earlier version made opens with the indexes of this one, its rows unchanged."""

from __future__ import annotations

import peewee

from feedgen.authoring.builder import StoreBuilder
from feedgen.settings import Settings
from feedgen.store.models import Like, open_database
from feedgen.store.schema import REPLACED_INDEXES


def test_an_older_store_loses_the_indexes_wider_ones_replaced(settings: Settings, db: peewee.Database) -> None:
    builder = StoreBuilder(db)
    builder.make_like('bob', builder.make_post('alice', 'an old post'))
    db.execute_sql('CREATE INDEX "like_author" ON "like" ("author")')
    db.execute_sql('CREATE INDEX "repost_author" ON "repost" ("author")')
    db.execute_sql('CREATE INDEX "follow_subject" ON "follow" ("subject")')
    db.close()
    reopened = open_database(settings.database)
    try:
        names = {index.name for table in ('like', 'repost', 'follow') for index in reopened.get_indexes(table)}
        assert names.isdisjoint(REPLACED_INDEXES)
        assert 'like_author_indexed_at' in names
        assert Like.select().count() == 1
    finally:
        reopened.close()
