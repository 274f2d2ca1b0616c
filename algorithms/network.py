"""network: posts the accounts you follow liked or reposted, ranked by how many of them did and how recently.

    score = sum, over the accounts you follow that liked or reposted the post,
            of 0.5 ^ (hours since they last did / half_life_hours)

An account you follow counts once per post (a like and a repost by the same account are one vote), and a
vote halves in weight every `half_life_hours` (6): five follows liking a post this morning outrank one
liking it a minute ago. Only likes and reposts of the last `window_hours` (48) count, as of the moment the
reader's paging session started. Your own posts are left out, and so are posts this feed generator has not
indexed (older than its retention) or whose author's account is inactive. Authors you asked to see less of
count 0.25 times their score for you, more: 2 times (`feedgen.ranking.feedback`).

Ranked per session (`feedgen.ranking.personal`): a first page reads the likes and reposts through the index on their
author, once per account you follow, and each post through the unique index on its URI; the pages after it
are cut from the ranking it kept.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.ranking import (
    HOUR_MS,
    Candidate,
    Follow,
    Like,
    PersonalAlgorithm,
    Post,
    Ranking,
    Repost,
    decay,
    hiding_self_labels,
    require_positive,
    rows,
)


@dataclass(frozen=True)
class NetworkParams:
    window_hours: float = 48.0
    """Only likes and reposts of the last this many hours count."""
    half_life_hours: float = 6.0
    """A like or repost counts half as much after this many hours."""

    def __post_init__(self) -> None:
        require_positive(self, 'window_hours', 'half_life_hours')


class Network(PersonalAlgorithm):
    name = 'network'
    display_name = 'Your network'
    description = 'Posts the accounts you follow liked or reposted, most votes and most recent first.'
    ranking = (
        'score = sum over the accounts you follow that liked or reposted the post of '
        '0.5 ^ (hours since they did / 6); highest first. Likes and reposts of the last 48 hours count; '
        'authors you asked to see less of count 0.25 times their score for you, more: 2 times.'
    )
    Params = NetworkParams

    def rank(self, viewer: str, as_of: int, indexed_until: int) -> Ranking:
        params: NetworkParams = self.params
        follows = Follow.select(Follow.subject).where(Follow.author == viewer)
        since = as_of - int(params.window_hours * HOUR_MS)
        votes: dict[int, dict[str, int]] = defaultdict(dict)
        authors: dict[int, str] = {}
        removed: Counter[str] = Counter()
        for model in (Like, Repost):
            query = (
                model.select(model.author, model.indexed_at, Post.id, Post.author, Post.hidden, Post.self_labels)
                .join(Post, peewee.JOIN.LEFT_OUTER, on=Post.uri == model.subject)
                .where(model.author.in_(follows), model.indexed_at > since, model.indexed_at <= indexed_until)
            )
            for voter, voted_at, post_id, author, hidden, labels in rows(query):
                if post_id is None or hidden:
                    removed['likes and reposts of posts not indexed or hidden'] += 1
                elif hiding_self_labels(labels):
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
            'filters': [f'liked or reposted by accounts you follow in the last {params.window_hours:g} hours'],
            'removed': dict(removed),
        }
        return Ranking(post_ids, [authors[post_id] for post_id in post_ids], scores, facts, trace)

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
