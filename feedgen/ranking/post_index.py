"""Post index: the helpers algorithms read the searchable terms of posts with (links, mentions, quotes, replies...).

Owns `term_streams`, which walks the `PostTerm` index of each term (`domain:arxiv.org`, `tag:art`, ...) newest first,
and `terms_of`, which lists the terms one post is indexed under (to explain a page). The terms themselves are spelled
by `feedgen.store.terms` (`domain_term`, `mention_term`, ...). Reads the store, never writes it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import peewee

from feedgen.ranking.pagination import Stream
from feedgen.store.models import Post, PostTerm, self_labels_shown
from feedgen.store.terms import POST_TERM_COLUMNS, row_terms


def term_query(term: str, *columns: peewee.Field, allow_labels: Collection[str] = ()) -> peewee.ModelSelect:
    """A select of `columns` of the visible posts indexed under `term`, joined from `PostTerm` (walk it by
    `(PostTerm.sort_at, PostTerm.post_id)`)."""
    return (
        PostTerm.select(*columns)
        .join(Post, on=Post.id == PostTerm.post_id)
        .where(PostTerm.term == term, Post.hidden == False, self_labels_shown(allow_labels))  # noqa: E712
    )


def term_streams(
    terms: Sequence[str],
    *columns: peewee.Field,
    where: peewee.Expression | None = None,
    allow_labels: Collection[str] = (),
) -> list[Stream]:
    """One stream per term over the visible posts indexed under it that pass `where` (a condition on `Post`,
    tested on each row of the walk), newest first; page them with `streams_page` (a post under two terms is kept
    once).

    Args:
        terms: e.g. `[domain_term('arxiv.org')]`, `[tag_term('art')]`.
        columns: what each row holds (select `Post.uri` to page with `streams_page`).
        where: e.g. `alt_complete()`; None: every post under the term.
        allow_labels: self-labels the feed shows (see `FilterParams.allow_labels`).
    """
    streams = []
    for term in terms:
        query = term_query(term, *columns, allow_labels=allow_labels)
        if where is not None:
            query = query.where(where)
        streams.append(Stream(query, PostTerm.sort_at, PostTerm.post_id))
    return streams


def terms_of(post: Post) -> list[str]:
    """The terms `post` is indexed under (`['tag:art', 'lang:en', 'domain:arxiv.org', ...]`)."""
    return row_terms(*(getattr(post, name) for name in POST_TERM_COLUMNS))
