"""following: posts of the accounts the reader follows, newest first. A plain, honest timeline."""

from __future__ import annotations

from dataclasses import replace
from operator import attrgetter
from typing import Any

import peewee

from feedgen.ranking import (
    MAX_LIMIT,
    Actor,
    Algorithm,
    FeedRequest,
    Follow,
    Item,
    Page,
    Post,
    Prepared,
    Stream,
    marker,
    visible_posts,
)

SCAN_ROWS = 2000
"""How many of the newest posts below the cursor a page walks for followed authors before seeking them one by one."""
_VIEWER = marker('viewer')


def followed_posts(viewer: str | None) -> peewee.ModelSelect:
    """Visible posts whose author `viewer` follows.

    `author IN (follows)` lets the database seek the `(author, sort_at, id)` index once per followed account and
    stop reading an account's posts as soon as they are older than the page being filled.
    """
    follows = Follow.select(Follow.subject).where(Follow.author == viewer)
    return visible_posts().select(Post.uri, Post.sort_at, Post.id, Post.author).where(Post.author.in_(follows))


RECENT = Stream(
    visible_posts()
    .select(Post.uri, Post.author)
    .where(
        peewee.fn.EXISTS(Follow.select(peewee.SQL('1')).where(Follow.author == _VIEWER, Follow.subject == Post.author))
    ),
    Post.sort_at,
    Post.id,
    markers=(_VIEWER,),
)
"""The newest posts, walked by time, each kept when the reader follows its author (one probe of the follows index)."""
BY_AUTHOR = Stream(followed_posts(_VIEWER), Post.sort_at, Post.id, markers=(_VIEWER,))
"""The same posts, sought author by author: for readers whose followed accounts seldom post."""
_AUTHORS = [marker(f'author {n}') for n in range(MAX_LIMIT)]
HANDLES = Prepared(Actor.select(Actor.did, Actor.handle).where(Actor.did.in_(_AUTHORS)), _AUTHORS)
"""The handles of up to a page's authors; unused places hold '' (no account has that DID)."""


class Following(Algorithm):
    name = 'following'
    display_name = 'Following'
    description = 'Posts of the accounts you follow, newest first, and nothing else.'
    ranking = (
        'Newest first by the time the post was made (createdAt, capped at the moment the network saw it); '
        'only posts whose author you follow (read from your PDS when you first open a feed, then kept up to date '
        'from the firehose).'
    )
    personalized = True

    def page(self, request: FeedRequest) -> Page:
        # Most readers follow accounts that post often: walking the newest posts and keeping the followed ones fills
        # a page in a few hundred rows. Only when SCAN_ROWS rows do not, seek the followed accounts one by one.
        viewer = (request.viewer,)
        page = RECENT.bounded_page(request, Post.uri, SCAN_ROWS, context=attrgetter('author'), values=viewer)
        if page is None:
            page = BY_AUTHOR.page(request, Post.uri, context=attrgetter('author'), values=viewer)
        # The context holds each post's author so far; name the authors by handle, in one query for the page.
        authors = list({item.context for item in page.items})
        handles = dict(HANDLES.run(*authors, *[''] * (MAX_LIMIT - len(authors)))) if authors else {}
        items = [Item(item.post, _reason(handles.get(item.context))) for item in page.items]
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
