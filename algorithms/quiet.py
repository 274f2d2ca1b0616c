"""quiet: posts from the accounts you follow that post rarely, so the loud ones do not drown them out.

    score = 0.5 ^ (hours since the post / half_life_hours) / posts the author made in the window

Recency, divided by how much the author posts: an account that posted twice in the last `window_hours` (72)
has each post count 1/2, one that posted 60 times, 1/60. So a rare poster's post from this morning ranks
above a loud poster's post from a minute ago, and among loud posters the newest still comes first. All of
the author's posts count toward the rate, replies too; the feed shows posts that are not replies unless
`no_replies` is false. The window is 72 hours because the store keeps 72 hours of posts by default
(`FEEDGEN_RETENTION_HOURS`): a longer window needs a longer retention to count the rate right. Authors you
asked to see less of count 0.25 times their score for you, more: 2 times (`feedgen.feedback`).

Ranked per session (`feedgen.personal`), as of the moment the reader's paging session started: a first page
reads the posts through the index on `(author, sort_at, id)`, one range per account you follow; the pages
after it are cut from the ranking it kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from feedgen.personal import Candidate, PersonalAlgorithm, Ranking, decay, rows
from feedgen.scores import HOUR_MS, require_positive
from feedgen.store import Follow, Post, visible_posts


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

        trace = {
            'order': 'score, highest first',
            'filters': [f'by accounts you follow, made in the last {params.window_hours:g} hours']
            + (['no replies'] if params.no_replies else []),
            'removed': {'replies': len(posts) - len(shown)} if params.no_replies else {},
            'authors': len(rates),
        }
        return Ranking(post_ids, authors, scores, facts, trace)

    def describe(self, candidate: Candidate, as_of: int) -> tuple[dict[str, Any], str]:
        sort_at, author_posts = candidate.facts
        parts = {
            'age_hours': round((as_of - sort_at) / HOUR_MS, 3),
            'recency': round(decay(as_of - sort_at, self.params.half_life_hours), 6),
            'author_posts': author_posts,
            'score': candidate.score,
        }
        return parts, f'from an account you follow that posted {author_posts}x in {self.params.window_hours:g}h'
