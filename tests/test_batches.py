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


def test_on_sqlite_each_transaction_follows_a_read_of_its_size_outside_any_transaction(tmp_path: Path) -> None:
    db = open_database(tmp_path / 'store.db')
    steps: list[tuple[str, int, bool]] = []
    sizes: list[int] = []
    delete = deleting(100, sizes)

    def read(size: int) -> None:
        steps.append(('read', size, db.in_transaction()))

    def deleting_step(size: int) -> int:
        steps.append(('delete', size, db.in_transaction()))
        return delete(size)

    assert Batches(db, max_rows=1_000).run(deleting_step, read) == 100
    assert [step[0] for step in steps] == ['read', 'delete'] * len(sizes)
    assert all(step[1] == size for step, size in zip(steps[1::2], sizes, strict=True))
    assert all(before[1] == during[1] for before, during in zip(steps[::2], steps[1::2], strict=True))
    assert [step[2] for step in steps] == [False, True] * len(sizes)  # the read holds no write lock
