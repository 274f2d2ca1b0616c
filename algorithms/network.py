"""network: posts the accounts you follow liked or reposted, ranked by how many of them did and how recently.

    score = sum, over the accounts you follow that liked or reposted the post,
            of 0.5 ^ (hours since they last did / half_life_hours)

An account you follow counts once per post (a like and a repost by the same account are one vote), and a
vote halves in weight every `half_life_hours` (6): five follows liking a post this morning outrank one
liking it a minute ago. Only likes and reposts of the last `window_hours` (48) count, as of the moment the
reader's paging session started, and of each account you follow only its `votes_per_account` (10) newest likes
and as many newest reposts: the heaviest of its votes, and one account that likes hundreds of posts a day does not
fill the feed alone. Your own posts are left out, and so are posts this feed generator has not
indexed (older than its retention) or whose author's account is inactive. Authors you asked to see less of
count 0.25 times their score for you, more: 2 times (`feedgen.ranking.feedback`).

Ranked per session (`feedgen.ranking.personal`): a first page reads each followed account's newest likes and reposts
through the indexes on `(author, indexed_at)`, at most `votes_per_account` of each, and each post through the
unique index on its URI, so its work is bounded by the number of accounts followed; the pages after it are cut
from the ranking it kept.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import peewee

from feedgen.ranking import (
    HOUR_MS,
    Candidate,
    Follow,
    Like,
    PersonalAlgorithm,
    Post,
    Prepared,
    Ranking,
    Repost,
    decay,
    hiding_self_labels,
    marker,
    require_positive,
)


@dataclass(frozen=True)
class NetworkParams:
    window_hours: float = 48.0
    """Only likes and reposts of the last this many hours count."""
    half_life_hours: float = 6.0
    """A like or repost counts half as much after this many hours."""
    votes_per_account: int = 10
    """Of each account followed, only this many newest likes (and as many newest reposts) of the window count."""

    def __post_init__(self) -> None:
        require_positive(self, 'window_hours', 'half_life_hours', 'votes_per_account')


class Network(PersonalAlgorithm):
    name = 'network'
    display_name = 'Your network'
    description = 'Posts the accounts you follow liked or reposted, most votes and most recent first.'
    ranking = (
        'score = sum over the accounts you follow that liked or reposted the post of '
        '0.5 ^ (hours since they did / 6); highest first. Likes and reposts of the last 48 hours count, of each '
        'account its newest 10 likes and 10 reposts; authors you asked to see less of count 0.25 times their score '
        'for you, more: 2 times.'
    )
    Params = NetworkParams

    def rank(self, viewer: str, as_of: int, indexed_until: int) -> Ranking:
        params: NetworkParams = self.params
        follows = [account for (account,) in Follow.select(Follow.subject).where(Follow.author == viewer).tuples()]
        since = as_of - int(params.window_hours * HOUR_MS)
        votes: dict[int, dict[str, int]] = defaultdict(dict)
        authors: dict[int, str] = {}
        removed: Counter[str] = Counter()
        # the nth newest in the window, or else the window's start, to the session's end
        nth = (since, indexed_until, params.votes_per_account - 1, since + 1)
        for account in follows:
            for voter, voted_at, post_id, author, hidden, labels in self._votes.tuples(
                *(account, *nth, account, indexed_until) * 2
            ):
                if post_id is None or hidden:
                    removed['likes and reposts of posts not indexed or hidden'] += 1
                elif labels and hiding_self_labels(labels):
                    removed['likes and reposts of self-labelled posts'] += 1
                elif author == viewer:
                    removed['likes and reposts of your own posts'] += 1
                else:
                    post_votes = votes[post_id]
                    previous = post_votes.get(voter)
                    if previous is None or voted_at > previous:
                        post_votes[voter] = voted_at
                    authors[post_id] = author
        half_life = params.half_life_hours
        post_ids = list(votes)
        scores = [sum([decay(as_of - at, half_life) for at in voters.values()]) for voters in votes.values()]

        def facts(index: int) -> dict[str, int]:
            return votes[post_ids[index]]

        trace = {
            'order': 'score, highest first',
            'filters': [
                f'liked or reposted by accounts you follow in the last {params.window_hours:g} hours',
                f'of each account its newest {params.votes_per_account} likes and {params.votes_per_account} reposts',
            ],
            'removed': dict(removed),
        }
        return Ranking(post_ids, [authors[post_id] for post_id in post_ids], scores, facts, trace)

    @cached_property
    def _votes(self) -> Prepared:
        """An account's likes and reposts indexed in `(since, until]` with their posts: of each kind its newest `count`
        (and those indexed at the same moment as the last of them). Per kind, one range scan of `(author, indexed_at)`
        finds the `count`th newest, and one reads from there up: no sort."""
        parts: list[peewee.ModelSelect] = []
        markers: list[object] = []
        for n, model in enumerate((Like, Repost)):
            account, nth_account = marker(f'account {n}'), marker(f'account of the nth {n}')
            until, nth_since, nth_until, floor = (-(2**62) - 100 * n - k for k in (3, 7, 9, 13))
            offset = 2**31 - 100 * n - 17
            nth = (
                model.select(model.indexed_at)
                .where(model.author == nth_account, model.indexed_at > nth_since, model.indexed_at <= nth_until)
                .order_by(model.indexed_at.desc())
                .limit(1)
                .offset(offset)
            )
            parts.append(
                model.select(model.author, model.indexed_at, Post.id, Post.author, Post.hidden, Post.self_labels)
                .join(Post, peewee.JOIN.LEFT_OUTER, on=Post.uri == model.subject)
                .where(model.author == account, model.indexed_at >= peewee.fn.COALESCE(nth, floor))
                .where(model.indexed_at <= until)
            )
            markers.extend((nth_account, nth_since, nth_until, offset, floor, account, until))
        return Prepared(parts[0].union_all(parts[1]), markers)

    def describe(self, candidate: Candidate, as_of: int) -> tuple[dict[str, Any], str]:
        voters: dict[str, int] = candidate.facts
        half_life = self.params.half_life_hours
        parts = {
            'voters': {
                voter: {'at': at, 'weight': round(decay(as_of - at, half_life), 4)} for voter, at in voters.items()
            },
            'score': candidate.score,
        }
        return parts, f'liked or reposted by {len(voters)} account{"s" if len(voters) > 1 else ""} you follow'
