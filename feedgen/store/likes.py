"""Likes: how writers store them by number, find them by URI and count them (`LikeRecord`, `AccountNumber`).

A like's URI, author DID and subject URI are about 170 bytes of text, a 72-hour store holds about 44 million likes, and
three of a like's indexes repeated one of them: stored as two account numbers and two record keys, a like and its
indexes take about a quarter of the space, and ingest dirties fewer pages a like (docs/design.md, "Likes by number").
Readers keep seeing URIs and DIDs through the `Like` view. Writers store, delete and count likes here: numbering the
accounts they name, skipping a like already stored, returning the subjects whose counters change, and moving the
likes of a store written before likes were numbered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable, Sequence

import peewee

from feedgen.store.models import (
    LIKE_COLLECTION,
    POST_COLLECTION,
    AccountNumber,
    Like,
    LikeRecord,
    Post,
    write_transaction,
)
from feedgen.store.statements import insert_ignore, run_in_chunks

log = logging.getLogger(__name__)

LikeRow = tuple[str, str, str, int]
"""A like as the indexer has it: its URI, its author's DID, the URI of the post it likes, when it was indexed."""
Deleted = tuple[str, str]
"""A deleted like: the URI of the post it liked, its author's DID."""

_COLUMNS = ('author', 'rkey', 'subject_author', 'subject_rkey', 'indexed_at')
_RKEY_AT = len('at://') + len(f'/{POST_COLLECTION}/') + 1
"""Where a post's record key starts in its URI, after its author's DID (SQL strings count from 1); a like's too, its
collection's name being as long."""

RECOUNT = (
    f'(SELECT COUNT(*) FROM "{LikeRecord._meta.table_name}" AS counted'
    f' WHERE counted.subject_author = (SELECT id FROM "{AccountNumber._meta.table_name}"'
    f' WHERE did = "{Post._meta.table_name}".author)'
    f' AND counted.subject_rkey = substr("{Post._meta.table_name}".uri, length("{Post._meta.table_name}".author)'
    f' + {_RKEY_AT}))'
)
"""The number of likes of a post (raw SQL, in an `UPDATE` of `post`): through the subject index."""


def split_uri(uri: str) -> tuple[str, str, str] | None:
    """The authority, collection and record key of the at-URI `uri`, or None when it has not exactly those three."""
    if not uri.startswith('at://'):
        return None
    parts = uri[5:].split('/')
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def post_uri(did: str, rkey: str) -> str:
    return f'at://{did}/{POST_COLLECTION}/{rkey}'


def account_numbers(db: peewee.Database, dids: Iterable[str], add: bool = False) -> dict[str, int]:
    """The numbers of the accounts `dids` that have one; with `add`, numbering the others first (in DID order, so a
    batch numbers them the same whichever path wrote it)."""
    wanted = sorted(set(dids))
    select = f'SELECT did, id FROM "{AccountNumber._meta.table_name}" WHERE did IN'
    found: dict[str, int] = {}
    for cursor in run_in_chunks(db, select, wanted):
        found.update(cursor.fetchall())
    missing = [did for did in wanted if did not in found]
    if add and missing:
        insert_ignore(db, AccountNumber, ('did',), [(did,) for did in missing])
        for cursor in run_in_chunks(db, select, missing):
            found.update(cursor.fetchall())
    return found


def account_dids(db: peewee.Database, numbers: Collection[int]) -> dict[int, str]:
    """The DIDs of the account `numbers`."""
    select = f'SELECT id, did FROM "{AccountNumber._meta.table_name}" WHERE id IN'
    return {number: did for cursor in run_in_chunks(db, select, sorted(set(numbers))) for number, did in cursor}


def insert_likes(db: peewee.Database, likes: Sequence[LikeRow]) -> list[str]:
    """Stores `likes`, skipping those already stored (by author and record key) and those of anything but a post;
    returns the subject URI of each like it stored."""
    parsed = []
    for uri, author, subject, indexed_at in likes:
        key, target = split_uri(uri), split_uri(subject)
        if key is None or target is None or key[1] != LIKE_COLLECTION or target[1] != POST_COLLECTION:
            continue
        parsed.append((author, key[2], target[0], target[2], indexed_at))
    numbers = account_numbers(db, {did for row in parsed for did in (row[0], row[2])}, add=True)
    rows = [(numbers[author], rkey, numbers[did], liked, at) for author, rkey, did, liked, at in parsed]
    inserted = insert_ignore(db, LikeRecord, _COLUMNS, rows, ('subject_author', 'subject_rkey'))
    dids = {number: did for did, number in numbers.items()}
    return [post_uri(dids[number], rkey) for number, rkey in inserted]


def delete_likes(db: peewee.Database, column: str, values: Sequence[str]) -> list[Deleted]:
    """Deletes the likes whose `column` (`uri` or `author`) is one of `values`; returns each one's subject URI and
    author DID."""
    table = LikeRecord._meta.table_name
    returning = ' RETURNING subject_author, subject_rkey, author'
    deleted: list[tuple[int, str, int]] = []
    if column == 'author':
        authors = list(account_numbers(db, values).values())
        for cursor in run_in_chunks(db, f'DELETE FROM "{table}" WHERE author IN', authors, returning):
            deleted.extend(cursor.fetchall())
    elif column == 'uri':
        keys = [key for key in map(split_uri, values) if key is not None and key[1] == LIKE_COLLECTION]
        numbers = account_numbers(db, (did for did, _, _ in keys))
        delete = f'DELETE FROM "{table}" WHERE author = {db.param} AND rkey = {db.param}{returning}'
        for did, _, rkey in keys:
            if did in numbers:
                deleted.extend(db.execute_sql(delete, (numbers[did], rkey)).fetchall())
    else:
        raise ValueError(f'likes are deleted by uri or author, not {column!r}')
    dids = account_dids(db, {number for row in deleted for number in (row[0], row[2])})
    return [(post_uri(dids[subject], rkey), dids[author]) for subject, rkey, author in deleted]


_MOVING_LIKES = 0x6C696B6573
"""The PostgreSQL advisory lock a process moving a store's likes holds."""


def number_stored_likes(db: peewee.Database) -> int:
    """Moves the likes of a store written before likes were numbered (a `like` table of text) into `LikeRecord` and
    drops that table, in one transaction (a crash leaves the store as it was); returns how many likes it moved.

    Three set-based statements (number the accounts in DID order, copy the likes in the order stored, index them), not
    `insert_likes` a chunk at a time: at half the network's size, 21 million likes, that took 7,000 likes a second
    (bench/RESULTS.md, "Likes by number")."""
    table = Like._meta.table_name
    if not db.table_exists(table):  # a table, not the view
        return 0
    old, records, accounts = f'{table}_text', LikeRecord._meta.table_name, AccountNumber._meta.table_name
    find = 'strpos' if isinstance(db, peewee.PostgresqlDatabase) else 'instr'
    subject_did = f"substr(l.subject, 6, {find}(substr(l.subject, 6), '/') - 1)"
    like_prefix = f"'at://' || l.author || '/{LIKE_COLLECTION}/'"
    started = time.monotonic()
    with write_transaction(db):
        if isinstance(db, peewee.PostgresqlDatabase):  # another process opening the store waits here, then finds none
            db.execute_sql('SELECT pg_advisory_xact_lock(%s)', (_MOVING_LIKES,))
        if not db.table_exists(table):  # a table, not the view
            return 0
        db.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{old}"')
        total = db.execute_sql(f'SELECT COUNT(*) FROM "{old}"').fetchone()[0]
        log.info('numbering %d stored likes', total)
        db.execute_sql(
            f'INSERT INTO "{accounts}" (did) SELECT did FROM (SELECT author AS did FROM "{old}"'
            f' UNION SELECT {subject_did} FROM "{old}" AS l) AS dids WHERE did NOT IN (SELECT did FROM "{accounts}")'
            ' ORDER BY did'
        )
        # the indexes go, to be built again from the copied rows (faster than row by row); PostgreSQL's key stays
        declared = [index.name for index in db.get_indexes(records) if index.name.startswith(f'{records}_')]
        for name in [name for name in declared if name != f'{records}_pkey']:
            db.execute_sql(f'DROP INDEX "{name}"')
        moved = db.execute_sql(
            f'INSERT INTO "{records}" (author, rkey, subject_author, subject_rkey, indexed_at)'
            f' SELECT a.id, substr(l.uri, length(l.author) + {_RKEY_AT}), s.id,'
            f' substr(l.subject, length(s.did) + {_RKEY_AT}), l.indexed_at'
            f' FROM "{old}" AS l JOIN "{accounts}" AS a ON a.did = l.author'
            f' JOIN "{accounts}" AS s ON s.did = {subject_did}'
            f' WHERE substr(l.uri, 1, length(l.author) + {_RKEY_AT - 1}) = {like_prefix}'
            f" AND substr(l.subject, length(s.did) + 6, {_RKEY_AT - 6}) = '/{POST_COLLECTION}/'"
        ).rowcount
        log.info('numbered %d stored likes in %.0f s; indexing them', moved, time.monotonic() - started)
        db.create_tables([LikeRecord], safe=True)
        db.execute_sql(f'DROP TABLE "{old}"')
    log.info('numbered %d stored likes (of %d) in %.1f s', moved, total, time.monotonic() - started)
    return int(moved)
