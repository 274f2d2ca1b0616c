"""PostgreSQL for the serve benchmark: the cached million-post SQLite store, copied into a PostgreSQL database.

Owns copying every row of the benchmark's tables (posts, terms, likes, reposts, follows, actors) from the SQLite
file `bench.serve.fill` builds into the database at a `postgresql://` URL, through the tables `feedgen.store.models`
creates there, so `feedgen serve` can be measured on the same data on both. A database that already holds the
same number of rows in every table is kept as it is (copying takes a few minutes); anything else is emptied first.
It reads the SQLite file and writes only the PostgreSQL database.

Usage: `python -m bench.serve.postgres postgresql://postgres@127.0.0.1:5433/feedgen_bench [--posts 1000000]`
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

import peewee

from bench.serve.fill import cached_store
from feedgen.store.models import (
    AccountNumber,
    Actor,
    BaseModel,
    Follow,
    LikeRecord,
    Post,
    PostTerm,
    Repost,
    open_database,
)
from feedgen.store.statements import insert_ignore

COPIED = (Post, PostTerm, AccountNumber, LikeRecord, Repost, Follow, Actor)
"""The tables the benchmark's store fills; the others (scores, receipts) are made by the run itself."""
CHUNK = 20_000
OUT = Path(__file__).resolve().parents[1] / 'out'


def row_counts(db: peewee.Database) -> dict[str, int]:
    return {model._meta.table_name: model.select().count() for model in COPIED}


def copy_store(source: Path, url: str) -> peewee.Database:
    """Makes the PostgreSQL database at `url` hold exactly the rows of `COPIED` in the SQLite store `source`."""
    with sqlite3.connect(f'file:{source}?mode=ro', uri=True) as lite:
        wanted = {model._meta.table_name: lite.execute(f'SELECT count(*) FROM "{model._meta.table_name}"').fetchone()[0]
                  for model in COPIED}  # fmt: skip
        db = open_database(url)
        if row_counts(db) == wanted:
            return db
        db.execute_sql('TRUNCATE ' + ', '.join(f'"{name}"' for name in wanted))
        for model in COPIED:
            _copy_table(lite, db, model, wanted[model._meta.table_name])
        db.execute_sql('ANALYZE')
    return db


def _copy_table(lite: sqlite3.Connection, db: peewee.Database, model: type[BaseModel], total: int) -> None:
    fields = model._meta.sorted_fields
    columns = [field.column_name for field in fields]
    booleans = [i for i, field in enumerate(fields) if isinstance(field, peewee.BooleanField)]
    cursor = lite.execute(f'SELECT {", ".join(columns)} FROM "{model._meta.table_name}"')
    copied, started = 0, time.monotonic()
    while rows := cursor.fetchmany(CHUNK):
        if booleans:
            rows = [tuple(bool(v) if i in booleans else v for i, v in enumerate(row)) for row in rows]
        with db.atomic():
            insert_ignore(db, model, columns, rows)
        copied += len(rows)
        print(f'\r{model._meta.table_name}: {copied:,} of {total:,} rows', end='', file=sys.stderr, flush=True)
    if 'id' in columns:  # the next id a sequence hands out follows the copied ones
        table = model._meta.table_name
        db.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))")
    print(f' ({time.monotonic() - started:.0f} s)', file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('url', help='postgresql://... (an existing database; its feedgen tables are replaced)')
    parser.add_argument('--posts', type=int, default=1_000_000)
    args = parser.parse_args(argv)
    store = OUT / f'serve-{args.posts}.db'
    cached_store(store, args.posts)
    db = copy_store(store, args.url)
    print(row_counts(db))
    db.close()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
