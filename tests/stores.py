"""Comparing stores in tests: what two SQLite stores hold, without what differs between equal runs, and what the
hourly post counts of the open store should be."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import peewee

from feedgen.store.likes import insert_likes
from feedgen.store.models import HOUR_MS, Post, PostCount, hiding_self_labels

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
    'post_count': 'SELECT author, hour, posts, replies FROM post_count ORDER BY author, hour',
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


def counted_from_rows() -> list[tuple[str, int, int, int, int]]:
    """`PostCount`'s rows as they should be: the visible posts of each author and hour, counted one by one."""
    counts: dict[tuple[str, int], tuple[int, int, int]] = {}
    columns = (Post.author, Post.sort_at, Post.reply_parent, Post.indexed_at, Post.hidden, Post.self_labels)
    for author, sort_at, reply_parent, indexed_at, hidden, labels in Post.select(*columns).tuples():
        if hidden or hiding_self_labels(labels):
            continue
        posts, replies, newest = counts.get((author, sort_at // HOUR_MS), (0, 0, 0))
        counts[author, sort_at // HOUR_MS] = (posts + 1, replies + (reply_parent is not None), max(newest, indexed_at))
    return sorted((author, hour, *counted) for (author, hour), counted in counts.items())


def stored_counts() -> list[tuple[str, int, int, int, int]]:
    return sorted(PostCount.select().tuples())


def write_like(db: peewee.Database, number: int) -> None:
    """Stores the like `number` of `did:plc:w`, indexed now (a stand-in for an ingest batch)."""
    like = f'at://did:plc:w/app.bsky.feed.like/{number}'
    insert_likes(db, [(like, 'did:plc:w', 'at://did:plc:x/app.bsky.feed.post/x', int(time.time() * 1000))])
