"""Exclusions: which rule leaves a post out of a feed, shared by every feed or the feed's own.

Owns `shared_exclusion` (a post not in the store, and a hidden post, with the reason it is hidden), which `/explain`
asks before the feed's own rules: every algorithm reads only visible, indexed posts, so these rules hold for all of
them. And `feed_exclusion`, which asks the algorithm (`Algorithm.why_not`) and answers `unexplained` when it does not
say, or when the feed is personalized and no reader is named: its rules depend on whom it ranks for, and a reason
given for nobody would be wrong. Reads the store, never writes it.
"""

from __future__ import annotations

from feedgen.ranking.algorithm import Algorithm, Exclusion, FeedRequest
from feedgen.store.models import Actor, Post, PublisherBlock

UNEXPLAINED = Exclusion('unexplained', "it does not pass the feed's rules (its algorithm does not say which)")
NO_READER = Exclusion(
    'unexplained',
    'the feed is personalized: which of its rules leaves a post out depends on the reader, and none is named',
)
NOT_INDEXED = Exclusion(
    'not_indexed',
    'it is not in the store: never indexed (made before the service started, or not on its relay) or deleted',
)


def shared_exclusion(uri: str) -> tuple[Post | None, Exclusion | None]:
    """The post at `uri` (None when not in the store) and the rule every feed shares that leaves it out, if any."""
    post: Post | None = Post.get_or_none(Post.uri == uri)
    if post is None:
        return None, NOT_INDEXED
    if not post.hidden:
        return post, None
    block = PublisherBlock.select(PublisherBlock.uri).where(PublisherBlock.author == post.author).first()
    if block is not None:
        message = 'its author blocks the publisher account, which opts their posts out of every feed here'
        return post, Exclusion('opted_out', message, block.uri)
    actor = Actor.get_or_none(Actor.did == post.author)
    status = actor.status if actor is not None else 'inactive'
    return post, Exclusion('account_inactive', f"its author's account is {status}", status)


def feed_exclusion(algorithm: Algorithm, post: Post, request: FeedRequest) -> Exclusion:
    """The rule of `algorithm` that leaves the indexed, visible `post` out of its feed for `request`, or `unexplained`
    (`UNEXPLAINED`; `NO_READER` for a personalized feed asked without a reader)."""
    if algorithm.personalized and request.viewer is None:
        return NO_READER
    return algorithm.why_not(post, request) or UNEXPLAINED
