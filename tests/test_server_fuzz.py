"""feedgen.serve.app under hostile requests: random paths, methods, query strings, headers and bodies never get a
500, and every refusal is an XRPC JSON body `{"error", "message"}`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from feedgen.store.models import open_database
from tests.conftest import CAPTURE_5, PUBLISHER, feed_uri

PATHS = [
    '/xrpc/app.bsky.feed.getFeedSkeleton',
    '/xrpc/app.bsky.feed.describeFeedGenerator',
    '/.well-known/did.json',
    '/xrpc/_health',
    '/algorithms',
    '/explain',
    '/receipts/0123456789abcdef',
    '/metrics',
]
FEED_URIS = [feed_uri('latest'), feed_uri('topic'), 'at://did:plc:other/app.bsky.feed.generator/latest']
# Printable Latin-1, the characters an HTTP header value can carry; plus a few that should never be there.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60) | st.sampled_from(['\x00', '\t'])
ANY_TEXT = st.text(max_size=80)


@pytest.fixture(scope='module')
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlaskClient]:
    folder: Path = tmp_path_factory.mktemp('fuzz')
    # Loopback PLC with nothing listening: a token that got as far as key resolution fails fast, offline.
    config = Settings(
        hostname='feeds.example.test',
        publisher_did=PUBLISHER,
        database=str(folder / 'f.db'),
        plc_url='http://127.0.0.1:9',
    )
    db = open_database(config.database)
    replay(CAPTURE_5, Pipeline(Indexer(db, 'capture')))
    app: Flask = create_app(config, db=db)
    yield app.test_client()
    db.close()


def assert_xrpc_answer(status: int, content_type: str, body: bytes, method: str) -> None:
    assert status < 500, body[:300]
    if status >= 400 and method != 'HEAD':
        assert content_type == 'application/json', (status, body[:300])
        error = json.loads(body)
        assert isinstance(error['error'], str) and error['error']
        assert isinstance(error['message'], str)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A query string: known parameters with good and bad values, unknown ones, and raw undecodable bytes."""
    pairs = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(['feed', 'limit', 'cursor', 'post', 'format']) | ANY_TEXT)
        value = draw(
            st.sampled_from(FEED_URIS)
            | st.sampled_from(['latest:', 'latest:1700000000000::1', 'topic:x', '0', '1', '100', '101', '-1', 'json'])
            | st.integers(-(2**70), 2**70).map(str)
            | ANY_TEXT
        )
        pairs.append(f'{quote(name, safe="")}={quote(value, safe="")}'.encode())
    if draw(st.booleans()):
        pairs.append(draw(st.binary(max_size=30)))
    return b'&'.join(pairs)


@st.composite
def headers(draw: st.DrawFn) -> dict[str, str]:
    names = st.sampled_from(['Authorization', 'Accept-Language', 'Accept', 'Content-Type', 'X-Forwarded-For'])
    chosen = draw(st.dictionaries(names | st.from_regex(r'\AX-[A-Za-z0-9-]{1,20}\Z'), HEADER_TEXT, max_size=4))
    if draw(st.booleans()):
        chosen['Authorization'] = 'Bearer ' + draw(
            st.sampled_from(['', 'a.b.c', 'eyJhbGciOiJub25lIn0.eyJpc3MiOiJkaWQ6cGxjOngifQ.', 'x' * 300]) | HEADER_TEXT
        )
    return chosen


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(['GET', 'GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS']),
    # `/` once: a path starting `//` is a network-path reference, which the test client reads as a host to reach.
    path=st.sampled_from(PATHS) | ANY_TEXT.map(lambda text: '/' + quote(text).lstrip('/')),
    query=queries(),
    header=headers(),
    body=st.none() | st.binary(max_size=100),
)
def test_no_request_gets_a_500_and_every_refusal_is_xrpc_json(
    client: FlaskClient, method: str, path: str, query: bytes, header: dict[str, str], body: bytes | None
) -> None:
    raw_query = {'QUERY_STRING': query.decode('latin-1')}  # as a WSGI server hands over bytes it cannot decode
    response = client.open(path, method=method, headers=header, data=body, environ_overrides=raw_query)
    assert_xrpc_answer(response.status_code, response.mimetype, response.get_data(), method)
