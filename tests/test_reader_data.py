"""feedgen.serve.reader_data: a reader reads and erases what the service keeps about them, with their own token only."""

from __future__ import annotations

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.serve.app import create_app
from feedgen.serve.auth import FEED_SKELETON_LXM, ServiceAuth
from feedgen.serve.reader_data import ERASE_LXM, READ_LXM
from feedgen.serve.receipts import flush_requests
from feedgen.settings import Settings
from feedgen.store.models import Follow, Interaction, Like, Post, ReaderGraph, Receipt
from tests.conftest import feed_uri
from tests.jwts import FakeKeys, SigningKey, service_claims
from tests.test_interactions import ALICE_POST, BOB_POST, DEFS, Reader
from tests.test_server import SKELETON

READ = f'/xrpc/{READ_LXM}'
ERASE = f'/xrpc/{ERASE_LXM}'
OTHER = 'did:plc:other'


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def client(settings: Settings, db: peewee.Database, keys: FakeKeys) -> FlaskClient:
    return create_app(settings, db=db, auth=ServiceAuth(settings.service_did, keys)).test_client()


@pytest.fixture
def reader(client: FlaskClient, keys: FakeKeys, settings: Settings) -> Reader:
    return Reader(client, keys, settings.service_did)


@pytest.fixture
def other(client: FlaskClient, keys: FakeKeys, settings: Settings) -> Reader:
    return Reader(client, keys, settings.service_did, OTHER)


def read(reader: Reader, **query: str) -> tuple[int, dict]:
    response = reader.client.get(READ, query_string=query, headers=reader.headers(READ_LXM))
    return response.status_code, response.json


def erase(reader: Reader, **query: str) -> tuple[int, dict]:
    response = reader.client.post(ERASE, query_string=query, json={}, headers=reader.headers(ERASE_LXM))
    return response.status_code, response.json


def leave_traces(db: peewee.Database, reader: Reader) -> str:
    """What reading feeds leaves of `reader`: feedback, a seen post, follows, the receipt of a personalized page;
    and public records of theirs. Returns the reqId of the page."""
    store = StoreBuilder(db)
    store.make_follow(reader.did, 'did:plc:alice')
    store.make_follow(reader.did, 'did:plc:bob')
    store.make_post('did:plc:alice', 'hello')
    own = store.make_post(reader.did, 'a post of my own')
    store.make_like(reader.did, own)
    reader.send(
        {'item': ALICE_POST, 'event': DEFS + 'requestLess', 'feedContext': 'hot: 3 likes'},
        {'item': BOB_POST, 'event': DEFS + 'interactionSeen'},
    )
    query = {'feed': feed_uri('following')}
    with reader.client.get(SKELETON, query_string=query, headers=reader.headers(FEED_SKELETON_LXM)) as response:
        assert response.status_code == 200, response.json
        req_id: str = response.json['reqId']
    flush_requests()
    return req_id


def test_a_reader_reads_everything_kept_about_them_and_nothing_about_anyone_else(
    db: peewee.Database, reader: Reader, other: Reader
) -> None:
    req_id = leave_traces(db, reader)
    leave_traces(db, other)
    status, data = read(reader)
    assert status == 200, data
    assert data['did'] == reader.did
    feedback = {(row['event'], row['post'], row['feedContext']) for row in data['feedback']['rows']}
    assert feedback == {('requestLess', ALICE_POST, 'hot: 3 likes'), ('interactionSeen', BOB_POST, None)}
    assert (data['feedback']['count'], data['feedback']['truncated']) == (2, False)
    assert [(row['reqId'], row['feed']) for row in data['receipts']['rows']] == [(req_id, 'following')]
    assert sorted(row['subject'] for row in data['follows']['rows']) == ['did:plc:alice', 'did:plc:bob']
    assert all(row['uri'].startswith(f'at://{reader.did}/') for row in data['follows']['rows'])
    assert data['graph_sync'] is None  # no sync configured in this app: its follows came through the indexer
    assert data['publicRecords'] == {'posts': 1, 'likes': 1, 'reposts': 0, 'publisherBlocks': 0}


def test_the_sync_state_of_the_follows_is_shown(db: peewee.Database, reader: Reader) -> None:
    ReaderGraph.create(did=reader.did, state='synced', follows=2, updated_at=1_800_000_000_000)
    status, data = read(reader)
    assert status == 200
    sync = {'state': 'synced', 'reason': '', 'follows': 2, 'attempts': 0, 'updatedAt': 1_800_000_000_000}
    assert data['graph_sync'] == sync | {'followDeletesNoted': 0}


def test_erase_removes_exactly_that_readers_rows(db: peewee.Database, reader: Reader, other: Reader) -> None:
    leave_traces(db, reader)
    leave_traces(db, other)
    ReaderGraph.create(did=reader.did, state='synced', follows=2)
    ReaderGraph.create(did=OTHER, state='synced', follows=2)
    _, before = read(other)

    status, body = erase(reader)
    assert status == 200, body
    assert body == {'did': reader.did, 'erased': {'feedback': 2, 'receipts': 1, 'follows': 2, 'graph_sync': 1}}
    _, after = read(reader)
    assert [after[kind]['count'] for kind in ('feedback', 'receipts', 'follows')] == [0, 0, 0]
    assert after['graph_sync'] is None
    assert after['publicRecords'] == {'posts': 1, 'likes': 1, 'reposts': 0, 'publisherBlocks': 0}
    for model, column in ((Interaction, Interaction.viewer), (Receipt, Receipt.viewer), (Follow, Follow.author)):
        assert model.select().where(column == reader.did).count() == 0
    assert Post.select().where(Post.author == reader.did).count() == 1
    assert Like.select().where(Like.author == reader.did).count() == 1

    status, still = read(other)
    assert status == 200
    assert still == before, "another reader's data stays as it was"


def _token(reader: Reader, lxm: str, key: SigningKey | None = None, **claims: object) -> dict[str, str]:
    payload = service_claims(reader.did, reader.service_did, lxm=lxm) | claims
    return {'Authorization': 'Bearer ' + (key or reader.key).jwt(payload)}


@pytest.mark.parametrize(('path', 'lxm'), [(READ, READ_LXM), (ERASE, ERASE_LXM)])
def test_a_missing_forged_expired_or_misaddressed_token_is_refused_saying_why(
    db: peewee.Database, reader: Reader, path: str, lxm: str
) -> None:
    leave_traces(db, reader)
    refused = {
        'AuthRequired': {},
        'BadJwt': {'Authorization': 'Bearer not-a-jwt'},
        'BadJwtSignature': _token(reader, lxm, key=SigningKey()),
        'JwtExpired': _token(reader, lxm, exp=1_700_000_000),
        'BadJwtAudience': _token(reader, lxm, aud='did:web:another-feedgen.test'),
        'BadJwtLexiconMethod': _token(reader, FEED_SKELETON_LXM),
    }
    for error, headers in refused.items():
        response = reader.client.open(path, method='GET' if path == READ else 'POST', headers=headers, json={})
        assert (response.status_code, response.json['error']) == (401, error), response.json
        assert response.json['message']
    assert Interaction.select().where(Interaction.viewer == reader.did).count() == 2, 'nothing was erased'


def test_a_token_to_read_cannot_erase_nor_one_to_erase_read(db: peewee.Database, reader: Reader) -> None:
    leave_traces(db, reader)
    wrong = reader.client.post(ERASE, json={}, headers=reader.headers(READ_LXM))
    assert (wrong.status_code, wrong.json['error']) == (401, 'BadJwtLexiconMethod')
    wrong = reader.client.get(READ, headers=reader.headers(ERASE_LXM))
    assert (wrong.status_code, wrong.json['error']) == (401, 'BadJwtLexiconMethod')
    assert Interaction.select().count() == 2


def test_another_readers_token_cannot_read_or_erase_someone_elses_data(
    db: peewee.Database, reader: Reader, other: Reader
) -> None:
    leave_traces(db, reader)
    for status, body in (read(other, did=reader.did), erase(other, did=reader.did)):
        assert (status, body['error']) == (403, 'NotYourData')
        assert OTHER in body['message']
    assert Interaction.select().where(Interaction.viewer == reader.did).count() == 2
    status, data = read(other)  # their own token reads their own data: none
    assert (status, data['feedback']['count'], data['receipts']['count']) == (200, 0, 0)


def receipt(reader: Reader, req_id: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    response = reader.client.get(f'/receipts/{req_id}', headers=headers or {})
    return response.status_code, response.json


def test_a_personalized_pages_receipt_is_read_only_with_its_readers_own_token(
    db: peewee.Database, reader: Reader, other: Reader
) -> None:
    req_id = leave_traces(db, reader)
    refused = {
        (401, 'AuthRequired'): {},
        (401, 'BadJwtSignature'): _token(reader, READ_LXM, key=SigningKey()),
        (401, 'JwtExpired'): _token(reader, READ_LXM, exp=1_700_000_000),
        (401, 'BadJwtAudience'): _token(reader, READ_LXM, aud='did:web:another-feedgen.test'),
        (403, 'NotYourReceipt'): other.headers(READ_LXM),
    }
    for (status, error), headers in refused.items():
        code, body = receipt(reader, req_id, headers)
        assert (code, body['error']) == (status, error), body
        if error in ('AuthRequired', 'NotYourReceipt'):
            assert reader.did not in body['message'], 'a refusal does not say whose page it was'
    status, body = receipt(reader, req_id, reader.headers(READ_LXM))
    assert (status, body['viewer'], body['reqId']) == (200, reader.did, req_id)


def _page(reader: Reader, rkey: str, signed_in: bool) -> str:
    headers = reader.headers(FEED_SKELETON_LXM) if signed_in else {}
    with reader.client.get(SKELETON, query_string={'feed': feed_uri(rkey)}, headers=headers) as response:
        assert response.status_code == 200, response.json
        req_id: str = response.json['reqId']
    return req_id


def test_an_anonymous_or_public_receipt_names_no_reader(db: peewee.Database, reader: Reader) -> None:
    StoreBuilder(db).make_post('did:plc:alice', 'hello #atproto', tags=['atproto'])
    pages = {'anonymous': _page(reader, 'latest', False), 'withheld': _page(reader, 'latest', True)}
    pages['withheld '] = _page(reader, 'topic', True)
    flush_requests()
    for shown, req_id in pages.items():
        response = reader.client.get(f'/receipts/{req_id}')
        assert response.status_code == 200, response.json
        assert response.json['viewer'] == shown.strip()
        assert reader.did not in response.get_data(as_text=True)
    assert Receipt.select().where(Receipt.viewer.is_null(False)).count() == 0
    _, data = read(reader)
    assert data['receipts']['count'] == 0, "a public receipt is not the reader's data"
