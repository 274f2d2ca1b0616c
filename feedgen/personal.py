"""Personal rankings: algorithms that rank, at request time, the posts around one reader (network, quiet).

Owns `PersonalAlgorithm`, the base of personalized algorithms whose candidates depend on whom the reader
follows, so no job can rank them ahead for everyone. A subclass lists the reader's candidates with their
scores (`rank`); the base weighs them by the reader's feedback (`feedgen.feedback`), pages them by
`(score, post_id)` (`feedgen.pagination.ranked_page`), explains them and traces how the page was made.

A session (a first page and the pages its cursors lead to) ranks as of the moment it started, and counts
only the records indexed by then: the cursor carries both, so likes and posts that arrive while the reader
pages do not reorder it. The two are kept apart because a replayed capture is indexed long after it was
recorded: a preview ranks as of the capture's time, over everything indexed.
Reads the store; never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.algorithm import Algorithm, FeedRequest, Item, Page
from feedgen.feedback import author_weights, feedback_note, feedback_summary, weigh
from feedgen.pagination import ranked_page, session_cursor
from feedgen.scores import HOUR_MS, SCORE_SCALE
from feedgen.store import Like, Post, Repost


@dataclass(frozen=True)
class Candidate:
    """A post a personal ranking considers: its id, author and score, and the facts its explanation is made of."""

    post_id: int
    author: str
    score: float
    facts: Any = None
    """What `PersonalAlgorithm.describe` makes the score parts and reason of (most candidates are never shown)."""


@dataclass(frozen=True)
class Ranking:
    """The candidates of one reader as of one moment, and the trace of how they were found."""

    candidates: list[Candidate]
    trace: dict[str, Any]


def decay(age_ms: int, half_life_hours: float) -> float:
    """0.5 to the power of the age in half-lives: 1 now, 0.5 one half-life ago."""
    return 0.5 ** (max(0, age_ms) / HOUR_MS / half_life_hours)


def indexed_now() -> int:
    """When the newest post, like or repost in the store was indexed (ms): what a session counts up to."""
    latest = [model.select(peewee.fn.MAX(model.indexed_at)).scalar() for model in (Post, Like, Repost)]
    return max((moment for moment in latest if moment is not None), default=0)


def rows(query: peewee.Query) -> list[tuple]:
    """The rows of `query` as plain tuples, straight from the database cursor (no per-row model work)."""
    return query.model._meta.database.execute(query).fetchall()


class PersonalAlgorithm(Algorithm):
    """A personalized algorithm ranked at request time; subclasses implement `rank` and `describe`."""

    personalized = True
    accepts_interactions = True

    def rank(self, viewer: str, as_of: int, indexed_until: int) -> Ranking:
        """The candidates for `viewer` as of `as_of` (ms), counting only the records indexed by `indexed_until`."""
        raise NotImplementedError

    def describe(self, candidate: Candidate, as_of: int) -> tuple[dict[str, Any], str]:
        """The score parts of `candidate` (with `score`) and the reason it is in the feed (its feedContext)."""
        raise NotImplementedError

    def page(self, request: FeedRequest) -> Page:
        session, after = session_cursor(request, 2)
        as_of, indexed_until = session or (request.time_ms(), indexed_now())
        if request.viewer is None:
            return Page(items=[], trace={'as_of': as_of, 'note': 'personalized: needs a signed-in reader'})
        ranking = self.rank(request.viewer, as_of, indexed_until)
        weights = author_weights(request.viewer, as_of)
        entries = [
            (weigh(round(c.score * SCORE_SCALE), weights.get(c.author, 1.0)), c.post_id, c) for c in ranking.candidates
        ]
        chosen, cursor = ranked_page(entries, request.limit, after, (as_of, indexed_until))
        uris = dict(rows(Post.select(Post.id, Post.uri).where(Post.id.in_([entry[1] for entry in chosen]))))
        items, scores = [], {}
        for rank, post_id, candidate in chosen:
            weight = weights.get(candidate.author, 1.0)
            parts, reason = self.describe(candidate, as_of)
            items.append(Item(uris[post_id], reason + feedback_note(weight)))
            scores[uris[post_id]] = parts | {'viewer_weight': weight, 'rank_score': rank}
        trace = ranking.trace | {
            'as_of': as_of,
            'indexed_until': indexed_until,
            'candidates': len(ranking.candidates),
            'feedback': feedback_summary(weights),
            'scores': scores,
        }
        return Page(items=items, cursor=cursor, trace=trace)

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        post_id = Post.select(Post.id).where(Post.uri == post).scalar()
        if request.viewer is None or post_id is None:
            return None
        session = session_cursor(request, 2)[0]
        as_of, indexed_until = session or (request.time_ms(), indexed_now())
        found = [c for c in self.rank(request.viewer, as_of, indexed_until).candidates if c.post_id == post_id]
        if not found:
            return None
        weight = author_weights(request.viewer, as_of).get(found[0].author, 1.0)
        return {
            'formula': self.ranking,
            'score': self.describe(found[0], as_of)[0],
            'viewer_weight': weight,
            'rank_score': weigh(round(found[0].score * SCORE_SCALE), weight),
            'as_of': as_of,
        }
