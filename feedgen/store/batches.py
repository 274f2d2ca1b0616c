"""Batches: a long deletion run as many short write transactions, each followed by a pause, so that a writer waiting
for SQLite's write lock (ingest) takes it between them.

Owns the size and the rhythm of the jobs' deleting transactions. SQLite's write lock is no queue: a writer that finds
it taken sleeps and tries again (SQLite's busy handler sleeps 1 to 25 ms at a time over its first 100 ms of waiting,
then longer), so a job that begins its next transaction right after its commit keeps such a writer waiting through
many of them, and one that runs for longer than the busy timeout makes it fail with `database is locked`. Here each
transaction changes at most `max_rows` rows and is sized to take about `BATCH_SECONDS`, its commit included: it
starts small (the first one of a run may read a cold cache), then is half as large after a slower one and twice as
large after a quicker one; every run starts small again (another table's pages may be cold). After each commit on
SQLite the job sleeps `PAUSE_SECONDS`, longer than one sleep of a writer that has waited less than 100 ms, so such a
writer goes next. PostgreSQL's writers wait only for the same rows: no pause there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import peewee

from feedgen.store.models import write_transaction

BATCH_SECONDS = 0.02
"""What one transaction aims to take, well under the 100 ms it may keep another writer waiting."""
PAUSE_SECONDS = 0.03
"""The sleep after each transaction on SQLite: longer than the busy handler's sleeps in a writer's first 100 ms of
waiting (at most 25 ms)."""
FIRST_ROWS = 25
"""The size of each run's first transaction: on a cold cache a row changed can cost a millisecond of disk reads."""


class Batches:
    """Runs deletions in write transactions of adaptive size (at most `max_rows` rows each) with pauses between."""

    def __init__(self, db: peewee.Database, max_rows: int) -> None:
        self.db = db
        self.max_rows = max_rows
        self.one_writer = isinstance(db, peewee.SqliteDatabase)  # one write lock for the whole store
        self.pause = PAUSE_SECONDS if self.one_writer else 0.0

    def run(self, delete: Callable[[int], int], read: Callable[[int], object] | None = None) -> int:
        """Calls `delete(size)`, which changes up to `size` rows in all (at least one, if any is left) and returns how
        many of its own kind it deleted, each call in its own transaction, until it deletes nothing; returns the sum.

        On SQLite, `read(size)` (when given) runs before each transaction, outside it: a read of the pages the next
        `delete(size)` will touch. A store larger than the page cache reads them from disk, and SQLite's readers keep
        no writer waiting, so those reads happen while ingest may still write; the transaction then finds them
        cached.
        """
        total = 0
        size = min(FIRST_ROWS, self.max_rows)  # each run: another kind of row, whose pages may be cold
        while True:
            if read is not None and self.one_writer:
                read(size)
            with write_transaction(self.db):
                started = time.monotonic()  # after the wait for the lock, before the commit
                deleted = delete(size)
            took = time.monotonic() - started
            if not deleted:
                return total
            total += deleted
            if took > BATCH_SECONDS:
                size = max(1, size // 2)
            elif took < BATCH_SECONDS / 2:
                size = min(self.max_rows, size * 2)
            time.sleep(self.pause)
