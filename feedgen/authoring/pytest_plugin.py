"""Testing: the pytest plugin that gives algorithm authors a store to test against and the contract check.

Owns the fixtures `feedgen_db`, `feedgen_store`, `feedgen_demo_store` and `feedgen_contract`. Installed
as the `feedgen` `pytest11` entry point, it loads in every pytest run where feedgen is installed, so it
stays light and has no side effects: importing it imports nothing of feedgen, and each fixture imports
what it needs when a test uses it. See docs/algorithms.md, "Testing an algorithm".
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import peewee

    from feedgen.authoring.builder import StoreBuilder
    from feedgen.authoring.contract import ContractReport

DEMO_CAPTURE = Path(__file__).parent.parent / 'data' / 'demo.atfh.gz'


@pytest.fixture
def feedgen_db(tmp_path: Path) -> Iterator[peewee.Database]:
    """A fresh, empty SQLite store in the test's temporary folder, open and bound to `feedgen.store.models`'s models."""
    from feedgen.serve.receipts import flush_requests
    from feedgen.store.models import open_database

    db = open_database(tmp_path / 'feedgen-test.db')
    yield db
    flush_requests()  # requests an app served in the test are counted in this store, not the next test's
    db.close()


@pytest.fixture
def feedgen_store(feedgen_db: peewee.Database) -> StoreBuilder:
    """A `StoreBuilder` on `feedgen_db`: make posts, likes, reposts and follows, or replay a capture."""
    from feedgen.authoring.builder import StoreBuilder

    return StoreBuilder(feedgen_db)


@pytest.fixture
def feedgen_demo_store(feedgen_store: StoreBuilder) -> StoreBuilder:
    """`feedgen_store` filled from the demo capture that ships with feedgen (the one `feedgen demo` serves)."""
    feedgen_store.replay(DEMO_CAPTURE)
    return feedgen_store


@pytest.fixture
def feedgen_contract(feedgen_store: StoreBuilder) -> Callable[..., ContractReport]:
    """`check_contract` bound to `feedgen_store`: call it with a feed or algorithm (and `viewer=` if personalized)."""
    from feedgen.authoring.contract import check_contract

    return functools.partial(check_contract, builder=feedgen_store)
