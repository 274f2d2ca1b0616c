"""End to end on ../shared/atnet: a reader reads and erases what the service keeps about them, with a service JWT
their own PDS mints (`com.atproto.server.getServiceAuth`), and their follows are read again on their next getFeed.

The reader follows an account and reads `following` through their PDS and the AppView, and sends feedback; then
reads their data (follows, sync state, feedback, the receipts of their pages), which another account's token, a
forged one and none cannot; a personalized page's receipt opens only with their token; they erase it all, and
their next `getFeed` syncs their follows from their repository again. Two serving workers, as deployed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from feedgen.serve.interactions import SEND_INTERACTIONS_LXM
from feedgen.serve.reader_data import ERASE_LXM, READ_LXM
from tests.atnet import (
    RETRY_XRPC,
    Account,
    Feedgen,
    Network,
    create_account,
    eventually,
    feed_through_pds,
    running_feedgen,
)
from tests.jwts import SigningKey, service_claims

pytestmark = pytest.mark.atnet


@pytest.fixture(scope='module')
def people(network: Network) -> dict[str, Account]:
    return {name: create_account(network, name) for name in ('publisher', 'reader', 'bob', 'other')}


@pytest.fixture(scope='module')
def feedgen(
    network: Network, people: dict[str, Account], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    folder = tmp_path_factory.mktemp('reader-data')
    yield from running_feedgen(network, people['publisher'], folder, env={'FEEDGEN_WORKERS': '2'})


def call(feedgen: Feedgen, method: str, path: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    return httpx.request(method, feedgen.url + path, params=params, headers=headers, json={}, timeout=10)


def token(account: Account, feedgen: Feedgen, lxm: str) -> str:
    return account.service_token(feedgen.settings.service_did, lxm)


def read_data(feedgen: Feedgen, reader: Account) -> dict[str, Any]:
    response = call(feedgen, 'GET', f'/xrpc/{READ_LXM}', token(reader, feedgen, READ_LXM))
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def following(reader: Account, feedgen: Feedgen) -> list[str]:
    return [item.post.uri for item in feed_through_pds(reader, feedgen.feed_uri('following'))]


def test_a_reader_reads_then_erases_their_data_and_their_follows_are_read_again(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    reader, bob, other = people['reader'], people['bob'], people['other']
    follow = reader.follow(bob)
    post = bob.post('bob posts for the people who follow him')

    def bobs_post_is_shown() -> None:
        assert following(reader, feedgen) == [post.uri]

    eventually(bobs_post_is_shown, retry=RETRY_XRPC)
    feedback = {'interactions': [{'item': post.uri, 'event': 'app.bsky.feed.defs#requestMore'}]}
    headers = {'Authorization': f'Bearer {token(reader, feedgen, SEND_INTERACTIONS_LXM)}'}
    sent = httpx.post(feedgen.url + '/xrpc/app.bsky.feed.sendInteractions', json=feedback, headers=headers, timeout=10)
    assert sent.status_code == 200, sent.text

    def everything_is_there() -> dict[str, Any]:
        data = read_data(feedgen, reader)
        assert [(row['uri'], row['subject']) for row in data['follows']['rows']] == [(follow.uri, bob.did)]
        assert data['graph_sync'] is not None and data['graph_sync']['state'] == 'synced'
        assert [(row['event'], row['post']) for row in data['feedback']['rows']] == [('requestMore', post.uri)]
        assert data['receipts']['count'] >= 1 and {row['feed'] for row in data['receipts']['rows']} == {'following'}
        return data

    data = eventually(everything_is_there, timeout=30)
    assert data['did'] == reader.did

    refused = {
        'AuthRequired': None,
        'BadJwtSignature': SigningKey().jwt(service_claims(reader.did, feedgen.settings.service_did, READ_LXM)),
        'BadJwtLexiconMethod': token(reader, feedgen, 'app.bsky.feed.getFeedSkeleton'),
        'BadJwtAudience': reader.service_token('did:web:another-feedgen.test', READ_LXM),
    }
    for error, bad in refused.items():
        response = call(feedgen, 'GET', f'/xrpc/{READ_LXM}', bad)
        assert (response.status_code, response.json()['error']) == (401, error), response.text
    for method, lxm in (('GET', READ_LXM), ('POST', ERASE_LXM)):
        response = call(feedgen, method, f'/xrpc/{lxm}', token(other, feedgen, lxm), did=reader.did)
        assert (response.status_code, response.json()['error']) == (403, 'NotYourData'), response.text

    req_id = data['receipts']['rows'][0]['reqId']
    anonymous = call(feedgen, 'GET', f'/receipts/{req_id}')
    assert (anonymous.status_code, anonymous.json()['error']) == (401, 'AuthRequired')
    someone_else = call(feedgen, 'GET', f'/receipts/{req_id}', token(other, feedgen, READ_LXM))
    assert (someone_else.status_code, someone_else.json()['error']) == (403, 'NotYourReceipt')
    own = call(feedgen, 'GET', f'/receipts/{req_id}', token(reader, feedgen, READ_LXM))
    assert (own.status_code, own.json()['viewer']) == (200, reader.did)

    erased = call(feedgen, 'POST', f'/xrpc/{ERASE_LXM}', token(reader, feedgen, ERASE_LXM))
    assert erased.status_code == 200, erased.text
    counts = erased.json()['erased']
    assert (counts['follows'], counts['feedback'], counts['graph_sync']) == (1, 1, 1) and counts['receipts'] >= 1

    def the_follows_are_read_again() -> None:
        bobs_post_is_shown()
        again = read_data(feedgen, reader)
        assert again['graph_sync'] is not None and again['graph_sync']['state'] == 'synced'
        assert [row['subject'] for row in again['follows']['rows']] == [bob.did]
        assert again['feedback']['count'] == 0

    eventually(the_follows_are_read_again, timeout=60, retry=RETRY_XRPC)
