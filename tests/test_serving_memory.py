"""A serving worker's memory: its store connections read through the kernel's page cache with a small page cache of
their own and no memory map (`SERVING_PRAGMAS`), on every thread, while the ingest writer keeps its own settings."""

from __future__ import annotations

import threading
from pathlib import Path

import peewee

from feedgen.serve.app import create_app
from feedgen.settings import Settings
from feedgen.store.models import SERVING_PRAGMAS, SQLITE_PRAGMAS, open_database
from tests.conftest import PUBLISHER


def _memory_pragmas(db: peewee.Database) -> tuple[int, int]:
    return db.execute_sql('PRAGMA cache_size').fetchone()[0], db.execute_sql('PRAGMA mmap_size').fetchone()[0]


def test_every_serving_thread_reads_with_the_serving_pragmas(tmp_path: Path) -> None:
    settings = Settings(hostname='feeds.example.test', publisher_did=PUBLISHER, database=str(tmp_path / 'feedgen.db'))
    app = create_app(settings)
    db = app.extensions['feedgen']['db']
    try:
        assert app.test_client().get('/xrpc/app.bsky.feed.describeFeedGenerator').status_code == 200
        seen = [_memory_pragmas(db)]
        other = threading.Thread(target=lambda: seen.append(_memory_pragmas(db)))  # its own connection
        other.start()
        other.join(timeout=30)
    finally:
        db.close()
    expected = (SERVING_PRAGMAS['cache_size'], SERVING_PRAGMAS['mmap_size'])
    assert seen == [expected, expected]


def test_other_processes_keep_the_default_pragmas(tmp_path: Path) -> None:
    db = open_database(tmp_path / 'feedgen.db')
    try:
        assert _memory_pragmas(db) == (SQLITE_PRAGMAS['cache_size'], SQLITE_PRAGMAS['mmap_size'])
    finally:
        db.close()
