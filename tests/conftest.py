"""Shared fixtures: settings, a fresh store, the Flask app and client, and the recorded captures."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient

from feedgen.indexer import Indexer
from feedgen.ingest import Pipeline
from feedgen.server import create_app
from feedgen.settings import Settings
from feedgen.store import open_database

DATA = Path(__file__).parent / 'data'
CAPTURE_20 = DATA / 'pds-session-20acct.atfh'
CAPTURE_5 = DATA / 'pds-session-5acct.atfh'
PUBLISHER = 'did:plc:publisher0000000000000000'


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
def settings(tmp_path: Path) -> Settings:
    return Settings(hostname='feeds.example.test', publisher_did=PUBLISHER, database=str(tmp_path / 'feedgen.db'))


@pytest.fixture
def db(settings: Settings) -> Iterator[peewee.Database]:
    database = open_database(settings.database)
    yield database
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
