"""Personal rankings: algorithms that rank, at request time, the posts around one reader (network, quiet).

Owns `PersonalAlgorithm`, the base of personalized algorithms whose candidates depend on whom the reader
follows, so no job can rank them ahead for everyone. A subclass lists the reader's candidates with their
scores as of a moment (`candidates`); the base weighs them by the reader's feedback (`feedgen.feedback`),
pages them by `(score, post_id)` with the moment kept in the cursor (`feedgen.pagination.ranked_page`),
explains them and traces how the page was made. Every page ranks as of the moment its session started,
counting only records indexed by then, so new likes and posts do not reorder a session already under way.
Reads the store; never writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feedgen.algorithm import Algorithm, FeedRequest, Item, Page
from feedgen.feedback import author_weights, feedback_note, feedback_summary, weigh
from feedgen.pagination import as_of_cursor, ranked_page
from feedgen.scores import HOUR_MS, SCORE_SCALE


@dataclass(frozen=True)
class Candidate:
    """A post a personal ranking considers, with its score, the parts it came from, and why it is there."""

    post_id: int
    uri: str
    author: str
    score: float
    parts: dict[str, Any]
    reason: str
    """The item's context, before any note about the reader's feedback."""


@dataclass(frozen=True)
class Ranking:
    """The candidates of one reader as of one moment, and the trace of how they were found."""

    candidates: list[Candidate]
    trace: dict[str, Any]


def decay(age_ms: int, half_life_hours: float) -> float:
    """0.5 to the power of the age in half-lives: 1 now, 0.5 one half-life ago."""
    return 0.5 ** (max(0, age_ms) / HOUR_MS / half_life_hours)


class PersonalAlgorithm(Algorithm):
    """A personalized algorithm ranked at request time; subclasses implement `rank`."""

    personalized = True
    accepts_interactions = True

    def rank(self, viewer: str, as_of: int) -> Ranking:
        """The candidates for `viewer` as of `as_of` (ms), counting only what was indexed by then."""
        raise NotImplementedError

    def page(self, request: FeedRequest) -> Page:
        as_of, after = as_of_cursor(request)
        if request.viewer is None:
            return Page(items=[], trace={'as_of': as_of, 'note': 'personalized: needs a signed-in reader'})
        ranking = self.rank(request.viewer, as_of)
        weights = author_weights(request.viewer, as_of)
        entries = []
        parts = {}
        for candidate in ranking.candidates:
            weight = weights.get(candidate.author, 1.0)
            rank = weigh(round(candidate.score * SCORE_SCALE), weight)
            entries.append((rank, candidate.post_id, Item(candidate.uri, candidate.reason + feedback_note(weight))))
            parts[candidate.uri] = candidate.parts | {'viewer_weight': weight, 'rank_score': rank}
        page = ranked_page(entries, request, as_of, after)
        page.trace.update(ranking.trace)
        page.trace.update(
            as_of=as_of,
            candidates=len(ranking.candidates),
            feedback=feedback_summary(weights),
            scores={item.post: parts[item.post] for item in page.items},
        )
        return page

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        if request.viewer is None:
            return None
        as_of = as_of_cursor(request)[0]
        found = [c for c in self.rank(request.viewer, as_of).candidates if c.uri == post]
        if not found:
            return None
        candidate = found[0]
        weight = author_weights(request.viewer, as_of).get(candidate.author, 1.0)
        return {
            'formula': self.ranking,
            'score': candidate.parts,
            'viewer_weight': weight,
            'rank_score': weigh(round(candidate.score * SCORE_SCALE), weight),
            'as_of': as_of,
        }
