"""End to end on Bluesky's own servers (../shared/atnet): a reader's day one, with a new deployment's defaults.

A world exists before the service: accounts, follows, posts and likes. Then `feedgen run` starts on a fresh store
with its default settings (history backfill on, each reader's follows read from their PDS on first sight), and each
reader opens the feeds through their own PDS (`app.bsky.feed.getFeed`, the AppView hydrating): `latest` has the
posts from before the start; `following` shows the followed accounts' posts from before the start and after it,
newest first, and no one else's; `network` and `quiet` rank with the follows made before the start; two readers
with different follows see different feeds; a follow deleted after the start stops counting.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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

pytestmark = pytest.mark.atnet
NAMES = ('publisher', 'alice', 'carol', 'bob', 'dave', 'eve', 'stranger')


@pytest.fixture(scope='module')
def world(network: Network) -> dict[str, object]:
    """Made before the service exists. alice follows bob (who posts a lot) and eve (who posts once); carol follows
    dave. bob and eve like the stranger's post, bob likes dave's; dave likes eve's."""
    people = {name: create_account(network, name) for name in NAMES}
    alice, carol, bob, dave, eve, stranger = (people[name] for name in NAMES[1:])
    world: dict[str, object] = dict(people)
    world['alice->bob'] = alice.follow(bob)
    alice.follow(eve)
    world['carol->dave'] = carol.follow(dave)
    world['e0'] = eve.post('e0: eve, who rarely posts')
    world['bob posts'] = [bob.post(f'b{n}: bob, who posts a lot') for n in range(4)]
    world['d0'] = dave.post('d0: dave before the start')
    world['s0'] = stranger.post('s0: nobody follows the stranger')
    bob.like(world['s0'])  # type: ignore[arg-type]
    eve.like(world['s0'])  # type: ignore[arg-type]
    world['bob likes d0'] = bob.like(world['d0'])  # type: ignore[arg-type]
    dave.like(world['e0'])  # type: ignore[arg-type]
    return world


@pytest.fixture(scope='module')
def feedgen(network: Network, world: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feedgen]:
    publisher = world['publisher']
    assert isinstance(publisher, Account)
    # A fresh store and the default settings: what a new deployment runs.
    yield from running_feedgen(network, publisher, tmp_path_factory.mktemp('day-one'), backfill=True)


def uris(viewer: object, feedgen: Feedgen, rkey: str) -> list[str]:
    assert isinstance(viewer, Account)
    return [item.post.uri for item in feed_through_pds(viewer, feedgen.feed_uri(rkey))]


def test_a_reader_s_feeds_are_full_from_their_first_request(feedgen: Feedgen, world: dict[str, object]) -> None:
    alice, carol, bob, stranger = world['alice'], world['carol'], world['bob'], world['stranger']
    e0, d0, s0 = (world[key].uri for key in ('e0', 'd0', 's0'))  # type: ignore[attr-defined]
    bob_posts = [post.uri for post in world['bob posts']]  # type: ignore[attr-defined]

    def latest_has_the_past() -> None:
        assert {e0, d0, s0, *bob_posts} <= set(uris(alice, feedgen, 'latest'))

    eventually(latest_has_the_past, retry=RETRY_XRPC)

    b_after = bob.post('b-after: bob after the start').uri  # type: ignore[attr-defined]
    stranger.post('s-after: still nobody follows the stranger')  # type: ignore[attr-defined]

    def each_reader_sees_their_own_world() -> None:
        assert uris(alice, feedgen, 'following') == [b_after, *reversed(bob_posts), e0]
        assert uris(carol, feedgen, 'following') == [d0]
        # network: what the accounts you follow liked; two of alice's liked s0, one liked d0.
        assert uris(alice, feedgen, 'network') == [s0, d0]
        assert uris(carol, feedgen, 'network') == [e0]
        # quiet: eve's one post outranks every post of bob, who posted five times; bob's newest first.
        assert uris(alice, feedgen, 'quiet') == [e0, b_after, *reversed(bob_posts)]
        assert uris(carol, feedgen, 'quiet') == [d0]

    eventually(each_reader_sees_their_own_world, retry=RETRY_XRPC)


def test_a_follow_made_before_the_start_and_deleted_after_it_stops_counting(
    feedgen: Feedgen, world: dict[str, object]
) -> None:
    carol, dave = world['carol'], world['dave']
    d0 = world['d0'].uri  # type: ignore[attr-defined]

    def carol_follows_dave() -> None:
        assert uris(carol, feedgen, 'following') == [d0]

    eventually(carol_follows_dave, retry=RETRY_XRPC)
    carol.unfollow(world['carol->dave'])  # type: ignore[attr-defined]
    dave.post('d1: dave once carol stopped following him')  # type: ignore[attr-defined]

    def carol_follows_no_one() -> None:
        assert uris(carol, feedgen, 'following') == []

    eventually(carol_follows_no_one, retry=RETRY_XRPC)


def test_a_like_made_before_the_start_and_deleted_after_it_stops_counting(
    feedgen: Feedgen, world: dict[str, object]
) -> None:
    # The serving workers keep the votes of the accounts alice follows once her network feed was read; bob's unlike is
    # a deletion they learn of from the store, and d0 (liked by bob alone of hers) leaves her feed.
    alice, bob = world['alice'], world['bob']
    d0, s0 = world['d0'].uri, world['s0'].uri  # type: ignore[attr-defined]

    def alice_sees_bob_s_like() -> None:
        assert uris(alice, feedgen, 'network') == [s0, d0]

    eventually(alice_sees_bob_s_like, retry=RETRY_XRPC)
    for _ in range(4):  # read by every serving worker, most likely
        alice_sees_bob_s_like()
    bob.unlike(world['bob likes d0'])  # type: ignore[attr-defined]

    def d0_has_left() -> None:
        assert uris(alice, feedgen, 'network') == [s0]

    eventually(d0_has_left, retry=RETRY_XRPC)
