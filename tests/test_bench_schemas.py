"""The like-schema benchmark (`python -m bench.scale.schemas`) at a tiny size: it runs, every schema holds every
like, and interned identifiers take a fraction of today's bytes."""

from __future__ import annotations

import pytest

from bench.scale import schemas


def test_every_schema_is_measured_and_interning_shrinks_a_like(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas.main(['--likes', '20000', '--accounts', '3000', '--posts', '4000', '--writes', '2000']) == 0
    rows = [
        line.split(' | ')
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('| ') and '---' not in line
    ]
    measured = {row[0].lstrip('| '): int(row[1]) for row in rows[1:]}
    assert len(measured) == 4
    today = measured['feedgen today: uri key, account and post as text']
    interned = measured['interned, keyed by (account, record key) without rowid']
    assert today > 300  # three text identifiers of 32-70 bytes, four times over with the indexes
    assert interned < today / 3
