"""Shared fixtures: settings, a fresh store, the Flask app and client, and the recorded captures."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient
from playhouse.db_url import connect as connect_url

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.ranking.plugins import discover_algorithms, make_feed
from feedgen.serve.app import create_app
from feedgen.serve.receipts import flush_requests
from feedgen.settings import Settings
from feedgen.store.models import open_database
from tests.atnet import Network, find_network

DATA = Path(__file__).parent / 'data'
CAPTURE_20 = DATA / 'pds-session-20acct.atfh'
CAPTURE_5 = DATA / 'pds-session-5acct.atfh'
PUBLISHER = 'did:plc:publisher0000000000000000'
POSTGRES_URL = os.environ.get('FEEDGEN_TEST_DATABASE_URL', '')
"""A PostgreSQL database the store, indexer and server suites also run against (`.ci/postgres.sh start`)."""
BACKEND_SUITES = frozenset(
    {'test_store', 'test_indexer', 'test_server', 'test_fast_path', 'test_pagination', 'test_prepared'}
    | {'test_following', 'test_following_reposts', 'test_graph_sync', 'test_self_labels', 'test_reader_data'}
    | {'test_post_index', 'test_plugin_indexers', 'test_labelers', 'test_post_counts', 'test_counters'}
    | {'test_schema'}
)
"""Test modules run on every backend when `FEEDGEN_TEST_DATABASE_URL` is set; the others on SQLite only."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    suite = metafunc.module.__name__.rsplit('.', 1)[-1]
    if POSTGRES_URL and suite in BACKEND_SUITES and 'backend' in metafunc.fixturenames:
        metafunc.parametrize('backend', ['sqlite', 'postgresql'])


@pytest.fixture(autouse=True)
def _stop_signal_handlers() -> Iterator[None]:
    """Each test starts with the stop signals' handlers the session had: a test that installs its own (Ctrl-C's
    `KeyboardInterrupt`, for a run started with SIGINT ignored; a command run in-process) leaves them to no other."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def backend() -> str:
    """The database the `settings` store lives in: `sqlite`, or `postgresql` in the suites of `BACKEND_SUITES`."""
    return 'sqlite'


def empty_postgres(url: str) -> str:
    """Drops every table of the PostgreSQL database at `url`, so a test starts from an empty store; returns `url`."""
    with connect_url(url) as db:
        db.execute_sql('DROP SCHEMA public CASCADE; CREATE SCHEMA public')
    return url


def load_session(capture: Path) -> dict:
    """The ground truth recorded next to a capture (`<name>.session.json`)."""
    return json.loads(capture.with_suffix('.session.json').read_text())


def expected_posts(capture: Path) -> list[str]:
    """URIs a full `latest` must return for `capture`: not deleted, author not deleted; newest first."""
    session = load_session(capture)
    deleted_account = session['account_events']['admin_deleted']
    alive = [p['uri'] for p in session['posts'] if not p['deleted'] and p['author'] != deleted_account]
    return alive[::-1]


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Settings:
    database = empty_postgres(POSTGRES_URL) if backend == 'postgresql' else str(tmp_path / 'feedgen.db')
    return Settings(hostname='feeds.example.test', publisher_did=PUBLISHER, database=database)


@pytest.fixture
def db(settings: Settings) -> Iterator[peewee.Database]:
    database = open_database(settings.database)
    yield database
    flush_requests()  # what this test served is written to its own store, not to the next test's
    database.close()


@pytest.fixture
def pipeline(db: peewee.Database) -> Pipeline:
    return Pipeline(Indexer(db, 'test'), batch_size=100)


@pytest.fixture
def app(settings: Settings, db: peewee.Database) -> Flask:
    return create_app(settings, db=db)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def feed_uri(rkey: str) -> str:
    return f'at://{PUBLISHER}/app.bsky.feed.generator/{rkey}'


def configured_client(settings: Settings, db: peewee.Database, feeds: dict[str, dict]) -> FlaskClient:
    """A test client of an app serving the built-in algorithms as the feeds `{rkey: declaration}` declare them."""
    algorithms = discover_algorithms()
    made = {rkey: make_feed(algorithms, {'rkey': rkey, **config}) for rkey, config in feeds.items()}
    return create_app(settings, feeds=made, db=db).test_client()


def skeleton(client: FlaskClient, rkey: str) -> list[str]:
    """The post URIs of the feed's first page (up to 100), through getFeedSkeleton."""
    response = client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed_uri(rkey), 'limit': 100})
    assert response.status_code == 200, response.json
    return [item['post'] for item in response.json['feed']]


@pytest.fixture(scope='module')
def network() -> Network:
    """The local AT Protocol network (../shared/atnet) the end-to-end tests run against; skips (or, under CI, fails)
    when it is not running."""
    return find_network()
