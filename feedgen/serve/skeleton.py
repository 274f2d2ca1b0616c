"""Skeleton items: a page's `Item`s as the lexicon's `app.bsky.feed.defs#skeletonFeedPost` objects.

Owns the mapping from an item's `reason` (`Reposted`, `Pinned`) to the lexicon's `skeletonReasonRepost` and
`skeletonReasonPin`, which the AppView hydrates into "Reposted by" and "Pinned" in the app.
"""

from __future__ import annotations

from typing import Any

from feedgen.ranking.algorithm import Item, Pinned, Reposted

REASON_REPOST = 'app.bsky.feed.defs#skeletonReasonRepost'
REASON_PIN = 'app.bsky.feed.defs#skeletonReasonPin'


def skeleton_item(item: Item) -> dict[str, Any]:
    """`item` as a `skeletonFeedPost`: the post, its `reason` when it has one, and its `feedContext`."""
    entry: dict[str, Any] = {'post': item.post}
    if isinstance(item.reason, Reposted):
        entry['reason'] = {'$type': REASON_REPOST, 'repost': item.reason.repost}
    elif isinstance(item.reason, Pinned):
        entry['reason'] = {'$type': REASON_PIN}
    if item.context:
        entry['feedContext'] = item.context
    return entry
