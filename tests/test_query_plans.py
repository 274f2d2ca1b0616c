"""Every page query of every installed algorithm walks an index: SQLite never sorts the table per request.

A store filled like the serve benchmark's (bench/serve/fill.py, smaller), every algorithm's default feed plus the
filtered ones the benchmark serves, the first page and the next: each SELECT the page runs is explained, and no
plan may sort with a temporary B-tree or scan a table without an index.
"""

from __future__ import annotations

from pathlib import Path

import peewee
import pytest

from bench.serve.fill import TAG, Filler
from feedgen.ranking.algorithm import Algorithm, FeedRequest
from feedgen.ranking.plugins import discover_algorithms
from feedgen.store.models import open_database
from tests.plans import plan, selects_of

ALGORITHMS = discover_algorithms()
FEEDS = [(name, {}) for name in sorted(ALGORITHMS)] + [
    ('topic', {'tags': [TAG]}),
    ('topic', {'tags': [], 'langs': ['ja']}),
    ('topic', {'tags': [TAG], 'langs': ['en'], 'no_replies': True}),
    ('topic', {'tags': [], 'allow_labels': ['porn', 'nudity']}),
]


@pytest.fixture(scope='module')
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp('plans') / 'store.db'
    info = Filler(posts=20_000, accounts=1_000, seed=3).write(path)
    return path, info.viewer


@pytest.fixture
def db(store: tuple[Path, str]) -> peewee.Database:
    database = open_database(store[0])
    yield database
    database.close()


def bad_steps(query_plan: str) -> list[str]:
    """The steps of a plan that sort rows or read a whole table without an index."""
    steps = query_plan.splitlines()
    return [step for step in steps if 'TEMP B-TREE' in step or (step.startswith('SCAN ') and 'INDEX' not in step)]


@pytest.mark.parametrize(('name', 'params'), FEEDS, ids=[f'{n}{p or ""}' for n, p in FEEDS])
def test_pages_are_index_range_scans(db: peewee.Database, store: tuple[Path, str], name: str, params: dict) -> None:
    algorithm: Algorithm = ALGORITHMS[name](**params)
    for job in algorithm.jobs():
        job.run(db)
    viewer = store[1] if algorithm.personalized else None
    first = algorithm.page(FeedRequest(limit=30, viewer=viewer))
    for cursor in (None, first.cursor):
        statements = selects_of(lambda c=cursor: algorithm.page(FeedRequest(limit=30, cursor=c, viewer=viewer)))
        assert statements
        for sql, values in statements:
            query_plan = plan(db, sql, values)
            assert bad_steps(query_plan) == [], f'{sql}\n{query_plan}'
