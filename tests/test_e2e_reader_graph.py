"""End to end on Bluesky's own servers (../shared/atnet): a reader's follows made before the service started.

Accounts follow each other first; then `feedgen run` starts on a fresh store, reading the firehose from its live
tip (no history), so the follows can only come from each reader's own repository, read the first time the reader
asks for a feed. Followed accounts post after the start; `following`, read through each reader's PDS (the AppView
hydrating), shows exactly their posts. A follow deleted after the start stops counting. A did:web reader whose PDS
(a fake one on loopback) does not answer gets a first page at once, saying the follows are loading, and the full
feed once the PDS answers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest

from feedgen.serve.auth import FEED_SKELETON_LXM
from feedgen.serve.reader_graph import HEADER
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
from tests.fake_pds import FakePds, document, follow_uri, running_pds, web_did
from tests.jwts import SigningKey, service_claims

pytestmark = pytest.mark.atnet
NAMES = ('publisher', 'alice', 'carol', 'bob', 'dave', 'eve', 'stranger')


@pytest.fixture(scope='module')
def people(network: Network) -> dict[str, Account]:
    """alice follows bob and eve, carol follows dave and eve: all before the service exists."""
    people = {name: create_account(network, name) for name in NAMES}
    alice, carol, bob, dave, eve = (people[name] for name in ('alice', 'carol', 'bob', 'dave', 'eve'))
    people['alice->eve'] = alice.follow(eve)  # type: ignore[assignment]
    alice.follow(bob)
    carol.follow(dave)
    carol.follow(eve)
    return people


@pytest.fixture(scope='module')
def feedgen(
    network: Network, people: dict[str, Account], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    env = {'FEEDGEN_BACKFILL_HOURS': '0', 'FEEDGEN_GRAPH_RETRY_SECONDS': '1'}
    folder = tmp_path_factory.mktemp('reader-graph')
    for feedgen in running_feedgen(network, people['publisher'], folder, env=env, from_start=False):
        _wait_until_live(feedgen, people['stranger'])
        yield feedgen


def _wait_until_live(feedgen: Feedgen, account: Account) -> None:
    """Posts until `latest` shows a post: from then on, ingest reads every new event."""

    def one_post_arrives() -> None:
        post = account.post('is ingest live yet?')

        def shown() -> None:
            assert post.uri in [item['post'] for item in feedgen.skeleton('latest', limit=100).json()['feed']]

        eventually(shown, timeout=5)

    eventually(one_post_arrives, timeout=120)


def pds_feed(viewer: Account, feedgen: Feedgen) -> list[str]:
    return [item.post.uri for item in feed_through_pds(viewer, feedgen.feed_uri('following'))]


def follows_stored(feedgen: Feedgen, reader: Account) -> int:
    with sqlite3.connect(feedgen.settings.database, timeout=30) as conn:
        (count,) = conn.execute('SELECT COUNT(*) FROM follow WHERE author = ?', (reader.did,)).fetchone()
    return count


def test_following_shows_the_accounts_followed_before_the_start_and_no_one_else(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    alice, carol, bob, dave, eve = (people[name] for name in ('alice', 'carol', 'bob', 'dave', 'eve'))
    assert (follows_stored(feedgen, alice), follows_stored(feedgen, carol)) == (0, 0)  # the firehose never showed them
    b1 = bob.post('b1: bob after the start')
    d1 = dave.post('d1: dave after the start')
    people['stranger'].post('nobody follows the stranger')
    e1 = eve.post('e1: eve after the start')

    def each_reader_sees_their_own_follows() -> None:
        assert pds_feed(alice, feedgen) == [e1.uri, b1.uri]
        assert pds_feed(carol, feedgen) == [e1.uri, d1.uri]

    eventually(each_reader_sees_their_own_follows, retry=RETRY_XRPC)
    assert (follows_stored(feedgen, alice), follows_stored(feedgen, carol)) == (2, 2)
    status = json.loads(feedgen.command('status', '--json').stdout)
    assert status['reader_graphs']['synced'] >= 2

    alice.unfollow(people['alice->eve'])  # type: ignore[arg-type]
    e2 = eve.post('e2: eve once alice stopped following her')
    b2 = bob.post('b2: bob again')

    def the_deleted_follow_stops_counting() -> None:
        assert pds_feed(alice, feedgen) == [b2.uri, b1.uri]
        assert pds_feed(carol, feedgen) == [e2.uri, e1.uri, d1.uri]

    eventually(the_deleted_follow_stops_counting, retry=RETRY_XRPC)
    assert follows_stored(feedgen, alice) == 1


def test_a_reader_whose_pds_does_not_answer_gets_a_loading_page_then_the_full_feed(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    bob, dave = people['bob'], people['dave']
    with running_pds(FakePds(mode='hang')) as pds:
        reader, key = web_did(pds), SigningKey()
        pds.documents[reader.removeprefix('did:web:').replace('%3A', ':')] = document(reader, pds.url, key.multikey)
        pds.follows[reader] = [(follow_uri(reader, 1), bob.did), (follow_uri(reader, 2), dave.did)]
        b3 = bob.post('b3: for the did:web reader')

        def skeleton() -> httpx.Response:
            token = key.jwt(service_claims(reader, feedgen.settings.service_did, FEED_SKELETON_LXM))
            response = feedgen.skeleton('following', token, limit=100)
            assert response.status_code == 200, response.text
            return response

        first = skeleton()  # the harness's 10 s client timeout bounds the wait
        assert (first.json()['feed'], first.headers.get(HEADER)) == ([], 'loading')
        assert pds.pages == [(reader, 0)]

        pds.release.set()

        def full_feed() -> None:
            response = skeleton()
            posts = [item['post'] for item in response.json()['feed']]
            assert response.headers.get(HEADER) is None
            assert b3.uri in posts
            assert {uri.split('/')[2] for uri in posts} <= {bob.did, dave.did}

        eventually(full_feed)
