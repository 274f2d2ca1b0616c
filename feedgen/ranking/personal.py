"""Personal rankings: algorithms that rank, at request time, the posts around one reader (network, quiet).

Owns `PersonalAlgorithm`, the base of personalized algorithms whose candidates depend on whom the reader
follows, so no job can rank them ahead for everyone. A subclass lists the reader's candidates with their
scores (`rank`); the base weighs them by the reader's feedback (`feedgen.ranking.feedback`), pages them by
`(score, post_id)` (the cursor format of `feedgen.ranking.pagination.ranked_page`), explains them and traces how the
page was made.

A session (a first page and the pages its cursors lead to) ranks as of the moment it started, and counts
only the records indexed by then: the cursor carries both, so likes and posts that arrive while the reader
pages do not reorder it. The two are kept apart because a replayed capture is indexed long after it was
recorded: a preview ranks as of the capture's time, over everything indexed.

Ranking a session reads every candidate (tens of thousands for a reader following hundreds of busy
accounts; docs/design.md, "Personal rankings"), so a first page keeps the session's best `SESSION_DEPTH` entries
in order, in a small in-process cache (`Sessions`), and the pages its cursors lead to are sliced from them. A
page the cache cannot answer (another worker process, an evicted or deeper session) ranks the session again from
the store, from its cursor down: the same moment, watermark and feedback give the same order. Records deleted
after a session began are the one difference: a kept session leaves out posts deleted or hidden since (an item
fewer on that page) but still counts a like deleted since, which a session ranked again does not count.
Reads the store; never writes.
"""

from __future__ import annotations

import bisect
import heapq
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import peewee

from feedgen.ranking.algorithm import MAX_LIMIT, Algorithm, FeedRequest, Item, Page
from feedgen.ranking.feedback import author_weights, feedback_note, feedback_summary, weigh
from feedgen.ranking.pagination import encode_session_cursor, session_cursor
from feedgen.ranking.scores import HOUR_MS, SCORE_SCALE
from feedgen.store.models import Like, Post, Repost, visible_posts
from feedgen.store.prepared import Prepared

SESSION_DEPTH = 500
"""How many of a session's best entries its first page keeps for the pages after it (16 pages of 30); more than
`MAX_LIMIT`, so that a part ranked from a cursor down always holds the page below it."""
SESSIONS = 32
"""How many sessions one feed keeps in memory, the least recently paged one going first: for the benchmark's
reader following 500 busy accounts, a `network` session takes 0.7 MB (its posts' voters), a `quiet` one 0.2 MB."""


class Candidate(NamedTuple):
    """A post a personal ranking considers: its id, author and score, and the facts its explanation is made of.

    Made only for the entries a session keeps (see `Ranking`), as a named tuple (a tenth of a dataclass's cost).
    """

    post_id: int
    author: str
    score: float
    facts: Any = None
    """What `PersonalAlgorithm.describe` makes the score parts and reason of (most candidates are never shown)."""


@dataclass(frozen=True)
class Ranking:
    """The candidates of one reader as of one moment, and the trace of how they were found.

    Kept as columns (the i-th candidate is `post_ids[i]`, `authors[i]`, `scores[i]`, `facts(i)`): a ranking has
    tens of thousands of candidates, and only a page's worth are ever described.
    """

    post_ids: list[int]
    authors: list[str]
    scores: list[float]
    facts: Callable[[int], Any]
    """The facts of the i-th candidate (see `Candidate.facts`)."""
    trace: dict[str, Any]

    def candidate(self, index: int) -> Candidate:
        return Candidate(self.post_ids[index], self.authors[index], self.scores[index], self.facts(index))


Entry = tuple[int, int, Candidate]
"""A candidate in page order: its score as the reader's feedback weighs it (an integer), its post id, itself."""

SessionKey = tuple[str, int, int, frozenset[tuple[str, float]], object]
"""What a session's ranking depends on: the reader, the moment it ranks as of, the indexing it counts up to, the
reader's feedback weights and the store."""


@dataclass(frozen=True)
class Ordering:
    """Part of a session's ranking in page order: the best `SESSION_DEPTH` entries below `start`.

    `start` is the `(score, post_id)` the part begins below (None: the top); `total` counts every candidate.
    """

    entries: list[Entry]
    total: int
    start: tuple[int, int] | None
    cut: bool
    """Whether entries below the last one were left out."""
    trace: dict[str, Any]

    def page(
        self, limit: int, after: tuple[int, int] | None, session: tuple[int, ...]
    ) -> tuple[list[Entry], str | None] | None:
        """The entries of the page below `after` and its cursor, or None when they are not all in this part.

        The same page as `feedgen.ranking.pagination.ranked_page` makes of the whole ranking.
        """
        if self.start is not None and (after is None or after > self.start):
            return None
        begin = 0 if after is None else bisect.bisect_right(self.entries, (-after[0], -after[1]), key=_descending)
        chosen = self.entries[begin : begin + limit + 1]
        if len(chosen) <= limit and self.cut:
            return None
        page = chosen[:limit]
        cursor = encode_session_cursor(session, page[-1]) if len(chosen) > limit else None
        return page, cursor


def _descending(entry: Entry) -> tuple[int, int]:
    return -entry[0], -entry[1]


class Sessions:
    """The orderings of the latest `size` sessions, by key; safe to share between a server's threads."""

    def __init__(self, size: int = SESSIONS) -> None:
        self.size = size
        self._orderings: OrderedDict[SessionKey, Ordering] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: SessionKey) -> Ordering | None:
        with self._lock:
            ordering = self._orderings.get(key)
            if ordering is not None:
                self._orderings.move_to_end(key)
            return ordering

    def put(self, key: SessionKey, ordering: Ordering) -> None:
        with self._lock:
            self._orderings[key] = ordering
            self._orderings.move_to_end(key)
            while len(self._orderings) > self.size:
                self._orderings.popitem(last=False)


def decay(age_ms: int, half_life_hours: float) -> float:
    """0.5 to the power of the age in half-lives: 1 now, 0.5 one half-life ago."""
    return math.pow(0.5, max(0, age_ms) / (HOUR_MS * half_life_hours))


def rank_score(score: float, weight: float) -> int:
    """What a candidate's score counts for in page order: an integer, weighed by the reader's feedback."""
    return weigh(round(score * SCORE_SCALE), weight)


_NEWEST = [Prepared(model.select(peewee.fn.MAX(model.indexed_at)), ()) for model in (Post, Like, Repost)]
_IDS = tuple(-(2**62) - 300 - n for n in range(MAX_LIMIT))
_SHOWN = Prepared(visible_posts().select(Post.id, Post.uri).where(Post.id.in_(_IDS)), _IDS)
"""The URIs of the posts among `MAX_LIMIT` ids that are shown (unused places hold -1, no post's id)."""


def indexed_now() -> int:
    """When the newest post, like or repost in the store was indexed (ms): what a session counts up to."""
    latest = [next(newest.tuples())[0] for newest in _NEWEST]
    return max((moment for moment in latest if moment is not None), default=0)


def rows(query: peewee.Query) -> list[tuple[Any, ...]]:
    """The rows of `query` as plain tuples, straight from the database cursor (no per-row model work)."""
    found: list[tuple[Any, ...]] = query.model._meta.database.execute(query).fetchall()
    return found


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

    @cached_property
    def sessions(self) -> Sessions:
        """This feed's recent sessions, for the pages after their first."""
        return Sessions()

    def order(
        self, viewer: str, as_of: int, indexed_until: int, weights: dict[str, float], start: tuple[int, int] | None
    ) -> Ordering:
        """Ranks a session: its best `SESSION_DEPTH` entries below `start` (None: from the top), in page order."""
        ranking = self.rank(viewer, as_of, indexed_until)
        ids = ranking.post_ids
        if weights:
            scored = zip(ranking.scores, ranking.authors, strict=True)
            ranks = [rank_score(score, weights.get(author, 1.0)) for score, author in scored]
        else:  # rank_score with every weight 1
            ranks = [round(score * SCORE_SCALE) for score in ranking.scores]
        below: Iterable[tuple[int, int, int]] = zip(ranks, ids, range(len(ids)), strict=True)
        count = len(ids)
        if start is not None:
            below = [entry for entry in below if (entry[0], entry[1]) < start]
            count = len(below)
        best = heapq.nlargest(SESSION_DEPTH, below)  # by (score, post id): ids are unique
        entries = [(rank, post_id, ranking.candidate(i)) for rank, post_id, i in best]
        return Ordering(entries, len(ids), start, count > len(best), ranking.trace)

    def page(self, request: FeedRequest) -> Page:
        session, after = session_cursor(request, 2)
        as_of, indexed_until = session or (request.time_ms(), indexed_now())
        if request.viewer is None:
            return Page(items=[], trace={'as_of': as_of, 'note': 'personalized: needs a signed-in reader'})
        weights = author_weights(request.viewer, as_of)
        key = (request.viewer, as_of, indexed_until, frozenset(weights.items()), Post._meta.database.obj)
        ordering = self.sessions.get(key) if session else None
        found = ordering.page(request.limit, after, (as_of, indexed_until)) if ordering else None
        if ordering is None or found is None:
            # a first page, or a session this process does not keep this far: rank from the cursor
            ordering = self.order(request.viewer, as_of, indexed_until, weights, after)
            self.sessions.put(key, ordering)
            found = ordering.page(request.limit, after, (as_of, indexed_until))
            assert found is not None, 'an ordering that begins at the cursor holds the page below it'
        chosen, cursor = found
        ids = [entry[1] for entry in chosen]
        uris = dict(_SHOWN.tuples(*ids, *[-1] * (MAX_LIMIT - len(ids))))
        items, scores = [], {}
        for rank, post_id, candidate in chosen:
            if post_id not in uris:  # deleted, or its author's account went inactive, since the session began
                continue
            weight = weights.get(candidate.author, 1.0)
            parts, reason = self.describe(candidate, as_of)
            items.append(Item(uris[post_id], reason + feedback_note(weight)))
            scores[uris[post_id]] = parts | {'viewer_weight': weight, 'rank_score': rank}
        trace = ordering.trace | {
            'as_of': as_of,
            'indexed_until': indexed_until,
            'candidates': ordering.total,
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
        ranking = self.rank(request.viewer, as_of, indexed_until)
        if post_id not in ranking.post_ids:
            return None
        candidate = ranking.candidate(ranking.post_ids.index(post_id))
        weight = author_weights(request.viewer, as_of).get(candidate.author, 1.0)
        return {
            'formula': self.ranking,
            'score': self.describe(candidate, as_of)[0],
            'viewer_weight': weight,
            'rank_score': rank_score(candidate.score, weight),
            'as_of': as_of,
        }
