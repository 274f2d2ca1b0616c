"""Reader graphs: the store side of syncing a reader's follows from their own repository.

Owns the `ReaderGraph` state of each reader (one claim at a time, across every serving process), writing the
follows a sync read as the firehose would have (the same `Follow` rows, skipped when already stored), and how the
sync and the indexer agree on a follow deleted while the sync ran:

- while a reader's sync is `pending`, the indexer notes each delete of that reader's follows in `ReaderGraphDelete`
  (`note_follow_deletes`, in its batch's transaction, before the delete itself);
- the sync writes what it read in chunks, leaving out the URIs noted so far, and ends (`finish`) by deleting the
  follows noted since, clearing the notes and leaving `pending`, in one transaction.

A delete the indexer commits before that last transaction is noted and applied by it; one committed after it finds
the row and deletes it. On PostgreSQL the indexer reads the state with `FOR SHARE` and `finish` locks the reader's
row `FOR UPDATE`, so the two take turns; SQLite has one writer at a time. It knows nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import peewee

from feedgen.store.models import Follow, ReaderGraph, ReaderGraphDelete, write_transaction
from feedgen.store.statements import chunks, insert_ignore

PENDING, SYNCED, FAILED = 'pending', 'synced', 'failed'
TRUNCATED = 'truncated'


def follow_author(uri: str) -> str:
    """The DID in a follow's `at://<did>/app.bsky.graph.follow/<rkey>` URI ('' when it has none)."""
    return uri[5:].split('/', 1)[0] if uri.startswith('at://') else ''


def state_of(did: str) -> ReaderGraph | None:
    state: ReaderGraph | None = ReaderGraph.get_or_none(ReaderGraph.did == did)
    return state


def claim(db: peewee.Database, did: str, now_ms: int, lease_ms: int) -> bool:
    """Marks `did`'s sync as started by the caller until `now_ms + lease_ms`; False when it is synced, running
    elsewhere (an unlapsed claim) or waiting out a failure's backoff. One statement, so two processes never both win.
    """
    with write_transaction(db):
        new = ReaderGraph.insert(did=did, state=PENDING, attempts=1, next_at=now_ms + lease_ms, updated_at=now_ms)
        if db.execute(new.on_conflict_ignore()).rowcount == 1:
            return True
        updated: int = (
            ReaderGraph.update(
                state=PENDING, attempts=ReaderGraph.attempts + 1, next_at=now_ms + lease_ms, updated_at=now_ms
            )
            .where(ReaderGraph.did == did, ReaderGraph.state != SYNCED, ReaderGraph.next_at <= now_ms)
            .execute()
        )
    return updated == 1


def store_follows(db: peewee.Database, did: str, rows: Sequence[tuple[str, str]], now_ms: int) -> None:
    """Writes follows `(uri, subject)` of `did` read from their repository, except those noted as deleted."""
    with write_transaction(db):
        deleted: set[str] = set()
        for chunk in chunks([uri for uri, _ in rows]):
            query = ReaderGraphDelete.select(ReaderGraphDelete.uri).where(ReaderGraphDelete.uri.in_(chunk))
            deleted.update(uri for (uri,) in query.tuples())
        kept = [(uri, did, subject, now_ms) for uri, subject in rows if uri not in deleted]
        if kept:
            insert_ignore(db, Follow, ('uri', 'author', 'subject', 'indexed_at'), kept)


def finish(db: peewee.Database, did: str, state: str, reason: str, follows: int, next_at: int, now_ms: int) -> None:
    """Ends `did`'s sync as `state` (synced or failed), applying the follow deletes noted while it ran."""
    with write_transaction(db):
        locked = ReaderGraph.select(ReaderGraph.did).where(ReaderGraph.did == did)
        if not isinstance(db, peewee.SqliteDatabase):
            locked = locked.for_update()
        list(locked.tuples())
        noted = ReaderGraphDelete.select(ReaderGraphDelete.uri).where(ReaderGraphDelete.reader == did)
        Follow.delete().where(Follow.uri.in_(noted)).execute()
        ReaderGraphDelete.delete().where(ReaderGraphDelete.reader == did).execute()
        ReaderGraph.update(
            state=state,
            reason=reason,
            follows=follows,
            attempts=0 if state == SYNCED else ReaderGraph.attempts,
            next_at=next_at,
            updated_at=now_ms,
        ).where(ReaderGraph.did == did).execute()


def note_follow_deletes(db: peewee.Database, uris: Iterable[str]) -> None:
    """Notes the follow deletes among `uris` whose author's sync is pending; call it in the indexer's transaction,
    before deleting the follows."""
    by_author: dict[str, list[str]] = {}
    for uri in uris:
        by_author.setdefault(follow_author(uri), []).append(uri)
    for authors in chunks(sorted(by_author)):
        query = ReaderGraph.select(ReaderGraph.did).where(ReaderGraph.did.in_(authors), ReaderGraph.state == PENDING)
        if not isinstance(db, peewee.SqliteDatabase):
            query = query.for_update('FOR SHARE')
        pending = [did for (did,) in query.tuples()]
        rows = [(uri, did) for did in pending for uri in by_author[did]]
        if rows:
            insert_ignore(db, ReaderGraphDelete, ('uri', 'reader'), rows)


def graph_counts() -> dict[str, Any]:
    """Readers by sync state, failed ones by reason, and synced ones cut at the cap (`truncated`)."""
    counts: dict[str, Any] = {SYNCED: 0, PENDING: 0, FAILED: 0, 'failed_by_reason': {}, TRUNCATED: 0}
    query = ReaderGraph.select(ReaderGraph.state, ReaderGraph.reason, peewee.fn.COUNT(ReaderGraph.did))
    for state, reason, count in query.group_by(ReaderGraph.state, ReaderGraph.reason).tuples():
        counts[state] = counts.get(state, 0) + count
        if state == FAILED:
            counts['failed_by_reason'][reason] = count
        elif state == SYNCED and reason == TRUNCATED:
            counts[TRUNCATED] += count
    return counts
