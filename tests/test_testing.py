"""the pytest plugin: the pytest plugin loads in every run without importing feedgen, and its fixtures work."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import peewee

from feedgen.authoring.builder import StoreBuilder
from feedgen.store.models import Post, database


def test_it_is_registered_as_a_pytest_plugin() -> None:
    assert [e.value for e in entry_points(group='pytest11') if e.name == 'feedgen'] == [
        'feedgen.authoring.pytest_plugin'
    ]


def test_importing_it_imports_nothing_of_feedgen_and_touches_nothing() -> None:
    script = (
        'import sys, feedgen.authoring.pytest_plugin; '
        'prefixes = ("feedgen.", "peewee", "flask", "feedgen_algorithms"); '
        'loaded = sorted(m for m in sys.modules if m.startswith(prefixes)); '
        'print(loaded)'
    )
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['feedgen.authoring', 'feedgen.authoring.pytest_plugin']"
    assert result.stderr == ''


def test_feedgen_db_is_an_empty_store_bound_to_the_models(feedgen_db: peewee.Database) -> None:
    assert database.obj is feedgen_db
    assert Post.select().count() == 0


def test_feedgen_store_writes_into_feedgen_db(feedgen_db: peewee.Database, feedgen_store: StoreBuilder) -> None:
    uri = feedgen_store.make_post('alice', 'hi')
    assert feedgen_store.db is feedgen_db
    assert Post.get().uri == uri


def test_feedgen_demo_store_holds_the_demo_capture(feedgen_demo_store: StoreBuilder) -> None:
    assert Post.select().count() > 20
    assert Post.select().where(Post.tags.contains('python')).exists()
