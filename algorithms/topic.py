"""topic: posts matching hashtags, keywords and languages, optionally without replies or with media only; newest first.

Every page is an index range scan. Hashtags and languages walk the `PostTerm` index of each term
(`feedgen.ranking.filters`), newest first; replies and media are tested on the rows walked.

Keywords are indexed, not scanned for: a feed with keywords has a job (every `KEYWORD_JOB_SECONDS`) that
tests each newly indexed post once against all the feed's filters and records the matches in its own index
(`feedgen.ranking.keyword_matches`); its pages walk that index. Why not scan candidates newest first with a
budget: a page of a rare keyword would then come back empty (with a cursor, to go on) or read without bound, and every
reader's page would test the same posts again. Why not index every word at ingest: that multiplies the rows
the single writer inserts (a post has ~20 words, against ~2 tag and language terms) for the few feeds that
filter by keywords. The cost of the job: a post reaches a keyword feed up to `KEYWORD_JOB_SECONDS` later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from feedgen.ranking import (
    Algorithm,
    Exclusion,
    FeedRequest,
    FilterParams,
    InvalidParams,
    Job,
    Page,
    Post,
    Stream,
    entries_stream,
    filter_exclusion,
    filtered_streams,
    has_entry,
    index_matches,
    match_filters,
    streams_page,
    visible_posts,
)

KEYWORD_JOB_SECONDS = 10.0


@dataclass(frozen=True)
class TopicParams(FilterParams):
    tags: tuple[str, ...] = ('atproto',)
    """Hashtags (without #); a post matches when it has any of them. Empty: no hashtag filter."""
    keywords: tuple[str, ...] = ()
    """Words or phrases; a post matches when its text has any of them as whole words, in any case."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, 'keywords', tuple(keyword.strip() for keyword in self.keywords))
        if any(not keyword for keyword in self.keywords):
            raise InvalidParams('keywords: a keyword must not be empty')

    def keywords_in(self, text: str) -> list[str]:
        """The keywords `text` has as whole words (any case), lower-cased."""
        alternatives = '|'.join(re.escape(keyword) for keyword in self.keywords)
        found = re.findall(rf'(?<!\w)(?:{alternatives})(?!\w)', text, re.IGNORECASE) if self.keywords else []
        return sorted({word.lower() for word in found})


class Topic(Algorithm):
    name = 'topic'
    display_name = 'Topic'
    description = "Posts matching the feed's hashtags, keywords and languages, newest first."
    ranking = (
        'Newest first. A post is in the feed only when it passes every filter the feed sets: one of the '
        'hashtags, one of the keywords (whole words, any case), one of the languages, not a reply, with media.'
    )
    Params = TopicParams

    @cached_property
    def streams(self) -> list[Stream]:
        """The index ranges every page walks: built once, so their SQL is compiled once."""
        params: TopicParams = self.params
        if params.keywords:
            return [entries_stream(self.state_key(), Post.uri)]
        return filtered_streams(params, Post.uri)

    def page(self, request: FeedRequest) -> Page:
        context = self._context()
        page = streams_page(self.streams, request, context=lambda _row: context)
        page.trace.update(filters=self._filters(), order='newest first')
        return page

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        params: TopicParams = self.params
        row = visible_posts(params.allow_labels).where(Post.uri == post).first()
        matched = self.filters_passed(row) if row is not None else None
        if matched is None or (params.keywords and not has_entry(self.state_key(), row)):
            return None
        return {'filters': matched, 'order': 'newest first', 'sort_at': row.sort_at}

    def why_not(self, post: Post, request: FeedRequest) -> Exclusion | None:
        params: TopicParams = self.params
        if (excluded := filter_exclusion(params, post)) or not params.keywords:
            return excluded
        if not params.keywords_in(post.text):
            return Exclusion('keywords', f'its text has none of the keywords: {", ".join(params.keywords)}', [])
        seconds = f'{KEYWORD_JOB_SECONDS:g} s'
        return Exclusion('not_matched_yet', f'it matches, but the matching job (every {seconds}) has not reached it')

    def jobs(self) -> list[Job]:
        if not self.params.keywords:
            return []
        run = partial(index_matches, key=self.state_key(), test=lambda post: self.filters_passed(post) is not None)
        return [Job(name=f'matches {self.state_key()}', run=run, seconds=KEYWORD_JOB_SECONDS)]

    def filters_passed(self, post: Post) -> dict[str, Any] | None:
        """The filters `post` passes, with the evidence, or None when it fails one."""
        params: TopicParams = self.params
        matched = match_filters(params, post)
        if matched is not None and params.keywords:
            matched['keywords'] = params.keywords_in(post.text)
            if not matched['keywords']:
                return None
        return matched

    def _filters(self) -> list[str]:
        params: TopicParams = self.params
        words = params.describe()
        if params.keywords:
            words.insert(1 if params.tags else 0, 'mentions ' + ' or '.join(repr(k) for k in params.keywords))
        return words

    def _context(self) -> str:
        words = self._filters()
        return ', '.join(words) + ', newest first' if words else 'newest first'
