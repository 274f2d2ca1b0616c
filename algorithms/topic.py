"""topic: posts matching hashtags and languages, newest first."""

from __future__ import annotations

from dataclasses import dataclass

from feedgen.algorithm import Algorithm, FeedRequest, InvalidParams, Page
from feedgen.pagination import keyset_page
from feedgen.store import Post, PostTerm


@dataclass(frozen=True)
class TopicParams:
    tags: tuple[str, ...] = ('atproto',)
    """Hashtags (without #); a post matches when it has any of them. Empty: no hashtag filter."""
    langs: tuple[str, ...] = ()
    """Language codes (`en`, `pt`); a post matches when it declares any of them. Empty: any language."""
    no_replies: bool = False
    """Leave out replies."""

    def __post_init__(self) -> None:
        object.__setattr__(self, 'tags', tuple(tag.lower().lstrip('#') for tag in self.tags))
        object.__setattr__(self, 'langs', tuple(lang.lower() for lang in self.langs))
        if any(not tag or ' ' in tag for tag in self.tags):
            raise InvalidParams('topic.tags: a hashtag must be one non-empty word')


class Topic(Algorithm):
    name = 'topic'
    display_name = 'Topic'
    description = "Posts with the feed's hashtags and in its languages, newest first."
    ranking = 'Newest first; a post is in the feed only when it has one of the hashtags and one of the languages.'
    Params = TopicParams

    def page(self, request: FeedRequest) -> Page:
        params: TopicParams = self.params
        tag_terms = [f'tag:{tag}' for tag in params.tags]
        lang_terms = [f'lang:{lang}' for lang in params.langs]
        driving = tag_terms or lang_terms
        if not driving:
            query = Post.select(Post.uri, Post.sort_at, Post.id).where(Post.hidden == False)  # noqa: E712
            return keyset_page(query, request, Post.sort_at, Post.id, Post.uri, context=self._context)
        query = (
            PostTerm.select(Post.uri, PostTerm.sort_at, PostTerm.post_id)
            .join(Post, on=Post.id == PostTerm.post_id)
            .where(PostTerm.term.in_(driving), Post.hidden == False)  # noqa: E712
        )
        if tag_terms and lang_terms:
            lang = PostTerm.alias('lang')
            query = query.where(
                lang.select(lang.post_id)
                .where(lang.term.in_(lang_terms), lang.sort_at == PostTerm.sort_at, lang.post_id == PostTerm.post_id)
                .exists()
            )
        if params.no_replies:
            query = query.where(Post.reply_parent.is_null())
        if len(driving) > 1:
            query = query.distinct()
        return keyset_page(query, request, PostTerm.sort_at, PostTerm.post_id, Post.uri, context=self._context)

    def _context(self, _row: object) -> str:
        params: TopicParams = self.params
        parts = []
        if params.tags:
            parts.append('has #' + ' or #'.join(params.tags))
        if params.langs:
            parts.append('in ' + ' or '.join(params.langs))
        return ', '.join(parts) + ', newest first' if parts else 'newest first'
