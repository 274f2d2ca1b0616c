"""latest: every indexed post, newest first. The transparent baseline every other feed is compared to."""

from __future__ import annotations

from typing import Any

from feedgen.ranking import Algorithm, FeedRequest, Page, Post, Stream, visible_posts

ORDER = 'newest first'
FILTERS = ["the author's account is active"]
POSTS = Stream(visible_posts().select(Post.uri), Post.sort_at, Post.id)


class Latest(Algorithm):
    name = 'latest'
    display_name = 'Latest'
    description = 'Every post this feed generator has indexed, newest first. Nothing is filtered or ranked.'
    ranking = (
        'Newest first by the time the post was made (its createdAt, capped at the moment the network saw it, '
        'so a post cannot claim a future date to stay on top).'
    )

    def page(self, request: FeedRequest) -> Page:
        page = POSTS.page(request, Post.uri, context=lambda _row: ORDER)
        page.trace.update(filters=FILTERS, order=ORDER)
        return page

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = visible_posts().where(Post.uri == post).first()
        if row is None:
            return None
        return {'filters': FILTERS, 'order': ORDER, 'sort_at': row.sort_at, 'created_at': row.created_at}
