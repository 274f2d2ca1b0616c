"""following: posts of the accounts the reader follows, newest first. A plain, honest timeline."""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter
from typing import Any

import peewee

from feedgen.algorithm import Algorithm, FeedRequest, Page
from feedgen.pagination import filtered_keyset_page, keyset_page
from feedgen.store import Actor, Follow, Post, visible_posts

SCAN_ROWS = 2000
"""How many of the newest posts below the cursor a page walks for followed authors before seeking them one by one."""


def followed_posts(viewer: str | None) -> peewee.ModelSelect:
    """Visible posts whose author `viewer` follows.

    `author IN (follows)` lets the database seek the `(author, sort_at, id)` index once per followed account and
    stop reading an account's posts as soon as they are older than the page being filled.
    """
    follows = Follow.select(Follow.subject).where(Follow.author == viewer)
    return visible_posts().select(Post.uri, Post.sort_at, Post.id, Post.author).where(Post.author.in_(follows))


class Following(Algorithm):
    name = 'following'
    display_name = 'Following'
    description = 'Posts of the accounts you follow, newest first, and nothing else.'
    ranking = (
        'Newest first by the time the post was made (createdAt, capped at the moment the network saw it); '
        'only posts whose author you follow, as the firehose has shown this feed generator.'
    )
    personalized = True

    def page(self, request: FeedRequest) -> Page:
        # Most readers follow accounts that post often: walking the newest posts and keeping the followed ones fills
        # a page in a few hundred rows. Only when SCAN_ROWS rows do not, seek the followed accounts one by one.
        followed = Follow.select(Follow.subject).where(Follow.author == request.viewer)
        follows = {did for (did,) in Follow._meta.database.execute(followed)}  # straight off the cursor: 500 rows
        recent = visible_posts().select(Post.uri, Post.sort_at, Post.id, Post.author)
        page = filtered_keyset_page(
            recent, request, Post.sort_at, Post.id, Post.uri, lambda row: row.author in follows, SCAN_ROWS,
            context=attrgetter('author'),
        )  # fmt: skip
        if page is None:
            query = followed_posts(request.viewer)
            page = keyset_page(query, request, Post.sort_at, Post.id, Post.uri, context=attrgetter('author'))
        # The context holds each post's author so far; name the authors by handle, in one query for the page.
        authors = {item.context for item in page.items}
        handles = dict(Actor.select(Actor.did, Actor.handle).where(Actor.did.in_(authors)).tuples()) if authors else {}
        items = [replace(item, context=_reason(handles.get(item.context))) for item in page.items]
        return replace(page, items=items)

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = (
            visible_posts()
            .select(Post.author, Post.sort_at, Follow.uri.alias('follow'))
            .join(Follow, on=(Follow.subject == Post.author) & (Follow.author == request.viewer))
            .where(Post.uri == post)
            .objects()
            .first()
        )
        if row is None:
            return None
        return {'filters': {'author followed by the reader': row.follow}, 'author': row.author, 'sort_at': row.sort_at}


def _reason(handle: str | None) -> str:
    return f'you follow @{handle}' if handle else 'from an account you follow'
