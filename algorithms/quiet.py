"""quiet: posts from the accounts you follow that post rarely, so the loud ones do not drown them out.

    score = 0.5 ^ (hours since the post / half_life_hours) / posts the author made in the window

Recency, divided by how much the author posts: an account that posted twice in the last `window_hours` (72)
has each post count 1/2, one that posted 60 times, 1/60. So a rare poster's post from this morning ranks
above a loud poster's post from a minute ago, and among loud posters the newest still comes first. All of
the author's posts count toward the rate, replies too; the feed shows posts that are not replies unless
`no_replies` is false. The window is 72 hours because the store keeps 72 hours of posts by default
(`FEEDGEN_RETENTION_HOURS`): a longer window needs a longer retention to count the rate right. Authors you
asked to see less of count 0.25 times their score for you, more: 2 times (`feedgen.ranking.feedback`).

Ranked per session (`feedgen.ranking.personal`), as of the moment the reader's paging session started: a first page
takes each followed account's rate from the hourly post counts ingest keeps (`followed_post_counts`), then reads the
newest posts of the accounts whose posts may rank highest first, through the index on `(author, sort_at, id)`, and
stops at the first account whose best post cannot reach the session's best; the pages after it are cut from the
ranking it kept. So a first page reads a few rows per account followed and hour of the window, not every post.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter, itemgetter
from typing import Any

import peewee

from feedgen.ranking import (
    HOUR_MS,
    SCORE_SCALE,
    SESSION_DEPTH,
    Candidate,
    Follow,
    Ordering,
    PersonalAlgorithm,
    Post,
    Prepared,
    Ranking,
    decay,
    followed_post_counts,
    marker,
    rank_score,
    require_positive,
    rows,
    visible_posts,
    weigh,
)

BATCH = 8
"""How many of each author's newest posts a session reads first."""
_AUTHOR = marker('author')
_SINCE, _UNTIL, _COUNT = -(2**62) - 101, -(2**62) - 103, 2**31 - 107
_BELOW = (-(2**62) - 109, -(2**62) - 113)
"""Stand-ins in the prepared query of an author's posts (`feedgen.store.prepared`)."""


@dataclass(frozen=True)
class QuietParams:
    window_hours: float = 72.0
    """Posts of the last this many hours are shown, and an author's rate is counted over them."""
    half_life_hours: float = 12.0
    """A post counts half as much after this many hours."""
    no_replies: bool = True
    """Leave out replies (they still count toward the author's rate)."""

    def __post_init__(self) -> None:
        require_positive(self, 'window_hours', 'half_life_hours')


class Quiet(PersonalAlgorithm):
    name = 'quiet'
    display_name = 'Quiet voices'
    description = 'Posts from the accounts you follow that post rarely, so the loud ones do not drown them.'
    ranking = (
        'score = 0.5 ^ (hours since the post / 12) / (posts the author made in the last 72 hours); highest '
        'first. Authors you asked to see less of count 0.25 times their score for you, more: 2 times.'
    )
    Params = QuietParams

    def rank(self, viewer: str, as_of: int, indexed_until: int) -> Ranking:
        params: QuietParams = self.params
        follows = Follow.select(Follow.subject).where(Follow.author == viewer)
        since = as_of - int(params.window_hours * HOUR_MS)
        query = (
            visible_posts()
            .select(Post.id, Post.author, Post.sort_at, Post.reply_parent.is_null(False))
            .where(Post.author.in_(follows), Post.sort_at > since, Post.sort_at <= as_of)
            .where(Post.indexed_at <= indexed_until)
        )
        posts = rows(query)
        rates = Counter(map(itemgetter(1), posts))
        shown = [post for post in posts if not post[3]] if params.no_replies else posts
        post_ids = [post[0] for post in shown]
        authors = [post[1] for post in shown]
        half_life = params.half_life_hours
        scores = [decay(as_of - sort_at, half_life) / rates[author] for _, author, sort_at, _ in shown]

        def facts(index: int) -> tuple[int, int]:
            return shown[index][2], rates[authors[index]]

        return Ranking(post_ids, authors, scores, facts, self._trace(len(rates), len(posts) - len(shown)))

    def order(
        self, viewer: str, as_of: int, indexed_until: int, weights: dict[str, float], start: tuple[int, int] | None
    ) -> Ordering:
        """The session's best entries, reading each author's posts from the newest down only as far as needed.

        The authors' counts come from the hourly counts; then the authors' newest `BATCH` posts are read, the
        authors whose best post may rank highest first, until an author's cannot reach the `SESSION_DEPTH` best
        found (nor can the rest), and more (four times as many each round) only of the authors whose next post
        could still be among them: an author's older posts score less. The same entries as ranking every candidate.
        """
        params: QuietParams = self.params
        since = as_of - int(params.window_hours * HOUR_MS)
        with Post._meta.database.atomic():  # one snapshot: the posts walked are those counted
            counts = followed_post_counts(viewer, since, as_of, indexed_until)
            replies = sum(author_replies for _, _, author_replies in counts) if params.no_replies else 0
            walks = [
                _AuthorWalk(author, posts, weights.get(author, 1.0), as_of)
                for author, posts, author_replies in counts
                if posts > author_replies or not params.no_replies
            ]
            found: list[tuple[int, int, int, _AuthorWalk]] = []
            floor: list[int] = []  # the ranks of the best `SESSION_DEPTH` entries found, lowest first

            def beaten(walk: _AuthorWalk) -> bool:
                """Whether the walk's unread posts all rank below the best `SESSION_DEPTH` found."""
                return len(floor) == SESSION_DEPTH and walk.bound < floor[0]

            batch, left_out = BATCH, False
            while walks:
                walks.sort(key=attrgetter('bound'), reverse=True)  # the floor rises before the weaker walks
                for walk in walks:
                    if beaten(walk):
                        break  # and so are the walks after it, unread (left for the filter below)
                    for entry in walk.read(self._posts, since, indexed_until, params.half_life_hours, batch):
                        if start is None or (entry[0], entry[1]) < start:
                            found.append(entry)
                            if len(floor) < SESSION_DEPTH:
                                heapq.heappush(floor, entry[0])
                            else:
                                heapq.heappushpop(floor, entry[0])
                walks = [walk for walk in walks if walk.more]
                left_out = left_out or any(beaten(walk) for walk in walks)
                walks = [walk for walk in walks if not beaten(walk)]
                batch *= 4
            best = heapq.nlargest(SESSION_DEPTH, found)
        half_life = params.half_life_hours
        entries = [
            (rank, post_id, walk.candidate(post_id, sort_at, half_life)) for rank, post_id, sort_at, walk in best
        ]
        total = sum(posts for _, posts, _ in counts) - replies
        return Ordering(entries, total, start, left_out or len(found) > len(best), self._trace(len(counts), replies))

    @cached_property
    def _posts(self) -> Prepared:
        """An author's posts in the window below a `(sort_at, id)`, newest first: a range of `(author, sort_at, id)`."""
        query = (
            visible_posts()
            .select(Post.id, Post.sort_at)
            .where(Post.author == _AUTHOR, Post.sort_at > _SINCE, Post.indexed_at <= _UNTIL)
            .where(peewee.Tuple(Post.sort_at, Post.id) < peewee.Tuple(*_BELOW))
            .order_by(Post.sort_at.desc(), Post.id.desc())
            .limit(_COUNT)
        )
        if self.params.no_replies:
            query = query.where(Post.reply_parent.is_null())
        return Prepared(query, (_AUTHOR, _SINCE, _UNTIL, *_BELOW, _COUNT))

    def _trace(self, authors: int, replies: int) -> dict[str, Any]:
        params: QuietParams = self.params
        return {
            'order': 'score, highest first',
            'filters': [f'by accounts you follow, made in the last {params.window_hours:g} hours']
            + (['no replies'] if params.no_replies else []),
            'removed': {'replies': replies} if params.no_replies else {},
            'authors': authors,
        }

    def describe(self, candidate: Candidate, as_of: int) -> tuple[dict[str, Any], str]:
        sort_at, author_posts = candidate.facts
        parts = {
            'age_hours': round((as_of - sort_at) / HOUR_MS, 3),
            'recency': round(decay(as_of - sort_at, self.params.half_life_hours), 6),
            'author_posts': author_posts,
            'score': candidate.score,
        }
        return parts, f'from an account you follow that posted {author_posts}x in {self.params.window_hours:g}h'


class _AuthorWalk:
    """One author's posts read newest first, a batch at a time, and the most their unread posts can score."""

    def __init__(self, author: str, rate: int, weight: float, as_of: int) -> None:
        self.author = author
        self.rate = rate
        self.weight = weight
        self.as_of = as_of
        self.below = (as_of, 2**63 - 1)
        """The `(sort_at, id)` of the last post read: the next read starts below it."""
        self.more = True
        self.bound = weigh(round(SCORE_SCALE / rate) + 1, weight)
        """The most the walk's unread posts can rank: at first, a post made at `as_of`."""

    def score(self, sort_at: int, half_life: float) -> float:
        return decay(self.as_of - sort_at, half_life) / self.rate

    def read(
        self, posts: Prepared, since: int, indexed_until: int, half_life: float, count: int
    ) -> list[tuple[int, int, int, _AuthorWalk]]:
        """The next `count` posts, as entries `(rank score, post id, sort_at, self)`."""
        read = list(posts.run(self.author, since, indexed_until, *self.below, count))
        self.more = len(read) == count
        if read:
            self.below = (read[-1].sort_at, read[-1].id)
            # an older post scores at most as much (plus one, for rounding the power and the division)
            self.bound = weigh(round(self.score(self.below[0], half_life) * SCORE_SCALE) + 1, self.weight)
        return [
            (rank_score(self.score(row.sort_at, half_life), self.weight), row.id, row.sort_at, self) for row in read
        ]

    def candidate(self, post_id: int, sort_at: int, half_life: float) -> Candidate:
        return Candidate(post_id, self.author, self.score(sort_at, half_life), (sort_at, self.rate))
