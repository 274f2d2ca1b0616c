"""Self-labels: a post its author labels adult or graphic is in no feed unless the feed's `allow_labels` lets it in."""

from __future__ import annotations

from typing import Any

import peewee
import pytest
from feedgen_algorithms.network import Network
from feedgen_algorithms.quiet import Quiet
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import SELF_LABELS, RecordError, parse_post
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.plugins import PluginError, discover_algorithms, make_feed
from feedgen.settings import Settings
from feedgen.store.models import Post, open_database, visible_posts
from tests import frames
from tests.conftest import configured_client, feed_uri, skeleton
from tests.worlds import NOW_MS, NOW_S, READER, reader_following

ALICE = 'did:plc:alice'
FEEDS = {
    'latest': {'algorithm': 'latest'},
    'everything': {'algorithm': 'topic', 'params': {'tags': []}},
    'art': {'algorithm': 'topic', 'params': {'tags': ['art'], 'allow_labels': ['nudity']}},
    'adult': {'algorithm': 'topic', 'params': {'tags': [], 'allow_labels': ['porn', 'nudity']}},
}


def labels(*values: Any) -> dict[str, Any]:
    return {'$type': SELF_LABELS, 'values': [{'val': value} for value in values]}


@pytest.fixture
def client(settings: Settings, db: peewee.Database) -> FlaskClient:
    return configured_client(settings, db, FEEDS)


def explain(client: FlaskClient, rkey: str, post: str) -> dict[str, Any]:
    response = client.get('/explain', query_string={'feed': feed_uri(rkey), 'post': post})
    assert response.status_code == 200
    body: dict[str, Any] = response.json
    return body


def test_a_self_labelled_post_is_in_no_feed_unless_the_feed_allows_its_label(
    client: FlaskClient, db: peewee.Database
) -> None:
    store = StoreBuilder(db)
    plain = store.make_post('alice', 'a sketch #art', tags=['art'])
    nude = store.make_post('alice', 'a life drawing #art', tags=['art'], labels=['nudity'])
    porn = store.make_post('bob', 'nsfw #art', tags=['art'], labels=['porn'])
    gore = store.make_post('bob', 'an accident', labels=['graphic-media', 'nudity'])
    harmless = store.make_post('carol', 'a post for signed-in readers', labels=['!no-unauthenticated'])

    assert skeleton(client, 'latest') == [harmless, plain]
    assert skeleton(client, 'everything') == [harmless, plain]
    assert skeleton(client, 'art') == [nude, plain]
    assert skeleton(client, 'adult') == [harmless, porn, nude, plain]

    body = explain(client, 'latest', porn)
    assert body['inFeed'] is False
    assert body['selfLabels'] == ['porn']
    assert 'labels it porn' in body['message']
    assert explain(client, 'adult', gore)['selfLabels'] == ['graphic-media']
    allowed = explain(client, 'art', nude)
    assert allowed['inFeed'] is True
    assert allowed['explanation']['filters']['allow_labels'] == ['nudity']
    assert 'selfLabels' not in explain(client, 'art', harmless)  # left out for its missing hashtag, not a label


def test_keyword_feeds_leave_out_self_labelled_posts_too(db: peewee.Database) -> None:
    store = StoreBuilder(db)
    algorithms = discover_algorithms()
    plain = store.make_post('alice', 'a quiet sunset')
    store.make_post('alice', 'a graphic sunset', labels=['graphic-media'])
    for allow, expected in (([], 1), (['graphic-media'], 2)):
        feed = make_feed(algorithms, {'rkey': 'sunsets', 'algorithm': 'topic', 'params': {
            'tags': [], 'keywords': ['sunset'], 'allow_labels': allow}})  # fmt: skip
        store.run_jobs(feed.algorithm)
        assert len(feed.algorithm.page(FeedRequest(limit=30)).items) == expected
    assert feed.algorithm.explain(plain, FeedRequest(limit=30)) is not None


def test_personalized_feeds_leave_out_self_labelled_posts(db: peewee.Database) -> None:
    store = reader_following(StoreBuilder(db), 'amy')
    plain = store.make_post('amy', 'a plain post', at=NOW_S - 3600)
    labelled = store.make_post('amy', 'a labelled post', labels=['sexual'], at=NOW_S - 3600)
    for post in (plain, labelled):
        store.make_like('amy', post, at=NOW_S - 60)
    request = FeedRequest(limit=30, viewer=READER, at_ms=NOW_MS)
    for algorithm in (Network(), Quiet()):
        assert [item.post for item in algorithm.page(request).items] == [plain]
        assert algorithm.explain(labelled, request) is None
    assert Network().page(request).trace['removed'] == {'likes and reposts of self-labelled posts': 1}


def test_allow_labels_must_name_a_label_feeds_hide() -> None:
    with pytest.raises(PluginError, match='allow_labels'):
        make_feed(discover_algorithms(), {'rkey': 'x', 'algorithm': 'topic', 'params': {'allow_labels': ['spam']}})


def test_self_labels_are_read_from_the_record() -> None:
    assert parse_post(frames.post_record(labels=labels('porn', 'nudity', 'porn'))).self_labels == ('porn', 'nudity')
    assert parse_post(frames.post_record()).self_labels == ()
    other_union_member = {'$type': 'com.example.labels#other', 'values': 5}
    assert parse_post(frames.post_record(labels=other_union_member)).self_labels == ()


@pytest.mark.parametrize(
    'bad',
    [
        'porn',
        {'$type': SELF_LABELS, 'values': 'porn'},
        labels(*['porn'] * 11),
        labels(''),
        labels('two words'),
        labels(7),
        labels('x' * 129),
        {'$type': SELF_LABELS, 'values': ['porn']},
    ],
)
def test_malformed_self_labels_are_rejected(bad: Any) -> None:
    with pytest.raises(RecordError) as error:
        parse_post(frames.post_record(labels=bad))
    assert error.value.reason == 'invalid_labels'


def test_a_post_with_malformed_labels_is_skipped_and_counted(db: peewee.Database) -> None:
    indexer = Indexer(db, 'test')
    pipeline = Pipeline(indexer, batch_size=10)
    ops = [
        ('create', 'app.bsky.feed.post/bad', frames.post_record('bad', labels={'values': [{'val': 5}]})),
        ('create', 'app.bsky.feed.post/good', frames.post_record('good', labels=labels('sexual'))),
    ]
    pipeline.feed_all([frames.commit(1, ALICE, ops)])
    assert indexer.skipped['invalid_labels'] == 1
    assert [(post.uri, post.self_labels) for post in Post.select()] == [
        (f'at://{ALICE}/app.bsky.feed.post/good', 'sexual')
    ]


def test_a_store_from_before_self_labels_gains_the_column(settings: Settings, db: peewee.Database) -> None:
    StoreBuilder(db).make_post('alice', 'an old post')
    db.execute_sql('ALTER TABLE post DROP COLUMN self_labels')
    db.close()
    reopened = open_database(settings.database)
    try:
        assert [(post.text, post.self_labels) for post in Post.select()] == [('an old post', '')]
        StoreBuilder(reopened).make_post('alice', 'a new post', labels=['porn'])
        assert [post.text for post in visible_posts()] == ['an old post']
    finally:
        reopened.close()
