"""Exclusions every feed shares: a post not in the store, and a hidden post, with the reason it is hidden.

Owns `shared_exclusion`, which `/explain` asks before the feed's own `Algorithm.why_not`: every algorithm reads only
visible, indexed posts, so these rules hold for all of them. Reads the store, never writes it.
"""

from __future__ import annotations

from feedgen.ranking.algorithm import Exclusion
from feedgen.store.models import Actor, Post, PublisherBlock

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
