"""Small synthetic worlds for ranking tests: posts with engagement made through the indexer, reader feedback."""

from __future__ import annotations

from feedgen.authoring.builder import StoreBuilder
from feedgen.store.models import Interaction

NOW_S = 1_800_000_000.0
"""The moment the ranking tests rank as of (a fixed one: 2027-01-15)."""
NOW_MS = int(NOW_S * 1000)
HOUR_MS = 3_600_000
READER = 'did:plc:reader'


def engaged(
    store: StoreBuilder,
    author: str,
    age_hours: float,
    likes: int = 0,
    reposts: int = 0,
    replies: int = 0,
    now_s: float = NOW_S,
    **post: object,
) -> str:
    """A post made `age_hours` before `now_s` with that many likes, reposts and replies, each by another account."""
    uri = store.make_post(author, at=now_s - age_hours * 3600, **post)
    for n in range(likes):
        store.make_like(f'liker{n}', uri)
    for n in range(reposts):
        store.make_repost(f'reposter{n}', uri)
    for n in range(replies):
        store.make_post(f'replier{n}', 'a reply', reply_to=uri, at=now_s - 60)
    return uri


def feedback(viewer: str, event: str, post: str, at_ms: int = NOW_MS - 1000) -> None:
    """Stores one piece of reader feedback, as `feedgen.serve.interactions` does."""
    author = post.removeprefix('at://').split('/')[0]
    Interaction.insert(viewer=viewer, event=event, post=post, author=author, at=at_ms).on_conflict_replace().execute()


def reader_following(store: StoreBuilder, *accounts: str) -> StoreBuilder:
    """`store` where `READER` has followed `accounts` since long before NOW."""
    for account in accounts:
        store.make_follow(READER, account, at=NOW_S - 100 * 3600)
    return store
