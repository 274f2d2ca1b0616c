"""The package's own tests, with feedgen's pytest fixtures (`feedgen.authoring.pytest_plugin`); feedgen's suite checks
all three feeds on raw records and a capture (tests/test_richer_feeds.py in the feedgen repository)."""

from __future__ import annotations

import peewee
from feedgen_linking import POST_LENGTHS, Described, Linking, Longreads, PostLength

from feedgen.authoring import StoreBuilder, check_contract
from feedgen.ranking import FeedRequest


def test_longreads_shows_long_posts_from_its_own_table(feedgen_db: peewee.Database) -> None:
    store = StoreBuilder(feedgen_db, indexers=(POST_LENGTHS,))
    long = store.make_post('alice', 'word ' * 50)
    store.make_post('bob', 'short')

    page = Longreads(min_chars=100).page(FeedRequest(limit=10))

    assert [item.post for item in page.items] == [long]
    assert PostLength.select().count() == 2


def test_longreads_passes_the_contract(feedgen_db: peewee.Database) -> None:
    store = StoreBuilder(feedgen_db, indexers=(POST_LENGTHS,))
    for i in range(12):
        store.make_post(f'author{i % 4}', f'post number {i} ' * 20)

    assert len(check_contract(Longreads(), store).items) == 12


def test_plain_posts_link_nowhere_and_have_no_images(feedgen_store: StoreBuilder) -> None:
    feedgen_store.make_post('alice', 'no link, no image', tags=['art'])

    assert Linking().page(FeedRequest(limit=10)).items == []
    assert Described().page(FeedRequest(limit=10)).items == []
