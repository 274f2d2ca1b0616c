"""feedgen.serve.interactions: sendInteractions keeps readers' feedback, refuses what it should, and feeds use it."""

from __future__ import annotations

import time

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.jobs import feed_jobs
from feedgen.serve.app import create_app
from feedgen.serve.auth import FEED_SKELETON_LXM, ServiceAuth
from feedgen.serve.interactions import MAX_INTERACTIONS, SEND_INTERACTIONS_LXM, prune_interactions
from feedgen.settings import Settings
from feedgen.store.models import Interaction
from tests.conftest import feed_uri
from tests.jwts import FakeKeys, SigningKey, service_claims
from tests.test_server import SKELETON
from tests.worlds import READER, engaged

SEND = '/xrpc/app.bsky.feed.sendInteractions'
DEFS = 'app.bsky.feed.defs#'
ALICE_POST = 'at://did:plc:alice/app.bsky.feed.post/a1'
BOB_POST = 'at://did:plc:bob/app.bsky.feed.post/b1'


class Reader:
    """A signed-in reader: service JWTs signed with their own key, which the app's resolver knows."""

    def __init__(self, client: FlaskClient, keys: FakeKeys, service_did: str, did: str = READER) -> None:
        self.client, self.service_did, self.did = client, service_did, did
        self.key = SigningKey()
        keys.published[did] = self.key.did_key

    def headers(self, lxm: str = SEND_INTERACTIONS_LXM) -> dict[str, str]:
        return {'Authorization': 'Bearer ' + self.key.jwt(service_claims(self.did, self.service_did, lxm=lxm))}

    def send(self, *interactions: dict) -> tuple[int, dict]:
        response = self.client.post(SEND, json={'interactions': list(interactions)}, headers=self.headers())
        return response.status_code, response.json

    def feed(self, rkey: str) -> list[str]:
        query = {'feed': feed_uri(rkey), 'limit': 100}
        response = self.client.get(SKELETON, query_string=query, headers=self.headers(FEED_SKELETON_LXM))
        assert response.status_code == 200, response.json
        return [item['post'] for item in response.json['feed']]


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def client(settings: Settings, db: peewee.Database, keys: FakeKeys) -> FlaskClient:
    return create_app(settings, db=db, auth=ServiceAuth(settings.service_did, keys)).test_client()


@pytest.fixture
def reader(client: FlaskClient, keys: FakeKeys, settings: Settings) -> Reader:
    return Reader(client, keys, settings.service_did)


def test_feedback_feeds_use_is_kept_and_the_rest_accepted(reader: Reader) -> None:
    status, body = reader.send(
        {'item': ALICE_POST, 'event': DEFS + 'requestLess', 'feedContext': 'hot: 3 likes'},
        {'item': BOB_POST, 'event': DEFS + 'requestMore'},
        {'item': BOB_POST, 'event': DEFS + 'interactionSeen'},
        {'item': ALICE_POST, 'event': DEFS + 'clickthroughItem'},
        {'item': 'at://did:plc:alice/app.bsky.feed.like/l1', 'event': DEFS + 'requestLess'},
        {'item': 'at://alice.test/app.bsky.feed.post/a1', 'event': DEFS + 'requestLess'},
        {'event': DEFS + 'requestLess'},
        {'item': 'not a uri', 'event': DEFS + 'requestMore'},
    )
    assert (status, body) == (200, {})
    kept = {(row.viewer, row.event, row.post, row.author, row.feed_context) for row in Interaction.select()}
    assert kept == {
        (READER, 'requestLess', ALICE_POST, 'did:plc:alice', 'hot: 3 likes'),
        (READER, 'requestMore', BOB_POST, 'did:plc:bob', None),
        (READER, 'interactionSeen', BOB_POST, 'did:plc:bob', None),
    }


def test_the_latest_request_about_a_post_replaces_the_earlier(reader: Reader) -> None:
    reader.send({'item': ALICE_POST, 'event': DEFS + 'requestLess', 'feedContext': 'first'})
    first_at = Interaction.get().at
    time.sleep(0.002)
    reader.send({'item': ALICE_POST, 'event': DEFS + 'requestLess', 'feedContext': 'second'})
    rows = list(Interaction.select())
    assert [(row.feed_context, row.at > first_at) for row in rows] == [('second', True)]


def test_feedback_needs_a_token_scoped_to_send_interactions(client: FlaskClient, reader: Reader) -> None:
    body = {'interactions': [{'item': ALICE_POST, 'event': DEFS + 'requestLess'}]}
    anonymous = client.post(SEND, json=body)
    assert (anonymous.status_code, anonymous.json['error']) == (401, 'AuthRequired')
    wrong_method = client.post(SEND, json=body, headers=reader.headers(FEED_SKELETON_LXM))
    assert (wrong_method.status_code, wrong_method.json['error']) == (401, 'BadJwtLexiconMethod')
    assert Interaction.select().count() == 0


@pytest.mark.parametrize(
    ('body', 'message'),
    [
        ([1, 2], 'the body must be a JSON object'),
        ({'interactions': 'x'}, 'interactions: Input should be a valid list'),
        ({}, 'interactions: Field required'),
        ({'interactions': [{'item': ALICE_POST, 'event': 3}]}, 'interactions.0.event: Input should be a valid string'),
        ({'interactions': [{'feedContext': 'x' * 2001}]}, 'interactions.0.feedContext: String should have at most'),
        ({'interactions': [{}] * (MAX_INTERACTIONS + 1)}, f'at most {MAX_INTERACTIONS}'),
    ],
)
def test_a_body_off_the_lexicon_is_refused(reader: Reader, body: object, message: str) -> None:
    response = reader.client.post(SEND, json=body, headers=reader.headers())
    assert (response.status_code, response.json['error']) == (400, 'InvalidRequest')
    assert message in response.json['message']


def test_feeds_that_use_feedback_say_so(client: FlaskClient) -> None:
    feeds = client.get('/xrpc/app.bsky.feed.describeFeedGenerator').json['feeds']
    accepting = {feed['uri'].rsplit('/', 1)[-1] for feed in feeds if feed.get('acceptsInteractions')}
    assert accepting == {'hot', 'catch-up', 'network', 'quiet'}


def test_show_less_sent_by_a_reader_demotes_the_author_in_their_hot_feed(
    reader: Reader, client: FlaskClient, db: peewee.Database
) -> None:
    store = StoreBuilder(db)
    now = time.time()
    loud = engaged(store, 'alice', 1, likes=6, now_s=now)
    quiet = engaged(store, 'bob', 1, likes=3, now_s=now)
    for job in feed_jobs(client.application.extensions['feedgen']['feeds'].values()):
        job.run(db)
    assert reader.feed('hot') == [loud, quiet]
    assert reader.send({'item': loud, 'event': DEFS + 'requestLess'})[0] == 200
    assert reader.feed('hot') == [quiet, loud]
    other = Reader(client, client.application.extensions['feedgen']['auth'].keys, reader.service_did, 'did:plc:other')
    assert other.feed('hot') == [loud, quiet]


def test_feedback_is_forgotten_after_30_days(db: peewee.Database) -> None:
    day_ms = 86_400_000
    for age_days, post in ((29, ALICE_POST), (31, BOB_POST)):
        Interaction.create(viewer=READER, event='requestLess', post=post, author='x', at=(100 - age_days) * day_ms)
    assert prune_interactions(db, now=100 * 86_400) == 1
    assert [row.post for row in Interaction.select()] == [ALICE_POST]
