"""The serve benchmark's store filler (bench/serve/fill.py): account numbers and their DIDs."""

from __future__ import annotations

import re

from bench.serve.fill import did_of

DID_PLC = re.compile(r'^did:plc:[a-z2-7]{24}$')


def test_every_account_number_has_its_own_did() -> None:
    numbers = [*range(70_000), 32**24 - 1, 10**12]
    dids = [did_of(number) for number in numbers]
    assert len(set(dids)) == len(numbers)
    assert did_of(0) != did_of(16) != did_of(26)


def test_dids_are_well_formed_did_plc() -> None:
    assert all(DID_PLC.match(did_of(number)) for number in (0, 1, 31, 32, 12345, 32**24 - 1))
