"""The like-schema benchmark (`python -m bench.scale.schemas`) at a tiny size: it runs, every schema holds every
like, interned identifiers take a fraction of today's bytes, and smaller pages write less WAL."""

from __future__ import annotations

import pytest

from bench.scale import schemas

TINY = ['--likes', '20000', '--accounts', '3000', '--posts', '4000', '--writes', '2000']


def measured_rows(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[list[str]]:
    """The table's rows (header left out) of a run with `argv`, each a list of its cells."""
    assert schemas.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [[cell.strip() for cell in line.strip('| ').split(' | ')] for line in lines if line.startswith('| ')]
    return [row for row in rows if '---' not in row[0]][1:]


def test_every_schema_is_measured_and_interning_shrinks_a_like(capsys: pytest.CaptureFixture[str]) -> None:
    measured = {row[0]: int(row[2].replace(',', '')) for row in measured_rows(capsys, TINY)}
    assert len(measured) == 4
    today = measured['feedgen today: uri key, account and post as text']
    interned = measured['interned, keyed by (account, record key) without rowid']
    assert today > 300  # three text identifiers of 32-70 bytes, four times over with the indexes
    assert interned < today / 3


def test_smaller_pages_write_less_wal_for_the_same_likes(capsys: pytest.CaptureFixture[str]) -> None:
    rows = measured_rows(capsys, [*TINY, '--only', '0', '--batch', '100', '--page-bytes', '4096,1024'])
    wal = {int(row[1].replace(',', '')): float(row[-1]) for row in rows}
    assert set(wal) == {4096, 1024}
    assert wal[1024] < wal[4096] / 1.5
