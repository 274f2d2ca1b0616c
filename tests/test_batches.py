"""Batches: a deletion run as short write transactions whose size follows how long each took."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from feedgen.store.batches import FIRST_ROWS, Batches
from feedgen.store.models import open_database


def deleting(rows: int, sizes: list[int]) -> Callable[[int], int]:
    """A `Batches.run` step over `rows` rows that deletes nothing but counts them off, keeping each size asked for."""
    left = [rows]

    def delete(size: int) -> int:
        sizes.append(size)
        taken = min(size, left[0])
        left[0] -= taken
        return taken

    return delete


def test_each_run_starts_small_and_grows_while_its_transactions_are_quick(tmp_path: Path) -> None:
    batches = Batches(open_database(tmp_path / 'store.db'), max_rows=10_000)
    first: list[int] = []
    second: list[int] = []
    assert batches.run(deleting(5_000, first)) == 5_000
    assert batches.run(deleting(300, second)) == 300
    assert first[:3] == [FIRST_ROWS, 2 * FIRST_ROWS, 4 * FIRST_ROWS]  # quick transactions double the size
    assert second[0] == FIRST_ROWS  # another run (another table) starts small again, not at the first run's size
