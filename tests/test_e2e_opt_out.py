"""End to end on ../shared/atnet: an author who blocks the publisher account leaves every feed, through the AppView.

The author posts (tagged #atproto, liked, so `latest`, `topic` and `hot` all show it to a reader asking their PDS);
then blocks the feeds' publisher: the posts leave all three feeds; unblocking brings them back.
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
    find_network,
    running_feedgen,
)

pytestmark = pytest.mark.atnet
PUBLIC_FEEDS = ('latest', 'topic', 'hot')
HOT_SECONDS = 180.0
"""Bounds the wait for `hot`, whose scores a job remakes every minute (a loaded CI machine is slower)."""


@pytest.fixture(scope='module')
def people() -> dict[str, Account]:
    network: Network = find_network()
    return {name: create_account(network, name) for name in ('publisher', 'author', 'reader', 'fan')}


@pytest.fixture(scope='module')
def feedgen(people: dict[str, Account], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feedgen]:
    yield from running_feedgen(find_network(), people['publisher'], tmp_path_factory.mktemp('opt-out'))


def shown(reader: Account, feedgen: Feedgen, author: Account) -> dict[str, list[str]]:
    """The author's posts in each public feed, as the reader's PDS and the AppView serve them."""
    return {
        rkey: [
            item.post.uri
            for item in feed_through_pds(reader, feedgen.feed_uri(rkey))
            if item.post.author.did == author.did
        ]
        for rkey in PUBLIC_FEEDS
    }


def test_blocking_the_publisher_takes_an_authors_posts_out_of_every_feed_and_unblocking_brings_them_back(
    feedgen: Feedgen, people: dict[str, Account]
) -> None:
    author, reader, fan, publisher = (people[name] for name in ('author', 'reader', 'fan', 'publisher'))
    post = author.post('opting out soon #atproto', tags=['atproto'])
    fan.like(post)
    everywhere = {rkey: [post.uri] for rkey in PUBLIC_FEEDS}
    nowhere: dict[str, list[str]] = {rkey: [] for rkey in PUBLIC_FEEDS}
    eventually(lambda: _expect(shown(reader, feedgen, author), everywhere), HOT_SECONDS, RETRY_XRPC)

    block = author.block(publisher)
    eventually(lambda: _expect(shown(reader, feedgen, author), nowhere), retry=RETRY_XRPC)
    explained = feedgen.explain('latest', post.uri)
    assert explained['excludedBy']['rule'] == 'opted_out'
    assert explained['excludedBy']['value'] == block.uri

    author.unblock(block)
    eventually(lambda: _expect(shown(reader, feedgen, author), everywhere), retry=RETRY_XRPC)


def _expect(actual: dict[str, list[str]], expected: dict[str, list[str]]) -> None:
    assert actual == expected
