"""PostgreSQL for the scale benchmark: the filled store copied into a PostgreSQL database, its sizes, its writes.

Owns emptying every feedgen table of the database at a `postgresql://` URL (for the fresh-store run), loading the
filled SQLite store into it (`bench.serve.postgres.copy_store`), weighing its tables and indexes
(`pg_relation_size`) and counting what the PostgreSQL server's processes write to disk (`/proc/<pid>/io` of every
`postgres` process: the ingest process itself writes almost nothing on this path).
"""

from __future__ import annotations

from pathlib import Path

import peewee
import psutil

from bench.scale.store import Stored
from bench.serve.postgres import copy_store
from feedgen.store.models import MODELS, open_database


def empty(url: str) -> None:
    """Empties every table `feedgen.store.models` declares (creating them first when missing)."""
    db = open_database(url)
    try:
        db.execute_sql('TRUNCATE ' + ', '.join(f'"{model._meta.table_name}"' for model in MODELS))
    finally:
        db.close()


def load(store: Path, url: str) -> None:
    """Makes the database hold exactly the SQLite store's rows, nothing else (no cursor, no scores)."""
    empty(url)
    copy_store(store, url).close()


def storage(url: str) -> list[Stored]:
    """Every non-empty feedgen table and its indexes, with their sizes on disk, biggest tables first."""
    db: peewee.Database = open_database(url)
    try:
        tables = [model._meta.table_name for model in MODELS]
        rows = {table: db.execute_sql(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}
        sizes = db.execute_sql(
            'SELECT tablename, indexname, pg_relation_size(quote_ident(indexname)) FROM pg_indexes WHERE schemaname = '
            "'public' UNION ALL SELECT tablename, tablename, pg_relation_size(quote_ident(tablename)) FROM pg_tables "
            "WHERE schemaname = 'public'"
        ).fetchall()
    finally:
        db.close()
    stored = [Stored(table, name, size, rows[table]) for table, name, size in sizes if rows.get(table)]
    totals: dict[str, int] = {}
    for item in stored:
        totals[item.table] = totals.get(item.table, 0) + item.bytes
    return sorted(stored, key=lambda item: (-totals[item.table], item.table, item.name != item.table, item.name))


def server_write_bytes() -> int:
    """Bytes every `postgres` process on this machine has caused to be written so far (those readable)."""
    total = 0
    for process in psutil.process_iter(['name']):
        if process.info['name'] != 'postgres':
            continue
        try:
            total += process.io_counters().write_bytes
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
    return total


def database_bytes(url: str) -> int:
    db = open_database(url)
    try:
        size: int = db.execute_sql('SELECT pg_database_size(current_database())').fetchone()[0]
    finally:
        db.close()
    return size
