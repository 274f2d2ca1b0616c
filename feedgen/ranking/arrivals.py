"""Arrivals: the rows a table gained since a serving worker last looked, read once for everything the worker keeps
(`following`'s timelines, `network`'s votes).

A worker that keeps rows of the store in memory brings them up to date before a page from what was indexed since it
last looked: one range of the table's `indexed_at` index (`Watermark`), read only when something was written at all
(`store_version`). That holds while the store's writer indexes rows in `indexed_at` order, as ingest does (one writer,
batches in turn, each stamped when it starts); the rows of the newest millisecond read are read again only when that
millisecond has more rows since (a later batch stamped alike, which is rare).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.store.models import Post, PostChange, database
from feedgen.store.prepared import Prepared

ARRIVALS = 20_000
"""The most rows of a table, or changes, indexed since a worker last looked that it reads; more (a worker idle for
minutes, a backfill), and it forgets what it keeps instead."""
_SINCE = -(2**62) - 31
"""The stand-in for the first `indexed_at` an arrivals query reads."""
_AFTER = -(2**62) - 37
"""The stand-in for the id change notes are read after."""


@dataclass(frozen=True)
class Arrivals:
    """The queries reading what a table gained since an `indexed_at`: its rows' `columns`, `indexed_at` first."""

    newest: Prepared
    """The newest `indexed_at` of the table."""
    since: Prepared
    """The rows indexed at or after its value, in `indexed_at` order (at most `ARRIVALS + 1`)."""
    later: Prepared
    """The rows indexed after its value only."""
    stamped: Prepared
    """How many rows have the `indexed_at` given (from the index alone)."""

    @classmethod
    def of(cls, indexed_at: peewee.Field, columns: Sequence[Any]) -> Arrivals:
        model = indexed_at.model
        arrived = model.select(indexed_at, *columns).order_by(indexed_at)
        return cls(
            Prepared(model.select(peewee.fn.MAX(indexed_at)), ()),
            Prepared(arrived.where(indexed_at >= _SINCE).limit(ARRIVALS + 1), (_SINCE,)),
            Prepared(arrived.where(indexed_at > _SINCE).limit(ARRIVALS + 1), (_SINCE,)),
            Prepared(model.select(peewee.fn.COUNT(peewee.SQL('*'))).where(indexed_at == _SINCE), (_SINCE,)),
        )


@dataclass(frozen=True)
class Changes:
    """The queries reading a table of change notes: the notes after an id, in id order, as `(id, ...)` (at most
    `ARRIVALS + 1`), and the highest id."""

    after: Prepared
    newest: Prepared

    @classmethod
    def of(cls, notes: peewee.ModelSelect, note_id: peewee.Field) -> Changes:
        after = notes.where(note_id > _AFTER).order_by(note_id).limit(ARRIVALS + 1)
        return cls(Prepared(after, (_AFTER,)), Prepared(note_id.model.select(peewee.fn.MAX(note_id)), ()))


POST_CHANGES = Changes.of(
    PostChange.select(PostChange.id, PostChange.post_id, Post.uri).join(
        Post, peewee.JOIN.LEFT_OUTER, on=(Post.id == PostChange.post_id)
    ),
    PostChange.id,
)
"""The posts writers changed (`PostChange`): `(id, post id, URI)`, the URI None when the post is deleted since."""


class Watermark:
    """How far a worker has read one table's `Arrivals`: the newest `indexed_at` read, and how many rows of that
    millisecond. Not thread-safe: its owner holds a lock."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.at = 0
        self._stamped = 0

    def restart(self) -> None:
        """Reads from now on."""
        self.at = next(self.arrivals.newest.tuples())[0] or 0
        self._stamped = next(self.arrivals.stamped.tuples(self.at))[0]

    def read(self) -> list[tuple[Any, ...]] | None:
        """The rows indexed since the last read (a row of the newest millisecond read before may come again), or
        None when they are more than `ARRIVALS` (restart then)."""
        again = next(self.arrivals.stamped.tuples(self.at))[0] != self._stamped
        arrived = list((self.arrivals.since if again else self.arrivals.later).tuples(self.at))
        if len(arrived) > ARRIVALS:
            return None
        if arrived:
            self.at = arrived[-1][0]
            self._stamped = sum(1 for row in arrived if row[0] == self.at)
        return arrived


class Follower:
    """What a worker keeps of the store, brought up to date from the rows `arrivals` (one per table) read since it
    last looked and the `changes` noted since. A subclass applies them (`_arrived`, `_changed`) and forgets everything
    it keeps (`_forget`) when they are too many; it holds `_lock` while it reads or changes what it keeps."""

    def __init__(self, arrivals: Sequence[Arrivals], changes: Changes) -> None:
        self._marks = [Watermark(table) for table in arrivals]
        self._changes = changes
        self._change = 0
        """The id of the last change note read."""
        self._started = False
        self._lock = threading.Lock()
        self._looked = threading.local()
        """`version`: the `store_version` of this thread's connection when it last brought what is kept up to date."""

    def _up_to_date(self) -> None:
        """Brings what is kept up to date, when anything was written since this thread's connection last looked."""
        version = store_version(database)
        if version is None or version != getattr(self._looked, 'version', None):
            self._catch_up()
            self._looked.version = version

    def _catch_up(self) -> None:
        if not self._started:
            self._restart()
            return
        for index, mark in enumerate(self._marks):
            arrived = mark.read()
            if arrived is None:
                self._restart()
                return
            self._arrived(index, arrived)
        changes = list(self._changes.after.tuples(self._change))
        if len(changes) > ARRIVALS:
            self._restart()
            return
        self._changed(changes)
        if changes:
            self._change = changes[-1][0]

    def _restart(self) -> None:
        """Forgets what is kept and reads what is indexed from now on."""
        for mark in self._marks:
            mark.restart()
        self._change = next(self._changes.newest.tuples())[0] or 0
        self._forget()
        self._started = True

    def _arrived(self, index: int, rows: list[tuple[Any, ...]]) -> None:
        """Applies the rows table `index` gained (`Arrivals` of it)."""
        raise NotImplementedError

    def _changed(self, changes: list[tuple[Any, ...]]) -> None:
        """Applies the change notes read."""
        raise NotImplementedError

    def _forget(self) -> None:
        raise NotImplementedError


def store_version(db: peewee.Database) -> tuple[Any, int, int] | None:
    """What changes when anything is written to a SQLite store, as this thread's connection sees it: the connection,
    its `data_version` (which moves with every commit of another connection, in any process) and its own changes; None
    on PostgreSQL, where nothing this cheap tells."""
    if isinstance(db.obj, peewee.PostgresqlDatabase):
        return None
    connection = db.connection()
    return connection, connection.execute('PRAGMA data_version').fetchone()[0], connection.total_changes
