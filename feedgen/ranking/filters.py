"""Filters: the post filters feeds share (hashtags, languages, no replies, media only, self-labels allowed), as index
range scans.

Owns `FilterParams`, the filter parameters an algorithm's `Params` inherits (normalized and validated),
`filtered_streams`, which turns them into one select per index range, `match_filters`, which says
which filters one post passes (for explanations), and `filter_exclusion`, which says the first one it
fails. A hashtag or language filter walks the `PostTerm` index of each of its terms (`tag:python`, then
`lang:en`), newest first; with no such filter, the `(sort_at, id)` index of all posts. Replies, media and
self-labels are tested on each row of the walk. Reads the store, never writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.ranking.algorithm import Exclusion, InvalidParams
from feedgen.ranking.pagination import Stream
from feedgen.ranking.post_index import term_query
from feedgen.store.models import (
    HIDING_SELF_LABELS,
    Post,
    PostTerm,
    hiding_self_labels,
    visible_posts,
)
from feedgen.store.terms import post_terms

MEDIA_EMBEDS = ('images', 'video', 'recordWithMedia')


@dataclass(frozen=True)
class FilterParams:
    """Filter parameters; an algorithm's `Params` dataclass extends this to offer them."""

    tags: tuple[str, ...] = ()
    """Hashtags (without #); a post matches when it has any of them. Empty: no hashtag filter."""
    langs: tuple[str, ...] = ()
    """Language codes (`en`, `pt`); a post matches when it declares any of them. Empty: any language."""
    no_replies: bool = False
    """Leave out replies."""
    media_only: bool = False
    """Keep only posts with images or a video."""
    allow_labels: tuple[str, ...] = ()
    """Self-labels (`porn`, `sexual`, `nudity`, `graphic-media`) whose posts the feed shows; every feed leaves out
    posts their author labels so unless it lists the label here."""

    def __post_init__(self) -> None:
        object.__setattr__(self, 'tags', tuple(tag.lower().lstrip('#') for tag in self.tags))
        object.__setattr__(self, 'langs', tuple(lang.lower() for lang in self.langs))
        object.__setattr__(self, 'allow_labels', tuple(dict.fromkeys(self.allow_labels)))
        if unknown := [label for label in self.allow_labels if label not in HIDING_SELF_LABELS]:
            raise InvalidParams(
                f'allow_labels: {unknown} are not among the labels feeds hide {list(HIDING_SELF_LABELS)}'
            )
        if any(not tag or ' ' in tag for tag in self.tags):
            raise InvalidParams(f'tags: a hashtag must be one non-empty word, got {list(self.tags)}')
        if any(not lang or ' ' in lang for lang in self.langs):
            raise InvalidParams(f'langs: a language code must be one non-empty word, got {list(self.langs)}')

    def describe(self) -> list[str]:
        """The filters in words, e.g. `['has #python or #rust', 'in en', 'no replies']`."""
        words = []
        if self.tags:
            words.append('has #' + ' or #'.join(self.tags))
        if self.langs:
            words.append('in ' + ' or '.join(self.langs))
        if self.no_replies:
            words.append('no replies')
        if self.media_only:
            words.append('with images or video')
        if self.allow_labels:
            words.append('self-labelled ' + ' or '.join(self.allow_labels) + ' allowed')
        return words


def filtered_streams(params: FilterParams, *columns: peewee.Field) -> list[Stream]:
    """Selects of `columns` of the visible posts passing `params`, one per index range to walk.

    With hashtags, one stream per hashtag (a post with two of them is in two streams; `stream_rows`
    keeps it once), each checked for the languages; with languages only, one per language; else one
    over all posts.
    """
    tag_terms = [f'tag:{tag}' for tag in params.tags]
    lang_terms = [f'lang:{lang}' for lang in params.langs]
    driving = tag_terms or lang_terms
    if not driving:
        return [Stream(_rows(params, visible_posts(params.allow_labels).select(*columns)), Post.sort_at, Post.id)]
    streams = []
    for term in driving:
        query = term_query(term, *columns, allow_labels=params.allow_labels)
        if tag_terms and lang_terms:
            lang = PostTerm.alias('lang')
            in_lang = lang.select(lang.post_id).where(
                lang.term.in_(lang_terms), lang.sort_at == PostTerm.sort_at, lang.post_id == PostTerm.post_id
            )
            query = query.where(peewee.fn.EXISTS(in_lang))
        streams.append(Stream(_rows(params, query), PostTerm.sort_at, PostTerm.post_id))
    return streams


def _rows(params: FilterParams, query: peewee.ModelSelect) -> peewee.ModelSelect:
    if params.no_replies:
        # Not `reply_parent IS NULL`: SQLite would walk the reply_parent index (most posts match) and sort them.
        query = query.where(peewee.fn.COALESCE(Post.reply_parent, '') == '')
    if params.media_only:
        query = query.where(Post.embed.in_(MEDIA_EMBEDS))
    return query


def match_filters(params: FilterParams, post: Post) -> dict[str, Any] | None:
    """Which filters `post` passes and the evidence (`{'tags': ['python'], ...}`), or None if it fails one."""
    matched: dict[str, Any] = {}
    if hiding_self_labels(post.self_labels, params.allow_labels):
        return None
    if allowed := [label for label in post.self_labels.split() if label in params.allow_labels]:
        matched['allow_labels'] = allowed
    terms = set(post_terms(post.tags.split(), post.langs.split()))
    if params.tags:
        matched['tags'] = [tag for tag in params.tags if f'tag:{tag}' in terms]
        if not matched['tags']:
            return None
    if params.langs:
        matched['langs'] = [lang for lang in params.langs if f'lang:{lang}' in terms]
        if not matched['langs']:
            return None
    if params.no_replies:
        if post.reply_parent is not None:
            return None
        matched['no_replies'] = 'not a reply'
    if params.media_only:
        if post.embed not in MEDIA_EMBEDS:
            return None
        matched['media_only'] = post.embed
    return matched


def filter_exclusion(params: FilterParams, post: Post) -> Exclusion | None:
    """The first filter of `params` that `post` fails, with the post's value for it; None when it passes them all."""
    tags, langs = post.tags.split(), post.langs.split()
    terms = set(post_terms(tags, langs))
    if params.tags and not any(f'tag:{tag}' in terms for tag in params.tags):
        has = ', '.join(f'#{tag}' for tag in tags) or 'no hashtag'
        return Exclusion('tags', f"it has {has}, none of the feed's: #{' or #'.join(params.tags)}", tags)
    if params.langs and not any(f'lang:{lang}' in terms for lang in params.langs):
        declared = ', '.join(langs) or 'no language declared'
        return Exclusion(
            'langs', f"its languages ({declared}) are none of the feed's: {', '.join(params.langs)}", langs
        )
    if params.no_replies and post.reply_parent is not None:
        return Exclusion('replies', 'it is a reply, and the feed leaves replies out', post.reply_parent)
    if params.media_only and post.embed not in MEDIA_EMBEDS:
        return Exclusion('media', f'it has no images or video (embed: {post.embed or "none"})', post.embed)
    return None
