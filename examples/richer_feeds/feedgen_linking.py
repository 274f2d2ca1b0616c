"""Three feeds over feedgen's richer index: posts linking to a domain, #tag posts whose every image has alt text, and
long posts, from a plugin indexer of its own.

Made by `feedgen new-algorithm linking --package examples/richer_feeds`, then written: `Linking` and `Described` read
the built-in post index (`term_streams` with `domain_term`, `tag_term` and `alt_complete`); `Longreads` declares a
`RecordIndexer` that keeps each post's length in a table of its own (`PostLength`), which ingest fills, follows
deletes and account purges with, and prunes. See the author's guide (docs/algorithms.md) for the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.ranking import (
    Algorithm,
    CreatedRecord,
    Exclusion,
    FeedRequest,
    InvalidParams,
    Page,
    PluginTable,
    Post,
    RecordIndexer,
    Stream,
    alt_complete,
    domain_term,
    streams_page,
    tag_term,
    term_streams,
    terms_of,
    visible_posts,
)

ORDER = 'newest first'


def _words(values: tuple[str, ...], what: str) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(value.strip().lower().lstrip('#') for value in values))
    if not cleaned or not all(cleaned) or any(' ' in value for value in cleaned):
        raise InvalidParams(f'{what}: give one or more single words, got {list(values)}')
    return cleaned


@dataclass(frozen=True)
class LinkingParams:
    domains: tuple[str, ...] = ('arxiv.org',)
    """Show posts linking (a link in the text, or a link card) to any of these domains or their subdomains."""

    def __post_init__(self) -> None:
        object.__setattr__(self, 'domains', _words(self.domains, 'domains'))


class Linking(Algorithm):
    name = 'linking'
    display_name = 'Linking'
    description = 'Posts linking to the chosen sites (arxiv.org by default), newest first.'
    ranking = 'Newest first by the time the post was made.'
    Params = LinkingParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params: LinkingParams
        self.terms = [domain_term(domain) for domain in self.params.domains]
        self.streams = term_streams(self.terms, Post.uri)

    def page(self, request: FeedRequest) -> Page:
        page = streams_page(self.streams, request, context=lambda row: f'links to {self._sites()}')
        page.trace.update(filters=[f'links to {self._sites()}'], order=ORDER)
        return page

    def _sites(self) -> str:
        return ' or '.join(self.params.domains)

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = visible_posts().where(Post.uri == post).first()
        if row is None:
            return None
        terms = set(terms_of(row))
        matched = [domain for domain, term in zip(self.params.domains, self.terms, strict=True) if term in terms]
        if not matched:
            return None
        return {'filters': {'links_to': matched, 'links': row.links.split()}, 'order': ORDER, 'sort_at': row.sort_at}

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        links = post.links.split()
        return Exclusion('links', f'it links to none of {self._sites()}', links)


@dataclass(frozen=True)
class DescribedParams:
    tags: tuple[str, ...] = ('art',)
    """Show posts with any of these hashtags whose images all have alt text."""

    def __post_init__(self) -> None:
        object.__setattr__(self, 'tags', _words(self.tags, 'tags'))


class Described(Algorithm):
    name = 'described'
    display_name = 'Described'
    description = 'Posts with the chosen hashtags (#art by default) whose every image has alt text, newest first.'
    ranking = 'Newest first by the time the post was made.'
    Params = DescribedParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params: DescribedParams
        self.streams = term_streams([tag_term(tag) for tag in self.params.tags], Post.uri, where=alt_complete())

    def page(self, request: FeedRequest) -> Page:
        page = streams_page(self.streams, request, context=lambda row: 'every image described')
        page.trace.update(filters=[f'has #{" or #".join(self.params.tags)}', 'every image has alt text'], order=ORDER)
        return page

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = visible_posts().where(Post.uri == post).first()
        if row is None or not row.alt_complete:
            return None
        tags = [tag for tag in self.params.tags if tag in row.tags.split()]
        if not tags:
            return None
        images = {'images': row.image_count, 'with_alt_text': row.alt_count}
        return {'filters': {'tags': tags, 'alt_text': images}, 'order': ORDER, 'sort_at': row.sort_at}

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        if not any(tag in post.tags.split() for tag in self.params.tags):
            return Exclusion('tags', f'it has none of #{" or #".join(self.params.tags)}', post.tags.split())
        value = {'images': post.image_count, 'with_alt_text': post.alt_count}
        return Exclusion('alt_text', 'not every image has alt text (or it has no image)', value)


class PostLength(PluginTable):
    """How long a post's text is, and when the network saw the post (what `Longreads` orders by)."""

    seen_at = peewee.BigIntegerField()
    chars = peewee.IntegerField()

    class Meta:
        table_name = 'longreads_post_length'
        indexes = ((('seen_at', 'id'), False),)


def post_length(record: CreatedRecord) -> list[PostLength]:
    """The length of a post's text (a pure function of the record)."""
    text = record.record.get('text')
    if not isinstance(text, str):
        return []
    return [PostLength(seen_at=record.time_ms, chars=len(text))]


POST_LENGTHS = RecordIndexer(
    name='longreads-post-length',
    collections=frozenset({'app.bsky.feed.post'}),
    index=post_length,
    tables=(PostLength,),
)


@dataclass(frozen=True)
class LongreadsParams:
    min_chars: int = 200
    """Show posts whose text has at least this many characters."""

    def __post_init__(self) -> None:
        if self.min_chars < 1:
            raise InvalidParams(f'min_chars: must be at least 1, got {self.min_chars}')


class Longreads(Algorithm):
    name = 'longreads'
    display_name = 'Longreads'
    description = 'Posts with long texts, newest first.'
    ranking = 'Newest first by the time the network saw the post; only texts of at least `min_chars` characters.'
    Params = LongreadsParams
    indexers = (POST_LENGTHS,)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.params: LongreadsParams
        query = (
            visible_posts()
            .select(Post.uri, PostLength.chars)
            .join(PostLength, on=PostLength.uri == Post.uri)
            .where(PostLength.chars >= self.params.min_chars)
        )
        self.stream = Stream(query, PostLength.seen_at, PostLength.id)

    def page(self, request: FeedRequest) -> Page:
        page = self.stream.page(request, Post.uri, context=lambda row: f'{row.chars} characters')
        page.trace.update(filters=[f'at least {self.params.min_chars} characters'], order=ORDER)
        return page

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = PostLength.get_or_none(PostLength.uri == post)
        if row is None or row.chars < self.params.min_chars or not visible_posts().where(Post.uri == post).exists():
            return None
        return {'filters': {'chars': {'has': row.chars, 'needs': self.params.min_chars}}, 'order': ORDER}

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        row = PostLength.get_or_none(PostLength.uri == post.uri)
        chars = None if row is None else row.chars
        return Exclusion('chars', f'its text is shorter than {self.params.min_chars} characters', chars)
