"""feedgen.serve.app: XRPC endpoints, stable paging, and clear errors for every kind of bad input."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.store.models import Post
from tests import frames
from tests.conftest import CAPTURE_20, PUBLISHER, expected_posts, feed_uri

SKELETON = '/xrpc/app.bsky.feed.getFeedSkeleton'


def page_through(client: FlaskClient, feed: str, limit: int = 100) -> list[str]:
    """Every post of `feed`, following cursors to the end."""
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        query = {'feed': feed, 'limit': limit} | ({'cursor': cursor} if cursor else {})
        response = client.get(SKELETON, query_string=query)
        assert response.status_code == 200, response.json
        seen.extend(item['post'] for item in response.json['feed'])
        cursor = response.json.get('cursor')
        if cursor is None:
            return seen
    raise AssertionError('paging never ended')


def test_latest_pages_the_capture_newest_first_without_repeats(client: FlaskClient, pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    assert page_through(client, feed_uri('latest')) == expected_posts(CAPTURE_20)
    assert page_through(client, feed_uri('latest'), limit=7) == expected_posts(CAPTURE_20)


def test_posts_sharing_a_timestamp_are_neither_repeated_nor_skipped(client: FlaskClient, pipeline: Pipeline) -> None:
    # 250 posts, all with the same createdAt and commit time.
    pipeline.feed_all(
        frames.commit(seq, f'did:plc:a{seq % 7}', [('create', f'app.bsky.feed.post/p{seq}', frames.post_record())])
        for seq in range(1, 251)
    )
    for limit in (1, 3, 50, 100):
        posts = page_through(client, feed_uri('latest'), limit=limit)
        assert len(posts) == len(set(posts)) == 250


def test_items_carry_a_feed_context(client: FlaskClient, pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    response = client.get(SKELETON, query_string={'feed': feed_uri('latest'), 'limit': 3})
    assert all(item['feedContext'] for item in response.json['feed'])
    assert len(response.json['feed']) == 3


def test_default_limit_is_50(client: FlaskClient, pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    assert len(client.get(SKELETON, query_string={'feed': feed_uri('latest')}).json['feed']) == 50


def test_topic_feed_filters_by_hashtag(client: FlaskClient, pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    posts = page_through(client, feed_uri('topic'), limit=10)
    tagged = [p.uri for p in Post.select().order_by(Post.sort_at.desc(), Post.id.desc()) if 'atproto' in p.tags.split()]
    assert posts == tagged
    assert posts


@pytest.mark.parametrize(
    ('query', 'status', 'error'),
    [
        ({}, 400, 'InvalidRequest'),
        ({'feed': 'at://did:plc:someoneelse/app.bsky.feed.generator/latest'}, 400, 'UnknownFeed'),
        ({'feed': feed_uri('no-such-feed')}, 400, 'UnknownFeed'),
        ({'feed': 'not a uri'}, 400, 'UnknownFeed'),
        ({'feed': feed_uri('latest'), 'limit': 0}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'limit': 101}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'limit': 'ten'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'cursor': 'latest:garbage'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'cursor': 'latest:1:2:3'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'cursor': 'topic:1795521600000:5'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'cursor': '1795521600000:5'}, 400, 'InvalidRequest'),
        ({'feed': feed_uri('latest'), 'cursor': 'latest:99999999999999999999999:1'}, 400, 'InvalidRequest'),
    ],
)
def test_bad_input_is_an_xrpc_error(client: FlaskClient, query: dict, status: int, error: str) -> None:
    response = client.get(SKELETON, query_string=query)
    assert response.status_code == status
    assert response.is_json
    assert response.json['error'] == error
    assert response.json['message']


def test_unknown_routes_and_methods_are_xrpc_json(client: FlaskClient) -> None:
    missing = client.get('/xrpc/app.bsky.feed.nothing')
    assert (missing.status_code, missing.json['error']) == (404, 'NotFound')
    wrong_method = client.post(SKELETON)
    assert (wrong_method.status_code, wrong_method.json['error']) == (405, 'MethodNotAllowed')


def test_an_algorithm_crash_is_a_json_500_not_html(client: FlaskClient, app, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = app.extensions['feedgen']['feeds']['latest']

    def explode(_request):
        raise RuntimeError('boom')

    monkeypatch.setattr(feed.algorithm, 'page', explode)
    response = client.get(SKELETON, query_string={'feed': feed_uri('latest')})
    assert response.status_code == 500
    assert response.json['error'] == 'InternalServerError'
    assert 'boom' not in response.json['message']


def test_describe_feed_generator_lists_every_feed(client: FlaskClient) -> None:
    body = client.get('/xrpc/app.bsky.feed.describeFeedGenerator').json
    assert body['did'] == 'did:web:feeds.example.test'
    uris = {feed['uri'] for feed in body['feeds']}
    assert {feed_uri('latest'), feed_uri('topic')} <= uris
    assert all(uri.startswith(f'at://{PUBLISHER}/app.bsky.feed.generator/') for uri in uris)


def test_did_document_names_the_feed_generator_service(client: FlaskClient) -> None:
    body = client.get('/.well-known/did.json').json
    assert body['id'] == 'did:web:feeds.example.test'
    assert body['service'] == [
        {'id': '#bsky_fg', 'type': 'BskyFeedGenerator', 'serviceEndpoint': 'https://feeds.example.test'}
    ]


def test_health_reports_the_ingest_cursor(client: FlaskClient, pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    body = client.get('/xrpc/_health').json
    assert body['status'] == 'ok'
    assert body['ingest'][0]['cursor'] == 1311


def test_feed_uri_must_match_exactly(client: FlaskClient) -> None:
    encoded = quote(feed_uri('latest'), safe='')
    response = client.get(f'{SKELETON}?feed={encoded}')
    assert response.status_code == 200
