"""feedgen.store.schema: a store an earlier feedgen made opens with the columns (and their indexes) added since."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from feedgen.store.models import Receipt, open_database


def test_a_store_from_before_receipts_named_readers_gains_the_column_and_its_index(tmp_path: Path) -> None:
    path = tmp_path / 'old.db'
    with sqlite3.connect(path) as old:
        old.execute('CREATE TABLE receipt (req_id TEXT PRIMARY KEY, feed TEXT, created_at INTEGER, payload BLOB)')
        old.execute("INSERT INTO receipt VALUES ('0123456789abcdef', 'latest', 1, x'00')")
    db = open_database(path)
    try:
        assert [(row.req_id, row.viewer) for row in Receipt.select()] == [('0123456789abcdef', None)]
        assert 'receipt_viewer' in {index.name for index in db.get_indexes('receipt')}
    finally:
        db.close()
