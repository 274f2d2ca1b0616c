"""End to end on Bluesky's own servers (../shared/atnet): a new deployment's feeds start with the recent past.

Accounts post before `feedgen run` starts on a fresh store; its first start backfills from the PDS's whole window
(`cursor=0`), and `latest`, read through a reader's PDS (`app.bsky.feed.getFeed`, hydrated by the AppView), shows the
posts made before the start and those made after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
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


@pytest.fixture(scope='module')
def people(network: Network) -> dict[str, Account]:
    return {name: create_account(network, name) for name in ('publisher', 'reader', 'author')}


@pytest.fixture(scope='module')
def before(people: dict[str, Account]) -> list[str]:
    """Posts made before the generator exists, oldest first."""
    return [people['author'].post(f'before the start {n}').uri for n in range(3)]


@pytest.fixture(scope='module')
def feedgen(
    network: Network, people: dict[str, Account], before: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    yield from running_feedgen(network, people['publisher'], tmp_path_factory.mktemp('backfill'), backfill=True)


def test_latest_shows_posts_made_before_the_first_start_and_after_it(
    feedgen: Feedgen, people: dict[str, Account], before: list[str]
) -> None:
    after = people['author'].post('after the start').uri
    author = people['author'].did

    def latest_has_both() -> None:
        feed = feed_through_pds(people['reader'], feedgen.feed_uri('latest'))
        assert [item.post.uri for item in feed if item.post.author.did == author] == [after, *before[::-1]]

    eventually(latest_has_both, retry=RETRY_XRPC)

    def live() -> None:
        assert httpx.get(feedgen.url + '/xrpc/_health', timeout=10).json()['status'] == 'ok'

    eventually(live, retry=(httpx.HTTPError,))
    log = Path(feedgen.log).read_text()
    assert 'backfill: the store is empty; ingesting the last 24 h' in log
    assert 'subscribeRepos?cursor=0' in log
    assert 'backfill: finished, ingest is live' in log
