"""The working-set measure (`bench.pagecache`): which tables and indexes of a store are in the kernel's page cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bench.pagecache import cached, evict


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / 'store.db'
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE big (id INTEGER PRIMARY KEY, body TEXT)')
        conn.execute('CREATE TABLE small (id INTEGER PRIMARY KEY, body TEXT)')
        conn.executemany('INSERT INTO big VALUES (?, ?)', ((i, 'x' * 500) for i in range(8000)))
        conn.executemany('INSERT INTO small VALUES (?, ?)', ((i, 'y' * 500) for i in range(100)))
    conn.close()
    return path


def test_reading_a_table_brings_its_pages_and_only_them_into_the_cache(store: Path) -> None:
    evict(store)
    if any(item.cached_bytes for item in cached(store)):
        pytest.skip('this file system keeps pages in memory whatever is asked (tmpfs)')
    evict(store)  # `cached` read every page to name its table
    with sqlite3.connect(store) as conn:
        assert conn.execute('SELECT count(*) FROM small WHERE body != ""').fetchone() == (100,)
    conn.close()
    sizes = {item.name: item for item in cached(store)}
    assert sizes['small'].cached_bytes == sizes['small'].bytes > 0
    assert sizes['big'].cached_bytes < sizes['big'].bytes / 10
