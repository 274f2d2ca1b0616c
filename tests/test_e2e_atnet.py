"""End to end on Bluesky's own servers (../shared/atnet): publish, ingest the live firehose, read through the AppView.

A `feedgen run` subprocess ingests the local PDS's firehose and serves; `feedgen publish` writes the feed records;
accounts post, like, follow and delete; then `app.bsky.feed.getFeed` asked of each viewer's PDS (which mints the
service JWT; the AppView calls the generator and hydrates) returns the posts in the algorithm's order. The service is
a did:web served from `/.well-known/did.json`, and, in the last test, a did:plc registered at the local PLC.
Auth refusals are checked with real tokens minted by the PDS (`com.atproto.server.getServiceAuth`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from feedgen.serve.auth import FEED_SKELETON_LXM
from tests.atnet import (
    RETRY_XRPC,
    Account,
    Feedgen,
    Network,
    create_account,
    eventually,
    feed_through_pds,
    free_port,
    register_plc_service,
    running_feedgen,
)

pytestmark = pytest.mark.atnet


@pytest.fixture(scope='module')
def people(network: Network) -> dict[str, Account]:
    """Two viewers (alice follows bob; carol follows dave and eve), three authors, and the feeds' publisher."""
    people = {name: create_account(network, name) for name in ('publisher', 'alice', 'carol', 'bob', 'dave', 'eve')}
    people['alice'].follow(people['bob'])
    people['carol'].follow(people['dave'])
    people['carol'].follow(people['eve'])
    return people


@pytest.fixture(scope='module')
def feedgen(
    network: Network, people: dict[str, Account], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    yield from running_feedgen(network, people['publisher'], tmp_path_factory.mktemp('did-web'))


def ours(uris: list[str], people: dict[str, Account]) -> list[str]:
    """The posts of this module's accounts, in the feed's order (`latest` also has other tests' posts)."""
    dids = {account.did for account in people.values()}
    return [uri for uri in uris if uri.split('/')[2] in dids]


def pds_feed(viewer: Account, feedgen: Feedgen, rkey: str) -> list[str]:
    return [item.post.uri for item in feed_through_pds(viewer, feedgen.feed_uri(rkey))]


def test_the_appview_finds_the_published_generator_online_and_valid(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    assert feedgen.settings.service_did == f'did:web:localhost%3A{feedgen.port}'
    for rkey in ('latest', 'following'):
        params = {'feed': feedgen.feed_uri(rkey)}
        info = eventually(lambda p=params: people['alice'].client.app.bsky.feed.get_feed_generator(p), retry=RETRY_XRPC)
        assert (info.is_online, info.is_valid) == (True, True)
        assert info.view.did == feedgen.settings.service_did
        assert info.view.creator.did == people['publisher'].did
        assert 'Source:' in info.view.description and 'version' in info.view.description


def test_viewers_read_latest_and_their_own_following_hydrated_through_their_pds(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    alice, carol, bob, dave, eve = (people[name] for name in ('alice', 'carol', 'bob', 'dave', 'eve'))
    b1 = bob.post('b1: first from bob')
    d1 = dave.post('d1: dave here')
    e1 = eve.post('e1: eve says hi')
    b2 = bob.post('b2: bob again')
    a1 = alice.post('a1: alice posts too')
    e2 = eve.post('e2: eve again')
    carol.like(b1)
    alice.like(d1)
    alice.like(e2)
    carol.like(e2)
    latest = [e2.uri, a1.uri, b2.uri, e1.uri, d1.uri, b1.uri]

    def everyone_sees_the_posts() -> None:
        assert ours(pds_feed(alice, feedgen, 'latest'), people) == latest
        assert ours(pds_feed(carol, feedgen, 'latest'), people) == latest
        assert pds_feed(alice, feedgen, 'following') == [b2.uri, b1.uri]
        assert pds_feed(carol, feedgen, 'following') == [e2.uri, e1.uri, d1.uri]

    eventually(everyone_sees_the_posts, retry=RETRY_XRPC)

    hydrated = {item.post.uri: item for item in feed_through_pds(carol, feedgen.feed_uri('following'))}
    assert hydrated[e2.uri].post.author.handle == eve.handle
    assert hydrated[e2.uri].post.record.text == 'e2: eve again'
    assert hydrated[e2.uri].feed_context == f'you follow @{eve.handle}'
    eventually(lambda: _likes(carol, feedgen, {e2.uri: 2, d1.uri: 1, e1.uri: 0}), retry=RETRY_XRPC)

    bob.delete(b1)

    def b1_is_gone() -> None:
        token = alice.service_token(feedgen.settings.service_did, FEED_SKELETON_LXM)
        skeleton = [item['post'] for item in feedgen.skeleton('following', token).json()['feed']]
        assert skeleton == [b2.uri]
        assert b1.uri not in [item['post'] for item in feedgen.skeleton('latest', limit=100).json()['feed']]
        assert pds_feed(alice, feedgen, 'following') == [b2.uri]
        assert ours(pds_feed(carol, feedgen, 'latest'), people) == latest[:-1]

    eventually(b1_is_gone, retry=RETRY_XRPC)


def _likes(viewer: Account, feedgen: Feedgen, expected: dict[str, int]) -> None:
    counts = {item.post.uri: item.post.like_count for item in feed_through_pds(viewer, feedgen.feed_uri('following'))}
    assert {uri: counts.get(uri) for uri in expected} == expected


def test_tokens_minted_by_the_pds_are_checked_for_audience_method_signature_and_expiry(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    alice, service = people['alice'], feedgen.settings.service_did
    valid = alice.service_token(service, FEED_SKELETON_LXM)
    assert feedgen.skeleton('following', valid).status_code == 200
    assert feedgen.skeleton('latest').status_code == 200
    anonymous = feedgen.skeleton('following')
    assert (anonymous.status_code, anonymous.json()['error']) == (401, 'AuthRequired')

    header, payload, signature = valid.split('.')
    tampered = f'{header}.{payload}.{signature[:-4]}{"AAAA" if signature[-4:] != "AAAA" else "BBBB"}'
    # The PDS refuses an exp already past when it mints: 5 s leaves a loaded machine's slow request time to arrive.
    expires = int(time.time()) + 5
    short_lived = alice.service_token(service, FEED_SKELETON_LXM, exp=expires)
    refused = {
        'BadJwtAudience': alice.service_token('did:web:elsewhere.test', FEED_SKELETON_LXM),
        'BadJwtLexiconMethod': alice.service_token(service, 'app.bsky.feed.getTimeline'),
        'BadJwtSignature': tampered,
    }
    for error, token in refused.items():
        for rkey in ('latest', 'following'):
            response = feedgen.skeleton(rkey, token)
            assert (response.status_code, response.json()['error']) == (401, error), response.json()
    while time.time() <= expires:
        time.sleep(0.1)
    for rkey in ('latest', 'following'):
        response = feedgen.skeleton(rkey, short_lived)
        assert (response.status_code, response.json()['error']) == (401, 'JwtExpired')


def test_a_did_plc_service_is_found_through_the_plc_and_serves_through_the_appview(
    network: Network, people: dict[str, Account], tmp_path: Path
) -> None:
    publisher = create_account(network, 'plcpub')
    port = free_port()
    service_did = register_plc_service(network, f'http://localhost:{port}')
    assert service_did.startswith('did:plc:')
    marker = people['bob'].post('posted for the did:plc generator')
    for feedgen in running_feedgen(network, publisher, tmp_path / 'did-plc', service_did=service_did, port=port):
        assert feedgen.settings.service_did == service_did
        feedgen.wait_indexed(marker.uri)
        info = eventually(
            lambda f=feedgen: people['alice'].client.app.bsky.feed.get_feed_generator({'feed': f.feed_uri('latest')}),
            retry=RETRY_XRPC,
        )
        assert (info.is_online, info.is_valid, info.view.did) == (True, True, service_did)

        def served(f: Feedgen = feedgen) -> None:
            assert pds_feed(people['alice'], f, 'latest')[:1] == [marker.uri]
            assert pds_feed(people['alice'], f, 'following')[:1] == [marker.uri]

        eventually(served, retry=RETRY_XRPC)
