"""latest: every indexed post, newest first. The transparent baseline every other feed is compared to."""

from __future__ import annotations

from feedgen.algorithm import Algorithm, FeedRequest, Page
from feedgen.pagination import keyset_page
from feedgen.store import Post, visible_posts


class Latest(Algorithm):
    name = 'latest'
    display_name = 'Latest'
    description = 'Every post this feed generator has indexed, newest first. Nothing is filtered or ranked.'
    ranking = (
        'Newest first by the time the post was made (its createdAt, capped at the moment the network saw it, '
        'so a post cannot claim a future date to stay on top).'
    )

    def page(self, request: FeedRequest) -> Page:
        query = visible_posts().select(Post.uri, Post.sort_at, Post.id)
        return keyset_page(query, request, Post.sort_at, Post.id, Post.uri, context=lambda _row: 'newest first')
