"""Statements: raw multi-row SQL every writer of the store shares (insert-or-skip, deletes by key, `IN` lists).

Peewee builds a node per value; for the thousands of rows a batch writes, building the query costs more than running
it. These run one statement per chunk of rows, or one prepared statement over all rows on SQLite, the same on SQLite
and PostgreSQL (`ON CONFLICT DO NOTHING`, `RETURNING`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import peewee

T = TypeVar('T')

_CHUNK = 500  # rows per statement: well under SQLite's bound-variable limit


def chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_in_chunks(db: peewee.Database, head: str, values: Sequence[Any], tail: str = '') -> Iterator[Any]:
    """Runs the raw statement `head (?, ?, ...)tail` once per chunk of `values`, yielding each cursor: a column `IN`
    a chunk of values without a peewee node per value, which for a chunk of URIs costs more than the statement."""
    for chunk in chunks(values):
        marks = ', '.join([db.param] * len(chunk))
        yield db.execute_sql(f'{head} ({marks}){tail}', list(chunk))


def insert_ignore(
    db: peewee.Database,
    model: type[peewee.Model],
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Inserts `rows` (values of `columns`; other columns get the model's defaults) into `model`'s table, skipping
    rows whose key is already stored; returns the `returning` columns of the rows it inserted.

    `ON CONFLICT DO NOTHING` on SQLite and PostgreSQL alike, without building a peewee query per row: multi-row
    `VALUES` statements (with `RETURNING` when asked), or one prepared statement run over all rows on SQLite when
    nothing is returned.
    """
    defaults = {
        field.column_name: field.default
        for field in model._meta.sorted_fields
        if field.column_name not in columns and field.default is not None and not callable(field.default)
    }
    if defaults:
        columns, extra = (*columns, *defaults), tuple(defaults.values())
        rows = [(*row, *extra) for row in rows]
    names = ', '.join(f'"{column}"' for column in columns)
    table = model._meta.table_name
    row_marks = '(' + ', '.join([db.param] * len(columns)) + ')'
    insert = f'INSERT INTO "{table}" ({names}) VALUES {{}} ON CONFLICT DO NOTHING'
    if isinstance(db, peewee.SqliteDatabase) and not returning:
        db.cursor().executemany(insert.format(row_marks), rows)
        return []
    suffix = ' RETURNING ' + ', '.join(f'"{column}"' for column in returning) if returning else ''
    inserted: list[tuple[Any, ...]] = []
    for chunk in chunks(rows):
        params = [value for row in chunk for value in row]
        cursor = db.execute_sql(insert.format(', '.join([row_marks] * len(chunk))) + suffix, params)
        if returning:
            inserted.extend(tuple(row) for row in cursor.fetchall())
    return inserted


def delete_keys(
    db: peewee.Database, model: type[peewee.Model], columns: Sequence[str], keys: list[tuple[Any, ...]]
) -> None:
    """Deletes the rows of `model` whose `columns` (its key) equal one of `keys`: one prepared statement run over all
    keys on SQLite (which scans the table for a row-value `IN`), row-value `IN (VALUES ...)` statements elsewhere."""
    table = model._meta.table_name
    if isinstance(db, peewee.SqliteDatabase):
        match = ' AND '.join(f'"{column}" = ?' for column in columns)
        db.cursor().executemany(f'DELETE FROM "{table}" WHERE {match}', keys)
        return
    names = ', '.join(f'"{column}"' for column in columns)
    row_marks = '(' + ', '.join([db.param] * len(columns)) + ')'
    for chunk in chunks(keys):
        values = ', '.join([row_marks] * len(chunk))
        params = [value for key in chunk for value in key]
        db.execute_sql(f'DELETE FROM "{table}" WHERE ({names}) IN (VALUES {values})', params)
