"""Commits: peewee's SQLite database, able to commit one thread's transactions on a background thread.

Owns when the ingest writer's commits happen. After `commit_in_background()`, a commit from the thread that called
it returns at once, and SQLite commits the transaction (writing its pages to the WAL, and checkpointing the WAL into
the database file now and then, fsync included) on a short-lived thread, with the same connection. The writer's next
use of the database waits for that commit to end and raises its error, if any, so the writer never runs a statement
while its previous transaction is still committing, and a failed commit stops ingest like a failed statement does.
SQLite releases the GIL while it commits, so the writer decodes the next batch on one core while its previous batch is
committed on the other (docs/design.md, "Ingest"). A batch still commits its records with the cursor that covers
them, in one transaction, and readers see it once its commit ends. Other threads (the scheduler's jobs) commit as
usual, each on its own connection.

Connections are opened without `sqlite3`'s same-thread check, so a writer's connection can be handed to its commit
thread; peewee still gives every thread its own connection.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import peewee


class SqliteDatabase(peewee.SqliteDatabase):  # type: ignore[misc]  # peewee is untyped (see pyproject.toml)
    """`peewee.SqliteDatabase` whose connections may commit on a background thread (`commit_in_background`)."""

    def __init__(self, database: str, **kwargs: Any) -> None:
        super().__init__(database, check_same_thread=False, **kwargs)
        self._background_for: int | None = None
        self._committing: threading.Thread | None = None
        self._commit_error: sqlite3.Error | None = None

    def commit_in_background(self) -> None:
        """From now on the calling thread's commits run on a background thread (see the module docstring)."""
        self._background_for = threading.get_ident()

    def wait_for_commit(self) -> None:
        """Waits for the calling thread's commit in progress, if any.

        Raises:
            peewee.DatabaseError: the commit failed (the subclass peewee maps the `sqlite3` error to).
        """
        if self._committing is None or threading.get_ident() != self._background_for:
            return
        committing, self._committing = self._committing, None
        committing.join()
        error, self._commit_error = self._commit_error, None
        if error is not None:
            raise getattr(peewee, type(error).__name__, peewee.DatabaseError)(error, *error.args) from error

    def committing(self) -> bool:
        """True while the calling thread's background commit is still running (it does not wait for it)."""
        committing = self._committing
        return committing is not None and threading.get_ident() == self._background_for and committing.is_alive()

    def commit(self) -> None:
        if threading.get_ident() != self._background_for:
            super().commit()
            return
        connection = self.connection()
        self._committing = threading.Thread(target=self._commit, args=(connection,), name='feedgen-commit')
        self._committing.start()

    def _commit(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute('COMMIT')
        except sqlite3.Error as error:
            self._commit_error = error

    def connection(self) -> sqlite3.Connection:
        self.wait_for_commit()
        connection: sqlite3.Connection = super().connection()
        return connection

    def cursor(self, named_cursor: Any = None) -> sqlite3.Cursor:
        self.wait_for_commit()
        cursor: sqlite3.Cursor = super().cursor(named_cursor)
        return cursor

    def close(self) -> bool:
        self.wait_for_commit()
        closed: bool = super().close()
        return closed
