"""/explain for a post that is not in a feed: the rule that left it out and the post's value for it, one test a rule."""

from __future__ import annotations

import time

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.ranking import scores
from feedgen.ranking.algorithm import Algorithm, Exclusion, FeedRequest
from feedgen.ranking.exclusions import NO_READER, feed_exclusion
from feedgen.ranking.plugins import discover_algorithms, make_feed
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from feedgen.store.models import Post
from tests import frames
from tests.conftest import PUBLISHER, feed_uri
from tests.worlds import READER

FEEDS = {
    'cats': {'algorithm': 'topic', 'params': {'tags': ['cats'], 'langs': ['en'], 'no_replies': True}},
    'pictures': {'algorithm': 'topic', 'params': {'tags': [], 'media_only': True}},
    'words': {'algorithm': 'topic', 'params': {'tags': [], 'keywords': ['kitten']}},
    'hot': {'algorithm': 'hot', 'params': {}},
    'latest': {'algorithm': 'latest', 'params': {}},
}
HOUR = 3600.0


@pytest.fixture
def store(db: peewee.Database) -> StoreBuilder:
    return StoreBuilder(db)


@pytest.fixture
def served(settings: Settings, db: peewee.Database) -> FlaskClient:
    algorithms = discover_algorithms()
    feeds = {rkey: make_feed(algorithms, {'rkey': rkey, **spec}) for rkey, spec in FEEDS.items()}
    return create_app(settings, feeds=feeds, db=db).test_client()


def why_not(client: FlaskClient, rkey: str, post: str, **headers: str) -> dict:
    response = client.get('/explain', query_string={'feed': feed_uri(rkey), 'post': post}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json
    assert body['inFeed'] is False
    assert body['message'].endswith(body['excludedBy']['message'])
    excluded: dict = body['excludedBy']
    return excluded


def _ingest(db: peewee.Database, *messages: bytes) -> None:
    Pipeline(Indexer(db, 'firehose', publisher_did=PUBLISHER)).feed_all(messages)


def _hot_with_likes(store: StoreBuilder, *posts: tuple[str, int]) -> None:
    """Gives each post its number of likes, then runs the hot feed's scoring job."""
    for post, likes in posts:
        for n in range(likes):
            store.make_like(f'fan{n}', post)
    algorithm = make_feed(discover_algorithms(), {'rkey': 'hot', **FEEDS['hot']}).algorithm
    store.run_jobs(algorithm)


def test_a_post_never_indexed_or_deleted(served: FlaskClient, store: StoreBuilder) -> None:
    deleted = store.make_post('alice', 'soon gone')
    store.delete(deleted)
    for post in (deleted, 'at://did:plc:nobody/app.bsky.feed.post/3kaaaaaaaaaaa'):
        assert why_not(served, 'latest', post)['rule'] == 'not_indexed'


def test_an_author_who_blocks_the_publisher_opted_out(
    served: FlaskClient, store: StoreBuilder, db: peewee.Database
) -> None:
    post = store.make_post('alice', 'hello')
    block = frames.subject_record('app.bsky.graph.block', PUBLISHER)
    _ingest(db, frames.commit(1, 'did:plc:alice', [('create', 'app.bsky.graph.block/x', block)]))
    excluded = why_not(served, 'latest', post)
    assert excluded['rule'] == 'opted_out'
    assert excluded['value'] == 'at://did:plc:alice/app.bsky.graph.block/x'
    assert 'blocks the publisher' in excluded['message']


def test_an_author_whose_account_is_taken_down(served: FlaskClient, store: StoreBuilder, db: peewee.Database) -> None:
    post = store.make_post('alice', 'hello')
    _ingest(db, frames.account(1, 'did:plc:alice', False, 'takendown'))
    excluded = why_not(served, 'latest', post)
    assert (excluded['rule'], excluded['value']) == ('account_inactive', 'takendown')


def test_no_hashtag_of_the_feed(served: FlaskClient, store: StoreBuilder) -> None:
    excluded = why_not(served, 'cats', store.make_post('alice', 'dogs', tags=['dogs']))
    assert (excluded['rule'], excluded['value']) == ('tags', ['dogs'])
    assert '#dogs' in excluded['message'] and '#cats' in excluded['message']


def test_not_in_the_feeds_languages(served: FlaskClient, store: StoreBuilder) -> None:
    excluded = why_not(served, 'cats', store.make_post('alice', 'katzen', tags=['cats'], langs=['de']))
    assert (excluded['rule'], excluded['value']) == ('langs', ['de'])


def test_not_in_the_readers_languages(client: FlaskClient, store: StoreBuilder) -> None:
    post = store.make_post('alice', 'hello #atproto', tags=['atproto'], langs=['en'])
    excluded = why_not(client, 'topic', post, **{'Accept-Language': 'ja'})
    assert (excluded['rule'], excluded['value']) == ('langs', ['en'])


def test_replies_excluded(served: FlaskClient, store: StoreBuilder) -> None:
    parent = store.make_post('alice', 'cats', tags=['cats'])
    reply = store.make_post('bob', 'yes cats', tags=['cats'], reply_to=parent)
    excluded = why_not(served, 'cats', reply)
    assert (excluded['rule'], excluded['value']) == ('replies', parent)


def test_no_media(served: FlaskClient, store: StoreBuilder) -> None:
    excluded = why_not(served, 'pictures', store.make_post('alice', 'words only'))
    assert (excluded['rule'], excluded['value']) == ('media', None)


def test_no_keyword(served: FlaskClient, store: StoreBuilder) -> None:
    excluded = why_not(served, 'words', store.make_post('alice', 'a puppy'))
    assert (excluded['rule'], excluded['value']) == ('keywords', [])


def test_older_than_the_window(served: FlaskClient, store: StoreBuilder) -> None:
    old = store.make_post('alice', 'old news', at=time.time() - 49 * HOUR)
    _hot_with_likes(store, (old, 3))
    excluded = why_not(served, 'hot', old)
    assert excluded['rule'] == 'window'
    assert 49 <= excluded['value'] < 50
    assert '48-hour window' in excluded['message']


def test_no_engagement(served: FlaskClient, store: StoreBuilder) -> None:
    liked, quiet = store.make_post('alice', 'liked'), store.make_post('alice', 'quiet')
    _hot_with_likes(store, (liked, 1))
    assert why_not(served, 'hot', quiet)['rule'] == 'no_engagement'


def test_below_the_snapshots_last_score(
    served: FlaskClient, store: StoreBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scores, 'SNAPSHOT_POSTS', 2)
    posts = [store.make_post('alice', f'post {n}') for n in range(3)]
    _hot_with_likes(store, (posts[0], 3), (posts[1], 2), (posts[2], 1))
    excluded = why_not(served, 'hot', posts[2])
    assert excluded['rule'] == 'below_cutoff'
    assert 0 < excluded['value']['score'] < excluded['value']['cutoff']
    assert 'below the 2th best' in excluded['message']


def test_liked_after_the_snapshot(served: FlaskClient, store: StoreBuilder) -> None:
    liked, late = store.make_post('alice', 'liked'), store.make_post('alice', 'late')
    _hot_with_likes(store, (liked, 1))
    store.make_like('fan', late)
    assert why_not(served, 'hot', late)['rule'] == 'after_snapshot'


class _ByLanguage(Algorithm):
    """A personalized algorithm whose `why_not` gives a reason whoever asks (as a careless plugin might)."""

    name = 'by-language'
    display_name = description = "posts in the reader's languages"
    personalized = True

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        return Exclusion('langs', 'not in your languages', post.langs)


def test_a_personalized_feed_asked_without_a_reader_is_unexplained(store: StoreBuilder) -> None:
    post = Post.get(Post.uri == store.make_post('alice', 'hello', langs=['de']))
    algorithm, hot = _ByLanguage(), make_feed(discover_algorithms(), {'rkey': 'hot', **FEEDS['hot']}).algorithm
    assert feed_exclusion(algorithm, post, FeedRequest(limit=1)) == NO_READER
    assert NO_READER.rule == 'unexplained'
    assert feed_exclusion(algorithm, post, FeedRequest(limit=1, viewer=READER)).rule == 'langs'
    assert feed_exclusion(hot, post, FeedRequest(limit=1)).rule == 'no_engagement', 'a public feed still says why'


def test_a_post_ranked_and_left_out_for_nobody_is_unexplained(store: StoreBuilder) -> None:
    post = store.make_post('alice', 'liked')
    _hot_with_likes(store, (post, 1))
    hot = make_feed(discover_algorithms(), {'rkey': 'hot', **FEEDS['hot']}).algorithm
    row = Post.get(Post.uri == post)
    assert hot.why_not(row, FeedRequest(limit=1)) is None
    assert hot.why_not(row, FeedRequest(limit=1, viewer=READER)) == Exclusion(
        'viewer', 'it is ranked, but left out for you: excluded', READER
    )


def test_explain_of_a_personalized_feed_needs_the_reader(client: FlaskClient, store: StoreBuilder) -> None:
    post = store.make_post('alice', 'hello')
    response = client.get('/explain', query_string={'feed': feed_uri('following'), 'post': post})
    assert (response.status_code, response.json['error']) == (401, 'AuthRequired')
