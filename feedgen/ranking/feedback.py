"""Feedback: what readers told feeds through `app.bsky.feed.sendInteractions`, as algorithms use it.

Owns the published effect of reader feedback on ranked feeds: an author one of whose posts the reader
marked "show less like this" has their scores multiplied by `LESS_WEIGHT` in that reader's pages; "show
more like this", by `MORE_WEIGHT`; the latest of the two wins. And which posts the reader has seen.
Feedback counts from the moment it is sent until `FEEDBACK_DAYS` later; a feed ranking as of a moment
counts only the feedback sent before it, so a reader's paging session keeps one order. Reads
`Interaction`; never writes it (`feedgen.serve.interactions` does).
"""

from __future__ import annotations

import peewee

from feedgen.store.models import Interaction

LESS = 'requestLess'
MORE = 'requestMore'
SEEN = 'interactionSeen'
LESS_WEIGHT = 0.25
MORE_WEIGHT = 2.0
FEEDBACK_DAYS = 30
MAX_FEEDBACK = 1000
"""At most this many of the reader's latest "less" and "more" requests count."""
DAY_MS = 86_400_000


def author_weights(viewer: str | None, as_of: int) -> dict[str, float]:
    """The weight of each author `viewer` asked to see less or more of, as of the moment `as_of` (ms)."""
    if viewer is None:
        return {}
    rows = (
        Interaction.select(Interaction.author, Interaction.event)
        .where(
            Interaction.viewer == viewer,
            Interaction.event.in_((LESS, MORE)),
            Interaction.at > as_of - FEEDBACK_DAYS * DAY_MS,
            Interaction.at <= as_of,
        )
        .order_by(Interaction.at.desc())
        .limit(MAX_FEEDBACK)
        .tuples()
    )
    weights: dict[str, float] = {}
    for author, event in rows:
        weights.setdefault(author, LESS_WEIGHT if event == LESS else MORE_WEIGHT)
    return weights


def weigh(score: int, weight: float) -> int:
    """A score as one reader's feedback weighs it."""
    return score if weight == 1.0 else int(score * weight)


def seen_posts(viewer: str, as_of: int) -> peewee.ModelSelect:
    """A subquery of the URIs of the posts `viewer` had seen by `as_of` (in the last `FEEDBACK_DAYS`)."""
    return Interaction.select(Interaction.post).where(
        Interaction.viewer == viewer,
        Interaction.event == SEEN,
        Interaction.at > as_of - FEEDBACK_DAYS * DAY_MS,
        Interaction.at <= as_of,
    )


def feedback_summary(weights: dict[str, float]) -> dict[str, int]:
    """How many authors the reader asked to see less and more of: for a page's trace."""
    less = sum(1 for weight in weights.values() if weight < 1.0)
    return {'less': less, 'more': len(weights) - less}


def feedback_note(weight: float) -> str:
    """What an item's context adds when the reader's feedback moved it; empty when it did not."""
    if weight < 1.0:
        return ' (lower: you asked to see less of this author)'
    return ' (higher: you asked to see more of this author)' if weight > 1.0 else ''
