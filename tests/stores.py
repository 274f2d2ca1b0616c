"""Comparing stores in tests: what two SQLite stores hold, without what differs between equal runs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import peewee

# Row ids and indexed_at depend on batching and the wall clock, seq on the relay's numbering (a reset relay
# renumbers); everything else must match exactly.
_QUERIES = {
    'post': 'SELECT uri, cid, author, text, langs, tags, reply_root, reply_parent, embed, created_at, sort_at,'
    ' like_count, repost_count, reply_count, hidden FROM post ORDER BY uri',
    'post_term': 'SELECT t.term, t.sort_at, p.uri FROM post_term t JOIN post p ON p.id = t.post_id ORDER BY 1, 2, 3',
    'like': 'SELECT uri, author, subject FROM "like" ORDER BY uri',
    'repost': 'SELECT uri, author, subject FROM repost ORDER BY uri',
    'follow': 'SELECT uri, author, subject FROM follow ORDER BY uri',
    'actor': 'SELECT did, handle, status FROM actor ORDER BY did',
}


def records(path: Path) -> dict[str, list[tuple]]:
    """Every indexed record of the SQLite store at `path`, table by table, in a stable order."""
    with sqlite3.connect(path, timeout=30) as conn:
        return {table: conn.execute(query).fetchall() for table, query in _QUERIES.items()}


def database_records(db: peewee.Database) -> dict[str, list[tuple]]:
    """`records` of the store `db` (SQLite or PostgreSQL)."""
    return {table: [tuple(row) for row in db.execute_sql(query).fetchall()] for table, query in _QUERIES.items()}


def cursor(path: Path) -> int:
    """The highest saved cursor of the store at `path`; 0 before the first batch commits."""
    try:
        with sqlite3.connect(path, timeout=30) as conn:
            row = conn.execute('SELECT MAX(cursor) FROM ingest_state').fetchone()
    except sqlite3.OperationalError:  # no such table yet
        return 0
    return (row[0] if row else None) or 0


def ingest_totals(path: Path) -> dict:
    """The running totals ingest keeps in the store at `path` (its only firehose's `IngestStat` row)."""
    with sqlite3.connect(path, timeout=30) as conn:
        (totals,) = conn.execute('SELECT totals FROM ingest_stat').fetchone()
    return json.loads(totals)
