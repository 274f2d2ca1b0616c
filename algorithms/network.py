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

Ranked per session (`feedgen.ranking.personal`). A worker keeps each followed account's newest likes and reposts
(`feedgen.ranking.kept_votes`, up to date with what was indexed and deleted since; an account it does not keep is read
through the indexes on `(author, indexed_at)`), and each recent reader's votes tallied by post (`_Tally`): a first
page changes the tally of only the accounts whose counted votes changed since the reader's last session, takes the
posts in the order of their scores (the same at every moment: every vote halves in weight at the same rate), and looks
up (`feedgen.ranking.kept_posts`) and scores only the posts that may rank among the session's best, highest first; the
pages after it are cut from the ranking it kept. The entries are those of scoring every voted post.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections import Counter, OrderedDict
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
_VIEWER = marker('viewer')
_FOLLOWS = Prepared(Follow.select(Follow.subject).where(Follow.author == _VIEWER), (_VIEWER,))
TALLIES = 32
"""How many readers' tallies of votes a worker keeps (`Network.order`), the least recently ranked going first."""
_TALLIES_LOCK = threading.Lock()
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
        follows = _follows(viewer)
        tally = _Tally(follows, self.params.half_life_hours, as_of)
        tally.update(follows, self._kept.votes(follows, self._since(as_of), indexed_until))
        lookups = _Lookups(viewer, tally)
        post_ids, authors, kept = [], [], []
        for subject, post in lookups.posts(list(tally.votes), self._kept_posts):
            post_ids.append(post[0])
            authors.append(post[1])
            kept.append(subject)

        def facts(index: int) -> dict[str, int]:
            return tally.votes[kept[index]]

        scores = [tally.score(subject, as_of) for subject in kept]
        return Ranking(post_ids, authors, scores, facts, self._trace(lookups))

    def order(
        self, viewer: str, as_of: int, indexed_until: int, weights: dict[str, float], start: tuple[int, int] | None
    ) -> Ordering:
        """The session's best entries, looking up only the posts that may be among them.

        The reader's votes are tallied by post once and kept (`_Tally`): a session changes the tally of only the
        followed accounts whose counted votes changed since the last (new votes, deleted ones, votes leaving the
        window), and keeps the posts in the order of their scores, which is the same at every moment (every vote
        halves in weight at the same rate). A voted post is looked up (its id, author and whether it is shown) only
        while its score, at the most any feedback weighs it, could still reach the `SESSION_DEPTH` best found:
        highest scores first, in batches growing fourfold. Most posts have one vote and are never looked up, nor
        scored. The same entries as ranking every candidate; `removed` counts the votes of the posts looked up, and
        the candidates are the posts voted on less those found not shown.
        """
        follows = _follows(viewer)
        with _TALLIES_LOCK:
            tallies: OrderedDict[str, _Tally] = self.__dict__.setdefault('_tallies', OrderedDict())
            tally = tallies.pop(viewer, None)
            if tally is None or tally.follows != follows:
                tally = _Tally(follows, self.params.half_life_hours, as_of)
            tallies[viewer] = tally
            while len(tallies) > TALLIES:
                tallies.popitem(last=False)
        with tally.lock:
            tally.update(follows, self._kept.votes(follows, self._since(as_of), indexed_until))
            subjects = tally.ordered(as_of)
            lookups = _Lookups(viewer, tally)
            most = max([1.0, *weights.values()])
            best: list[tuple[int, int, Candidate]] = []  # the best `SESSION_DEPTH` entries below `start`: a heap
            looked_up = below = 0
            batch = _FIRST_LOOKUPS
            while looked_up < len(subjects):
                # the order is the scores' up to rounding: the next score's rank, plus one, bounds all after it
                bound = rank_score(tally.score(subjects[looked_up], as_of), most) + 1
                if len(best) == SESSION_DEPTH and bound < best[0][0]:
                    break  # no post left can rank among the best (nor tie with the lowest of them)
                chunk = subjects[looked_up : looked_up + batch]
                looked_up += len(chunk)
                batch *= 4
                for subject, (post_id, author) in lookups.posts(chunk, self._kept_posts):
                    score = tally.score(subject, as_of)
                    rank = rank_score(score, weights.get(author, 1.0))
                    if start is not None and (rank, post_id) >= start:
                        continue
                    below += 1
                    # the voters as of this session (the tally changes with the next)
                    entry = (rank, post_id, Candidate(post_id, author, score, dict(tally.votes[subject])))
                    if len(best) < SESSION_DEPTH:
                        heapq.heappush(best, entry)
                    elif (rank, post_id) > best[0][:2]:
                        heapq.heapreplace(best, entry)
            entries = sorted(best, key=itemgetter(0, 1), reverse=True)
        total = len(subjects) - lookups.unshown
        cut = looked_up < len(subjects) or below > len(best)
        return Ordering(entries, total, start, cut, self._trace(lookups))

    def _since(self, as_of: int) -> int:
        """The start of the window of a session as of `as_of`."""
        return as_of - int(self.params.window_hours * HOUR_MS)

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

    def _trace(self, lookups: _Lookups) -> dict[str, Any]:
        params: NetworkParams = self.params
        return {
            'order': 'score, highest first',
            'filters': [
                f'liked or reposted by accounts you follow in the last {params.window_hours:g} hours',
                f'of each account its newest {params.votes_per_account} likes and {params.votes_per_account} reposts',
            ],
            'removed': dict(lookups.removed),
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


def _follows(viewer: str) -> list[str]:
    return [account for (account,) in _FOLLOWS.tuples(viewer)]


class _Tally:
    """The votes counted for one reader, by post and voter (the newest of a voter's like and repost of it), changed
    account by account; `lock` guards it.

    Keeps each post's key, its score up to a factor the same for every post: the sum over its voters of
    `2 ^ ((voted at - reference) / half-life)`, the score at `reference`. Every vote halves in weight at the same rate,
    so the keys order the posts as their scores do at any moment, up to rounding; a session scores only the posts it
    looks at (`score`: exact, and the same whatever order the voters were counted in)."""

    def __init__(self, follows: list[str], half_life_hours: float, reference: int) -> None:
        self.follows = follows
        self.per_ms = HOUR_MS * half_life_hours
        self.reference = reference
        self.lock = threading.Lock()
        self.counted: dict[str, list[Vote]] = {}
        """The votes of each followed account counted."""
        self.votes: dict[str, dict[str, int]] = {}
        self.rows: dict[str, int] = {}
        """How many likes and reposts each post has among the votes counted (a like and a repost by one voter: 2)."""
        self.keys: dict[str, float] = {}
        self._ordered: list[str] | None = []
        self.newest = 0
        """When the newest vote counted since the tally began was indexed."""

    def update(self, accounts: Sequence[str], selections: Sequence[list[Vote]]) -> None:
        """Counts, of each of `accounts`, the votes `selections` gives in place of those counted before."""
        touched: set[str] = set()
        for account, votes in zip(accounts, selections, strict=True):
            before = self.counted.get(account, [])
            if before == votes:
                continue
            self.counted[account] = votes
            for _, _, subject in before:
                self.rows[subject] -= 1
                self.votes[subject].pop(account, None)
            self._add(account, votes)
            self.newest = max([self.newest, *(at for at, _, _ in votes)])
            touched.update(subject for _, _, subject in before)
            touched.update(subject for _, _, subject in votes)
        for subject in touched:
            voters = self.votes[subject]
            if voters:
                self.keys[subject] = sum([2 ** ((at - self.reference) / self.per_ms) for at in voters.values()])
            else:
                del self.votes[subject], self.rows[subject]
                self.keys.pop(subject, None)
        if touched:
            self._ordered = None

    def _add(self, voter: str, votes: Iterable[Vote]) -> None:
        rows, counted = self.rows, self.votes
        for voted_at, _, subject in votes:
            rows[subject] = rows.get(subject, 0) + 1
            post_votes = counted.setdefault(subject, {})
            if post_votes.get(voter, voted_at) <= voted_at:
                post_votes[voter] = voted_at

    def ordered(self, as_of: int) -> list[str]:
        """The posts voted on, highest score as of `as_of` first (up to rounding): by key, unless a vote counted is
        newer than `as_of` (a replayed capture: such votes weigh 1, their key more)."""
        if self.newest > as_of:
            return sorted(self.keys, key=lambda subject: self.score(subject, as_of), reverse=True)
        if self._ordered is None:
            self._ordered = sorted(self.keys, key=self.keys.__getitem__, reverse=True)
        return self._ordered

    def score(self, subject: str, as_of: int) -> float:
        """The post's score as of `as_of`: the sum of its voters' `decay`, rounded once (`math.fsum`)."""
        per_ms = self.per_ms
        return math.fsum([0.5 ** (max(0, as_of - at) / per_ms) for at in self.votes[subject].values()])


class _Lookups:
    """What looking a session's posts up left out."""

    def __init__(self, viewer: str, tally: _Tally) -> None:
        self.viewer = viewer
        self.tally = tally
        self.removed: Counter[str] = Counter()
        self.unshown = 0
        """How many of the posts looked up are not shown (not indexed, hidden, self-labelled or the reader's)."""

    def posts(self, subjects: Sequence[str], kept: KeptPosts) -> Iterator[tuple[str, tuple[int, str]]]:
        """`(uri, (post id, author))` of the posts of `subjects` shown in the feed; counts the others' votes."""
        for subject, post in zip(subjects, kept.rows(subjects), strict=True):
            reason = self._unshown(post)
            if reason is None:
                assert post is not None
                yield subject, (post[0], post[1])
            else:
                self.removed[reason] += self.tally.rows[subject]
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
