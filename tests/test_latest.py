"""algorithms/latest: newest first, with a trace of what each page read and an explanation of every item."""

from __future__ import annotations

import peewee
from feedgen_algorithms.latest import Latest

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import check_contract
from feedgen.ranking.algorithm import FeedRequest


def test_latest_traces_its_pages_and_explains_its_items(db: peewee.Database) -> None:
    store = StoreBuilder(db)
    posts = [store.make_post('ana', f'post {n}', at=1_800_000_000 + n) for n in range(5)]
    latest = Latest()
    page = latest.page(FeedRequest(limit=3))
    assert [item.post for item in page.items] == posts[:1:-1]
    assert page.trace == {'candidates': 4, 'filters': ["the author's account is active"], 'order': 'newest first'}
    explanation = latest.explain(posts[0], FeedRequest(limit=1))
    assert explanation['sort_at'] == explanation['created_at'] == 1_800_000_000_000
    assert latest.explain('at://did:plc:ana/app.bsky.feed.post/never', FeedRequest(limit=1)) is None
    check_contract(latest, store)
