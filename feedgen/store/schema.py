"""Schema: brings the tables an older feedgen created up to the models, by adding the columns they lack.

Owns `add_missing_columns`, which `open_database` runs before creating missing tables and indexes (an index may name
a column added since): a store written by an earlier version keeps its rows, and a column added since (with a
default) appears with that default in every row. Columns are only ever added here. Indexes an earlier version
made that a wider one now serves (`REPLACED_INDEXES`) are dropped (`drop_replaced_indexes`), so an old store takes
no more space than a new one; no row changes.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee
from playhouse.migrate import SchemaMigrator, migrate


def add_missing_columns(db: peewee.Database, models: Iterable[type[peewee.Model]]) -> list[str]:
    """Adds to each model's existing table the declared columns it lacks; returns them as `table.column`."""
    migrator = SchemaMigrator.from_database(db)
    added, operations = [], []
    for model in models:
        table = model._meta.table_name
        if not db.table_exists(table):
            continue
        present = {column.name for column in db.get_columns(table)}
        for field in model._meta.sorted_fields:
            if field.column_name not in present:
                operations.append(migrator.add_column(table, field.column_name, field))
                added.append(f'{table}.{field.column_name}')
    if operations:
        with db.atomic():
            migrate(*operations)
    return added


REPLACED_INDEXES = ('repost_author', 'follow_subject', 'repost_indexed_at', 'repost_subject')
"""Indexes earlier versions made: `(author)` of reposts is the start of `(author, indexed_at)`, no
query looks follows up by their subject alone, and `(indexed_at)` and `(subject)` of reposts are the starts of
`(indexed_at, uri)` and `(subject, indexed_at)`."""


def drop_replaced_indexes(db: peewee.Database) -> list[str]:
    """Drops the `REPLACED_INDEXES` the store still has; returns their names."""
    present = {index.name for table in ('repost', 'follow') for index in db.get_indexes(table)}
    dropped = [name for name in REPLACED_INDEXES if name in present]
    for name in dropped:
        db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    return dropped
