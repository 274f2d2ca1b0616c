"""languages: Accept-Language in, feeds without their own languages serve the reader's, Content-Language out."""

from __future__ import annotations

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.languages import accepted_languages, reader_feed
from feedgen.ranking.plugins import discover_algorithms, make_feed
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from tests.conftest import feed_uri

SKELETON = '/xrpc/app.bsky.feed.getFeedSkeleton'


@pytest.mark.parametrize(
    ('header', 'langs'),
    [
        (None, ()),
        ('', ()),
        ('pt-BR', ('pt-br',)),
        ('en;q=0.5, pt-BR, fr;q=0.9', ('pt-br', 'fr', 'en')),
        ('de;q=0, *;q=0.1, ja', ('ja',)),
        ('en, EN, en', ('en',)),
        (','.join(f'l{i}' for i in range(20)), tuple(f'l{i}' for i in range(8))),
    ],
)
def test_accepted_languages(header: str | None, langs: tuple[str, ...]) -> None:
    assert accepted_languages(header) == langs


@pytest.fixture
def topic_feeds() -> dict:
    algorithms = discover_algorithms()
    specs = [
        {'rkey': 'any', 'algorithm': 'topic', 'params': {'tags': ['cats']}},
        {'rkey': 'pt', 'algorithm': 'topic', 'params': {'tags': ['cats'], 'langs': ['pt']}},
        {'rkey': 'latest', 'algorithm': 'latest'},
    ]
    return {spec['rkey']: make_feed(algorithms, spec) for spec in specs}


@pytest.fixture
def served(settings: Settings, db: peewee.Database, topic_feeds: dict) -> FlaskClient:
    return create_app(settings, feeds=topic_feeds, db=db).test_client()


@pytest.fixture
def posts(db: peewee.Database) -> dict[str, str]:
    store = StoreBuilder(db)
    return {
        lang: store.make_post('alice', f'cats in {lang}', tags=['cats'], langs=[lang]) for lang in ('en', 'pt-br', 'ja')
    }


def get(client: FlaskClient, rkey: str, accept_language: str | None = None) -> tuple[list[str], str | None, dict]:
    headers = {'Accept-Language': accept_language} if accept_language else {}
    with client.get(SKELETON, query_string={'feed': feed_uri(rkey)}, headers=headers) as response:
        assert response.status_code == 200, response.json
        return [i['post'] for i in response.json['feed']], response.headers.get('Content-Language'), response.json


def test_a_feed_without_languages_serves_the_readers(served: FlaskClient, posts: dict[str, str]) -> None:
    items, content_language, body = get(served, 'any', 'pt-BR, ja;q=0.5')
    assert set(items) == {posts['pt-br'], posts['ja']}
    assert content_language == 'pt-br, pt, ja'
    receipt = served.get(f'/receipts/{body["reqId"]}').json
    assert receipt['params']['langs'] == ['pt-br', 'pt', 'ja'], 'the receipt shows the languages the page was made for'


def test_a_regional_reader_gets_the_base_language_too(served: FlaskClient, db: peewee.Database) -> None:
    plain_pt = StoreBuilder(db).make_post('bob', 'gatos', tags=['cats'], langs=['pt'])
    items, _, _ = get(served, 'any', 'pt-PT')
    assert items == [plain_pt]


def test_without_accept_language_every_language_is_served(served: FlaskClient, posts: dict[str, str]) -> None:
    items, content_language, _ = get(served, 'any')
    assert set(items) == set(posts.values())
    assert content_language is None


def test_a_feed_with_its_own_languages_keeps_them(served: FlaskClient, posts: dict[str, str]) -> None:
    items, content_language, _ = get(served, 'pt', 'ja')
    assert items == [posts['pt-br']]
    assert content_language == 'pt'


def test_a_feed_without_a_langs_parameter_has_no_content_language(served: FlaskClient, posts: dict[str, str]) -> None:
    items, content_language, _ = get(served, 'latest', 'ja')
    assert set(items) == set(posts.values())
    assert content_language is None


def test_explain_uses_the_readers_languages_too(served: FlaskClient, posts: dict[str, str]) -> None:
    def explain(post: str) -> dict:
        query = {'feed': feed_uri('any'), 'post': post}
        return served.get('/explain', query_string=query, headers={'Accept-Language': 'ja'}).json

    assert explain(posts['ja'])['inFeed'] is True
    assert explain(posts['en'])['inFeed'] is False


def test_a_feed_with_jobs_keeps_its_own_parameters(topic_feeds: dict) -> None:
    hot = make_feed(discover_algorithms(), {'rkey': 'hot', 'algorithm': 'hot'})
    assert hot.algorithm.jobs(), 'hot ranks ahead in a job'
    request = FeedRequest(limit=10, langs=('ja',))
    assert reader_feed(hot, request) is hot
    assert reader_feed(topic_feeds['any'], FeedRequest(limit=10)) is topic_feeds['any']
