"""End to end on Bluesky's own servers (../shared/atnet): `following` with a followed account's repost and a pin.

The AppView hydrates the skeleton's `skeletonReasonRepost` into "Reposted by" (a `ReasonRepost` naming the reposter)
and `skeletonReasonPin` into a pinned post (a `ReasonPin`), as Bluesky's app shows them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from atproto import models

from tests.atnet import (
    FEEDS_CONFIG,
    RETRY_XRPC,
    Account,
    Feedgen,
    Network,
    create_account,
    eventually,
    feed_through_pds,
    running_feedgen,
)

pytestmark = pytest.mark.atnet


@pytest.fixture(scope='module')
def people(network: Network) -> dict[str, Account]:
    """A reader who follows alice (not bob), and the feeds' publisher."""
    people = {name: create_account(network, name) for name in ('publisher', 'reader', 'alice', 'bob')}
    people['reader'].follow(people['alice'])
    return people


@pytest.fixture(scope='module')
def pinned(people: dict[str, Account]) -> models.AppBskyFeedPost.CreateRecordResponse:
    return people['publisher'].post('Welcome: what this feed shows and how to leave it')


@pytest.fixture(scope='module')
def feedgen(
    network: Network,
    people: dict[str, Account],
    pinned: models.AppBskyFeedPost.CreateRecordResponse,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Feedgen]:
    config = FEEDS_CONFIG.replace("algorithm = 'following'\n", f"algorithm = 'following'\npin = ['{pinned.uri}']\n")
    assert 'pin =' in config
    folder = tmp_path_factory.mktemp('reposts')
    yield from running_feedgen(network, people['publisher'], folder, feeds_config=config)


def test_following_shows_a_followed_accounts_repost_named_and_the_pin_on_top(
    feedgen: Feedgen, people: dict[str, Account], pinned: models.AppBskyFeedPost.CreateRecordResponse
) -> None:
    reader, alice, bob = people['reader'], people['alice'], people['bob']
    by_bob = bob.post('b1: bob, whom the reader does not follow')
    by_alice = alice.post('a1: alice')
    repost = alice.repost(by_bob)

    def the_feed_shows_them() -> None:
        feed = feed_through_pds(reader, feedgen.feed_uri('following'))
        assert [item.post.uri for item in feed] == [pinned.uri, by_bob.uri, by_alice.uri]
        assert isinstance(feed[0].reason, models.AppBskyFeedDefs.ReasonPin)
        reason = feed[1].reason
        assert isinstance(reason, models.AppBskyFeedDefs.ReasonRepost)
        assert (reason.by.did, reason.by.handle, reason.uri) == (alice.did, alice.handle, repost.uri)
        assert feed[1].post.author.did == bob.did
        assert feed[1].feed_context == f'reposted by @{alice.handle}, whom you follow'
        assert feed[2].reason is None

    eventually(the_feed_shows_them, retry=RETRY_XRPC)
