"""feedgen.serve.transparency: /algorithms (HTML and JSON), /explain, and the version stamps on every answer."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.plugins import discover_algorithms, load_feeds, make_feed
from feedgen.serve.app import create_app
from feedgen.serve.auth import ServiceAuth
from feedgen.settings import Settings
from feedgen.store.models import Post
from tests.conftest import CAPTURE_20, PUBLISHER, feed_uri
from tests.jwts import FakeKeys, SigningKey, service_claims

READER = 'did:plc:reader'


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


def test_algorithms_json_lists_every_feed_with_its_version(client: FlaskClient, store: StoreBuilder) -> None:
    store.replay(CAPTURE_20)
    feeds = load_feeds(discover_algorithms())
    body = client.get('/algorithms?format=json').json
    assert body['postsIndexed'] == Post.select().count() > 400
    assert [feed['rkey'] for feed in body['feeds']] == list(feeds)
    for listed in body['feeds']:
        feed = feeds[listed['rkey']]
        algorithm = type(feed.algorithm)
        assert listed['uri'] == feed_uri(feed.rkey)
        assert listed['algorithm']['name'] == algorithm.name
        assert re.fullmatch(r'[0-9a-f]{12}', listed['algorithm']['version'])
        assert listed['algorithm']['version'] == feed.version
        assert listed['algorithm']['source'] == algorithm.source()
        assert listed['algorithm']['ranking'] == algorithm.ranking
        assert listed['description'] == feed.description
        assert listed['requests'] == 0


def test_algorithms_shows_effective_params_and_counts_requests(settings: Settings, db: peewee.Database) -> None:
    algorithms = discover_algorithms()
    feeds = {'cats': make_feed(algorithms, {'rkey': 'cats', 'algorithm': 'topic', 'params': {'tags': ['cats']}})}
    client = create_app(settings, feeds=feeds, db=db).test_client()
    for _ in range(3):
        client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed_uri('cats')}).close()
    (listed,) = client.get('/algorithms', headers={'Accept': 'application/json'}).json['feeds']
    assert listed['params']['tags'] == ['cats']
    assert listed['params']['langs'] == []  # a default the feed did not set is shown too
    assert listed['requests'] == 3


def test_algorithms_is_html_for_browsers_and_json_for_programs(client: FlaskClient) -> None:
    page = client.get('/algorithms', headers={'Accept': 'text/html,application/xhtml+xml,*/*;q=0.8'})
    assert page.content_type.startswith('text/html')
    assert 'Accept' in page.headers['Vary']
    text = html.unescape(page.get_data(as_text=True))
    for feed in load_feeds(discover_algorithms()).values():
        assert f'data-rkey="{feed.rkey}"' in text
        assert feed.version in text
        assert feed.description in text
    assert client.get('/algorithms', headers={'Accept': 'application/json'}).is_json
    assert client.get('/algorithms?format=json', headers={'Accept': 'text/html'}).is_json
    assert client.get('/algorithms?format=html', headers={'Accept': 'application/json'}).content_type.startswith(
        'text/html'
    )


def test_algorithms_refuses_an_unknown_format(client: FlaskClient) -> None:
    response = client.get('/algorithms?format=xml')
    assert response.status_code == 400
    assert response.json['error'] == 'InvalidRequest'


def test_describe_feed_generator_stamps_each_feed_with_its_algorithm(client: FlaskClient) -> None:
    feeds = load_feeds(discover_algorithms())
    described = client.get('/xrpc/app.bsky.feed.describeFeedGenerator').json['feeds']
    assert [(d['uri'], d['algorithm']) for d in described] == [
        (feed_uri(f.rkey), {'name': f.algorithm.name, 'version': f.version}) for f in feeds.values()
    ]


def explain(client: FlaskClient, rkey: str, post: str, **headers: str) -> tuple[int, dict]:
    response = client.get('/explain', query_string={'feed': feed_uri(rkey), 'post': post}, headers=headers)
    return response.status_code, response.json


def test_explain_a_post_in_the_feed(client: FlaskClient, store: StoreBuilder) -> None:
    post = store.make_post('alice', 'hello #atproto', tags=['atproto'])
    status, body = explain(client, 'topic', post)
    assert status == 200
    assert body['inFeed'] is True
    assert body['viewer'] == 'anonymous'
    assert body['algorithm']['name'] == 'topic'
    assert body['explanation']['filters']['tags'] == ['atproto']


def test_explain_a_post_not_in_the_feed_says_so(client: FlaskClient, store: StoreBuilder) -> None:
    untagged = store.make_post('alice', 'no hashtag here')
    for post in (untagged, 'at://did:plc:nobody/app.bsky.feed.post/3kaaaaaaaaaaa'):
        status, body = explain(client, 'topic', post)
        assert status == 200
        assert body['inFeed'] is False
        assert 'explanation' not in body
        assert 'not in the feed topic' in body['message']


@pytest.mark.parametrize(
    ('query', 'status', 'error'),
    [
        ({'post': 'at://did:plc:a/app.bsky.feed.post/x'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('nope'), 'post': 'at://did:plc:a/app.bsky.feed.post/x'}, 400, 'UnknownFeed'),
        ({'feed': feed_uri('latest')}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'post': 'https://bsky.app/profile/a/post/x'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'post': 'at://did:plc:a/app.bsky.feed.like/x'}, 400, 'InvalidRequest'),
    ],
)
def test_explain_bad_input_is_an_xrpc_error(client: FlaskClient, query: dict, status: int, error: str) -> None:
    response = client.get('/explain', query_string=query)
    assert response.status_code == status
    assert response.json['error'] == error
    assert response.json['message']


@pytest.fixture
def signed_in(settings: Settings, db: peewee.Database) -> tuple[Flask, SigningKey]:
    key = SigningKey()
    auth = ServiceAuth(settings.service_did, FakeKeys(published={READER: key.did_key}))
    return create_app(settings, db=db, auth=auth), key


def test_explain_a_personalized_feed_for_the_reader_the_service_jwt_names(
    signed_in: tuple[Flask, SigningKey], store: StoreBuilder, settings: Settings
) -> None:
    app, key = signed_in
    client = app.test_client()
    post = store.make_post('alice', 'from someone I follow')
    store.make_follow(READER, 'alice')
    status, body = explain(client, 'following', post)
    assert (status, body['error']) == (401, 'AuthRequired')
    token = key.jwt(service_claims(READER, settings.service_did))
    status, body = explain(client, 'following', post, Authorization=f'Bearer {token}')
    assert status == 200, body
    assert body['viewer'] == READER
    assert body['inFeed'] is True
    other = store.make_post('bob', 'from someone I do not follow')
    assert explain(client, 'following', other, Authorization=f'Bearer {token}')[1]['inFeed'] is False
    status, body = explain(client, 'following', post, Authorization='Bearer not-a-jwt')
    assert status == 401


def test_the_publisher_did_is_in_every_feed_uri(client: FlaskClient) -> None:
    uris = [feed['uri'] for feed in client.get('/algorithms?format=json').json['feeds']]
    assert all(uri.startswith(f'at://{PUBLISHER}/app.bsky.feed.generator/') for uri in uris)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The app served over HTTP on a loopback port, for a real browser."""
    server = make_server('127.0.0.1', 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{server.server_port}'
    server.shutdown()
    thread.join(timeout=10)


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Runs Debian's headless chromium (installed by .ci/run), offline: no sync, updates or background calls."""
    if shutil.which('chromium') is None:
        if os.environ.get('CI'):
            pytest.fail('chromium is not installed: .ci/run installs it')
        pytest.skip('chromium is not installed (apt-get install chromium)')
    flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run']
    flags += ['--disable-background-networking', '--disable-component-update', '--disable-sync']
    flags += [f'--user-data-dir={tmp_path / "profile"}']
    return subprocess.run(['chromium', *flags, *args], capture_output=True, text=True, timeout=120)


def test_algorithms_renders_in_a_headless_browser(live_server: str, store: StoreBuilder, tmp_path: Path) -> None:
    store.replay(CAPTURE_20)
    rendered = chromium(tmp_path, '--dump-dom', f'{live_server}/algorithms')
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    dom = html.unescape(rendered.stdout)
    assert '<h1>Feeds and their algorithms</h1>' in dom
    assert f'{Post.select().count()} posts indexed' in dom
    for feed in load_feeds(discover_algorithms()).values():
        article = re.search(rf'<article id="feed-{re.escape(feed.rkey)}".*?</article>', dom, re.DOTALL)
        assert article, f'{feed.rkey} is not on the rendered page'
        assert f'<h2>{feed.display_name}</h2>' in article[0]
        assert feed.version in article[0]
        assert feed.algorithm.source() in article[0]
    screenshot = tmp_path / 'algorithms.png'
    shot = chromium(tmp_path, '--window-size=1200,1600', f'--screenshot={screenshot}', f'{live_server}/algorithms')
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert screenshot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
