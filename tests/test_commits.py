"""feedgen.store.database: the writer's commits run in the background, and nothing it does next overtakes them."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import peewee
import pytest

from feedgen.store.database import SqliteDatabase
from feedgen.store.models import write_transaction


@pytest.fixture
def db(tmp_path: Path) -> SqliteDatabase:
    database = SqliteDatabase(str(tmp_path / 'store.db'), pragmas={'journal_mode': 'wal'}, timeout=15)
    database.execute_sql('CREATE TABLE item (n INTEGER PRIMARY KEY)')
    return database


def stored(db: SqliteDatabase) -> list[int]:
    """The rows as another connection (a reader in another process) sees them."""
    with sqlite3.connect(db.database) as reader:
        return [n for (n,) in reader.execute('SELECT n FROM item ORDER BY n')]


def test_a_background_commit_is_visible_once_waited_for_and_the_next_statement_waits_for_it(
    db: SqliteDatabase,
) -> None:
    db.commit_in_background()
    with write_transaction(db):
        db.execute_sql('INSERT INTO item VALUES (1)')
    assert db._committing is not None, 'the commit runs on its own thread'
    with write_transaction(db):  # BEGIN waits for the previous commit, or SQLite would refuse a nested transaction
        db.execute_sql('INSERT INTO item VALUES (2)')
    db.wait_for_commit()
    assert db._committing is None
    assert stored(db) == [1, 2]


def test_a_failed_background_commit_is_raised_by_the_next_use(db: SqliteDatabase) -> None:
    db.commit_in_background()
    with write_transaction(db):
        db.execute_sql('INSERT INTO item VALUES (1)')
        db.connection().execute('COMMIT')  # so the transaction's own COMMIT finds none to commit
    with pytest.raises(peewee.OperationalError, match='no transaction is active'):
        db.execute_sql('SELECT 1')
    assert db.execute_sql('SELECT COUNT(*) FROM item').fetchone() == (1,), 'the error is raised once'


def test_a_rolled_back_transaction_commits_nothing(db: SqliteDatabase) -> None:
    db.commit_in_background()
    with pytest.raises(RuntimeError), write_transaction(db):
        db.execute_sql('INSERT INTO item VALUES (1)')
        raise RuntimeError('batch failed')
    db.wait_for_commit()
    assert stored(db) == []


def test_other_threads_commit_before_their_transaction_ends(db: SqliteDatabase) -> None:
    db.commit_in_background()
    seen: list[list[int]] = []

    def job() -> None:
        with write_transaction(db):
            db.execute_sql('INSERT INTO item VALUES (7)')
        seen.append(stored(db))
        db.close()

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert seen == [[7]]


def test_without_commit_in_background_commits_are_synchronous(db: SqliteDatabase) -> None:
    with write_transaction(db):
        db.execute_sql('INSERT INTO item VALUES (1)')
    assert db._committing is None
    assert stored(db) == [1]


def test_closing_waits_for_the_commit(db: SqliteDatabase) -> None:
    db.commit_in_background()
    with write_transaction(db):
        db.execute_sql('INSERT INTO item VALUES (3)')
    db.close()
    assert stored(db) == [3]


def test_committing_tells_the_writer_whether_its_commit_still_runs_without_waiting(db: SqliteDatabase) -> None:
    db.commit_in_background()
    release = threading.Event()
    db._committing = threading.Thread(target=release.wait)  # a commit that takes as long as the test wants
    db._committing.start()
    seen_elsewhere: list[bool] = []
    elsewhere = threading.Thread(target=lambda: seen_elsewhere.append(db.committing()))
    elsewhere.start()
    elsewhere.join()
    assert db.committing()
    assert seen_elsewhere == [False], "another thread's commits are its own"
    release.set()
    db._committing.join()
    assert not db.committing()
