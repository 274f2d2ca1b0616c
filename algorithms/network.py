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

Ranked per session (`feedgen.ranking.personal`): a first page takes each followed account's newest likes and
reposts, at most `votes_per_account` of each, from those the worker keeps (`feedgen.ranking.kept_votes`: up to date
with what was indexed and deleted since), reading an account it does not keep through the indexes on
`(author, indexed_at)`; it scores the posts by their votes, and looks up through the unique index on the URI only the
posts that may rank among the session's best, highest scores first; the pages after it are cut from the ranking it
kept.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

import peewee

from feedgen.ranking import (
    HOUR_MS,
    SESSION_DEPTH,
    Candidate,
    Follow,
    KeptPosts,
    KeptVotes,
    Like,
    Ordering,
    PersonalAlgorithm,
    Post,
    Prepared,
    Ranking,
    Repost,
    Vote,
    decay,
    hiding_self_labels,
    marker,
    rank_score,
    require_positive,
)

_LOOKUP = 100
"""How many posts one prepared query looks up by URI (those a worker does not keep)."""
_URIS = tuple(marker(f'uri {n}') for n in range(_LOOKUP))
_FIRST_LOOKUPS = 2 * _LOOKUP
"""How many of the highest-scoring voted posts a session looks up first (then four times as many each round)."""


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
        voted = self._voted(viewer, as_of, indexed_until)
        scores = voted.scores(as_of, self.params.half_life_hours)
        post_ids, authors, kept = [], [], []
        for subject, post in voted.posts(list(voted.votes), self._kept_posts):
            post_ids.append(post[0])
            authors.append(post[1])
            kept.append(subject)

        def facts(index: int) -> dict[str, int]:
            return voted.votes[kept[index]]

        return Ranking(post_ids, authors, [scores[subject] for subject in kept], facts, self._trace(voted))

    def order(
        self, viewer: str, as_of: int, indexed_until: int, weights: dict[str, float], start: tuple[int, int] | None
    ) -> Ordering:
        """The session's best entries, looking up only the posts that may be among them.

        Every vote is read (an index range per account and kind), but a voted post is looked up (its id, author and
        whether it is shown) only while its score, at the most any feedback weighs it, could still reach the
        `SESSION_DEPTH` best found: highest scores first, in batches growing fourfold. Most posts have one vote and
        are never looked up. The same entries as ranking every candidate; `removed` counts the votes of the posts
        looked up, and the candidates are the posts voted on less those found not shown.
        """
        voted = self._voted(viewer, as_of, indexed_until)
        scores = voted.scores(as_of, self.params.half_life_hours)
        subjects = sorted(scores, key=scores.__getitem__, reverse=True)
        most = max([1.0, *weights.values()])
        best: list[tuple[int, int, Candidate]] = []  # the best `SESSION_DEPTH` entries below `start`: a heap
        looked_up = below = 0
        batch = _FIRST_LOOKUPS
        while looked_up < len(subjects):
            if len(best) == SESSION_DEPTH and rank_score(scores[subjects[looked_up]], most) < best[0][0]:
                break  # no post left can rank among the best (nor tie with the lowest of them)
            chunk = subjects[looked_up : looked_up + batch]
            looked_up += len(chunk)
            batch *= 4
            for subject, (post_id, author) in voted.posts(chunk, self._kept_posts):
                rank = rank_score(scores[subject], weights.get(author, 1.0))
                if start is not None and (rank, post_id) >= start:
                    continue
                below += 1
                entry = (rank, post_id, Candidate(post_id, author, scores[subject], voted.votes[subject]))
                if len(best) < SESSION_DEPTH:
                    heapq.heappush(best, entry)
                elif (rank, post_id) > best[0][:2]:
                    heapq.heapreplace(best, entry)
        entries = sorted(best, key=itemgetter(0, 1), reverse=True)
        total = len(subjects) - voted.unshown
        cut = looked_up < len(subjects) or below > len(best)
        return Ordering(entries, total, start, cut, self._trace(voted))

    def _voted(self, viewer: str, as_of: int, indexed_until: int) -> _Votes:
        """The votes of the accounts `viewer` follows that count in a session as of `as_of`."""
        since = as_of - int(self.params.window_hours * HOUR_MS)
        follows = [account for (account,) in Follow.select(Follow.subject).where(Follow.author == viewer).tuples()]
        voted = _Votes(viewer)
        for account, votes in zip(follows, self._kept.votes(follows, since, indexed_until), strict=True):
            voted.add(account, votes)
        return voted

    @cached_property
    def _kept(self) -> KeptVotes:
        """The newest votes of the accounts this worker has read, kept up to date (`feedgen.ranking.kept_votes`)."""
        return KeptVotes(self.params.votes_per_account, self._load)

    def _load(self, account: str, since: int, until: int, bounds: tuple[int, ...]) -> list[tuple[int, int, str, str]]:
        """Of each kind, the account's newest `votes_per_account` votes indexed in `(since, until]` (with ties), and
        those after them up to the kind's bound."""
        # the nth newest in the window, or else the window's start, to the session's end
        nth = (account, since, until, self.params.votes_per_account - 1, since + 1, account)
        return list(self._votes.tuples(*nth, bounds[0], *nth, bounds[1]))

    def _trace(self, voted: _Votes) -> dict[str, Any]:
        params: NetworkParams = self.params
        return {
            'order': 'score, highest first',
            'filters': [
                f'liked or reposted by accounts you follow in the last {params.window_hours:g} hours',
                f'of each account its newest {params.votes_per_account} likes and {params.votes_per_account} reposts',
            ],
            'removed': dict(voted.removed),
        }

    @cached_property
    def _votes(self) -> Prepared:
        """An account's likes and reposts, as `(kind, indexed_at, uri, subject)`: of each kind its newest `count`
        indexed in `(since, until]` (and those indexed at the same moment as the last of them), and those after them up
        to a bound. Per kind, one range scan of `(author, indexed_at)` finds the `count`th newest, and one reads from
        there up: no sort."""
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
                model.select(peewee.SQL(str(n)), model.indexed_at, model.uri, model.subject)
                .where(model.author == account, model.indexed_at >= peewee.fn.COALESCE(nth, floor))
                .where(model.indexed_at <= until)
            )
            markers.extend((nth_account, nth_since, nth_until, offset, floor, account, until))
        return Prepared(parts[0].union_all(parts[1]), markers)

    @cached_property
    def _kept_posts(self) -> KeptPosts:
        """The voted posts this worker looked up, whether shown or not, kept until they change."""
        query = Post.select(Post.uri, Post.id, Post.author, Post.hidden, Post.self_labels).where(Post.uri.in_(_URIS))
        return KeptPosts(Prepared(query, _URIS), _LOOKUP)

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


class _Votes:
    """The votes a session counts, by post URI and voter (the newest of a voter's like and repost of it), and what
    looking their posts up left out."""

    def __init__(self, viewer: str) -> None:
        self.viewer = viewer
        self.votes: dict[str, dict[str, int]] = defaultdict(dict)
        self.rows: dict[str, int] = {}
        """How many likes and reposts each post has among the votes read (a like and a repost by one voter: 2)."""
        self.removed: Counter[str] = Counter()
        self.unshown = 0
        """How many of the posts looked up are not shown (not indexed, hidden, self-labelled or the reader's)."""

    def add(self, voter: str, votes: Iterable[Vote]) -> None:
        rows, counted = self.rows, self.votes
        for voted_at, _, subject in votes:
            rows[subject] = rows.get(subject, 0) + 1
            post_votes = counted[subject]
            if post_votes.get(voter, voted_at) <= voted_at:
                post_votes[voter] = voted_at

    def scores(self, as_of: int, half_life: float) -> dict[str, float]:
        """Each post's score: the sum of its votes' `decay` (inlined: this runs for every vote of a session)."""
        per_ms = HOUR_MS * half_life
        return {
            subject: sum([0.5 ** (max(0, as_of - at) / per_ms) for at in voters.values()])
            for subject, voters in self.votes.items()
        }

    def posts(self, subjects: Sequence[str], kept: KeptPosts) -> Iterator[tuple[str, tuple[int, str]]]:
        """`(uri, (post id, author))` of the posts of `subjects` shown in the feed; counts the others' votes."""
        for subject, post in zip(subjects, kept.rows(subjects), strict=True):
            reason = self._unshown(post)
            if reason is None:
                assert post is not None
                yield subject, (post[0], post[1])
            else:
                self.removed[reason] += self.rows[subject]
                self.unshown += 1

    def _unshown(self, post: tuple[Any, ...] | None) -> str | None:
        """Why the votes of `post` (`id, author, hidden, self_labels`; None: not indexed) do not count, if so."""
        if post is None or post[2]:
            return 'likes and reposts of posts not indexed or hidden'
        if post[3] and hiding_self_labels(post[3]):
            return 'likes and reposts of self-labelled posts'
        if post[1] == self.viewer:
            return 'likes and reposts of your own posts'
        return None
