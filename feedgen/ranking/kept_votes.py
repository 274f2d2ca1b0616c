"""Kept votes: each account's newest likes and reposts, kept by a serving worker for `network`'s first pages.

Read from the store, a `network` session reads the newest votes of every account the reader follows: hundreds of
index ranges a page. A worker keeps instead, per account it has read, of each kind (likes, reposts) its newest
`count` votes (and those of the same millisecond as the last of them), and brings them up to date before a page from
what was indexed since it last looked (`feedgen.ranking.arrivals`: one range of each table's `indexed_at` index, on
SQLite only when something was written): a new vote is added to the kept account it is by. An account some of whose
votes were deleted since (`VoteChange`, which the writers note) is forgotten, and read again when next needed.

A session counts, of each account, its newest `count` votes of the session's window, indexed by the session's
watermark (`feedgen.ranking.personal`); an account's kept votes answer it when they hold them: the account was read
for a window starting no later, and nothing it kept was dropped for being older than the newest `count` of a
watermark past the session's. Otherwise (an older session, an account never read) the account is read again from the
store: its newest `count` votes of the window by the watermark, and every vote after it up to what the worker has
read. So the votes are the store's, vote for vote. An account's kept votes are read again after `REBUILD_SECONDS`
(votes the prune removes, which count only in a window longer than the retention, are not noted). Memory is bounded:
`ACCOUNTS` accounts a worker, about `3 * count` votes each at most.
"""

from __future__ import annotations

import bisect
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from feedgen.ranking.arrivals import Arrivals, Changes, Follower
from feedgen.store.models import Like, Repost, VoteChange

ACCOUNTS = 10_000
"""How many accounts' votes a worker keeps, the least recently read going first (about 3 KB each)."""
REBUILD_SECONDS = 300.0
"""How long an account's kept votes are used before they are read from the store again."""
KINDS = (Like, Repost)
"""The kinds of votes: the index of its table here is a vote's kind."""

Vote = tuple[int, str, str]
"""A like or repost: when it was indexed, its record key and its subject (ordered by these)."""
Load = Callable[[str, int, int, tuple[int, ...]], Iterable[tuple[int, int, str, str]]]
"""Reads an account's votes from the store, as `(kind, indexed_at, uri, subject)`: of each kind, its newest `count`
(with ties) indexed in `(since, until]` and every later one indexed by that kind's bound (the last argument)."""
_CHANGES = Changes.of(VoteChange.select(VoteChange.id, VoteChange.account), VoteChange.id)
"""The accounts whose votes writers deleted."""
_ARRIVALS = tuple(Arrivals.of(kind.indexed_at, (kind.uri, kind.author, kind.subject)) for kind in KINDS)


def _vote(indexed_at: int, uri: str, subject: str) -> Vote:
    """A vote as kept: its record key for its URI, its subject one string for every vote of the post."""
    return indexed_at, uri.rpartition('/')[2], sys.intern(subject)


@dataclass
class _Account:
    since: int
    """Votes indexed after this are kept (the window's start when the account was read)."""
    trimmed: int
    """The kept votes hold the newest `count` of each kind indexed by any watermark from this one on."""
    read_at: float
    """When the account was read from the store (monotonic seconds)."""
    kinds: tuple[list[Vote], ...] = field(default_factory=lambda: tuple([] for _ in KINDS))
    """Per kind, ascending."""

    def add(self, kind: int, vote: Vote) -> bool:
        """Adds `vote` unless kept already; returns whether it was new."""
        kept = self.kinds[kind]
        at = bisect.bisect_left(kept, vote)
        if at < len(kept) and kept[at] == vote:
            return False
        kept.insert(at, vote)
        return True

    def trim(self, kind: int, count: int) -> None:
        """Drops the votes of `kind` older than its newest `count` and their ties, once it keeps `3 * count`."""
        kept = self.kinds[kind]
        if len(kept) > 3 * count:
            del kept[: bisect.bisect_left(kept, (kept[-count][0],))]
            self.trimmed = max(self.trimmed, kept[-1][0])

    def session(self, since: int, until: int, count: int) -> list[Vote]:
        """Of each kind, the newest `count` votes indexed in `(since, until]` (with ties)."""
        votes: list[Vote] = []
        for kept in self.kinds:
            first = bisect.bisect_right(kept, (since, '\U0010ffff'))
            end = bisect.bisect_right(kept, (until, '\U0010ffff'))
            if end - first > count:
                first = bisect.bisect_left(kept, (kept[end - count][0],), first, end)
            votes += kept[first:end]
        return votes


class KeptVotes(Follower):
    """The votes a worker keeps for one feed: of each account, its newest `count` of each kind, read from the store
    by `load`; safe to share between a server's threads (one page at a time)."""

    def __init__(self, count: int, load: Load) -> None:
        super().__init__(_ARRIVALS, _CHANGES)
        self.count = count
        self.load = load
        self._accounts: OrderedDict[str, _Account] = OrderedDict()

    def votes(self, accounts: Sequence[str], since: int, until: int) -> list[list[Vote]]:
        """Of each of `accounts`, its newest `count` votes of each kind indexed in `(since, until]` (with ties)."""
        with self._lock:
            self._up_to_date()
            stale = time.monotonic() - REBUILD_SECONDS
            found = []
            for account in accounts:
                kept = self._accounts.get(account)
                if kept is None or since < kept.since or until < kept.trimmed or kept.read_at < stale:
                    kept = self._read(account, since, until)
                else:
                    self._accounts.move_to_end(account)
                found.append(kept.session(since, until, self.count))
            while len(self._accounts) > ACCOUNTS:
                self._accounts.popitem(last=False)
            return found

    def _read(self, account: str, since: int, until: int) -> _Account:
        kept = self._accounts[account] = _Account(since, until, time.monotonic())
        self._accounts.move_to_end(account)
        bounds = tuple(max(until, mark.at) for mark in self._marks)
        for kind, at, uri, subject in self.load(account, since, until, bounds):
            kept.add(kind, _vote(at, uri, subject))
        return kept

    def _arrived(self, index: int, rows: list[tuple[Any, ...]]) -> None:
        """Adds the new votes of kind `index` to the accounts kept."""
        for at, uri, author, subject in rows:
            kept = self._accounts.get(author)
            if kept is not None and kept.add(index, _vote(at, uri, subject)):
                kept.trim(index, self.count)

    def _changed(self, changes: list[tuple[Any, ...]]) -> None:
        """Forgets the accounts whose votes were deleted (read again when next needed)."""
        for _, account in changes:
            self._accounts.pop(account, None)

    def _forget(self) -> None:
        self._accounts.clear()
