"""Score pools: what an incremental scoring job keeps between runs, so a run reads only what changed since the last.

Owns `ScorePool`, for rankings whose scores never rise while a post's counters stay the same (hot decays with
age; catch-up's score stays). A full scan of the window ranks every candidate and keeps, besides how many there
are and which (a byte per post id), the counts of the candidates scoring at least `floor`: half the score of the
`depth`-th best, the pool. A post outside the pool scores below `floor` and, until it changes, ever less. So a
later run moves the pool forward by what happened since the last one (posts that changed, entered the window or
left it: `advance`), scores the pool again, and has the exact best `depth` as long as at least `depth` of the pool
still score `floor` or more. When they do not, or the pool grew past `POOL_LIMIT` (the best scores rose far above
`floor`), `advance` says so and the job scans the window again, making a new pool.

Holds post ids and counts in memory; reads and writes nothing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

Counts = TypeVar('Counts')

POOL_LIMIT = 20
"""The pool may hold this many times `depth` posts before a run scans the window again to raise its floor."""


class _Flags:
    """A set of post ids as one byte per id between the lowest and the highest: ids are dense and increasing."""

    def __init__(self) -> None:
        self.base = 0
        self.bytes = bytearray()

    def add(self, post_id: int) -> bool:
        """Adds `post_id`; returns whether it was not in the set."""
        if not self.bytes:
            self.base = post_id
        if post_id < self.base:
            self.bytes[:0] = bytes(self.base - post_id)
            self.base = post_id
        index = post_id - self.base
        if index >= len(self.bytes):
            self.bytes.extend(bytes(index + 1 - len(self.bytes)))
        added = not self.bytes[index]
        self.bytes[index] = 1
        return added

    def discard(self, post_id: int) -> bool:
        """Removes `post_id`; returns whether it was in the set."""
        index = post_id - self.base
        if not 0 <= index < len(self.bytes) or not self.bytes[index]:
            return False
        self.bytes[index] = 0
        return True


class ScorePool(Generic[Counts]):
    """The candidates of one ranking as of a run of its job: how many, which, and the counts of the pool."""

    def __init__(
        self,
        state: tuple[object, int],
        since: int,
        now: int,
        candidates: dict[int, Counts],
        score: Callable[[Counts, int], int],
        depth: int,
    ) -> None:
        """Builds the pool from every candidate (`post_id -> counts`) of the window `(since, now]`.

        `state`: the store and the last change (`PostChange.id`) the candidates include.
        """
        self.state = state
        self.since, self.now = since, now
        self.score, self.depth = score, depth
        self.flags = _Flags()
        for post_id in candidates:
            self.flags.add(post_id)
        self.count = len(candidates)
        scored = [(score(counts, now), post_id) for post_id, counts in candidates.items()]
        self.best = heapq.nlargest(depth, scored)
        self.floor: int | None = None
        """Every candidate outside the pool scores below it; None: the pool holds every candidate."""
        if len(self.best) == depth:
            kth = self.best[-1][0]
            self.floor = kth - abs(kth) // 2
        floor = self.floor
        self.pool = {post_id: candidates[post_id] for value, post_id in scored if floor is None or value >= floor}

    def advance(
        self, since: int, now: int, left: Iterable[int], changed: Iterable[int], found: dict[int, Counts]
    ) -> list[tuple[int, int]] | None:
        """Moves the pool to the window `(since, now]`; returns the best `(score, post_id)`, or None: scan again.

        `left`: posts whose time fell out of the window since the last run; `changed`: posts that changed or
        entered the window since; `found`: those of `changed` that are candidates now, with their counts.
        """
        for post_id in left:
            self._drop(post_id)
        for post_id in changed:
            counts = found.get(post_id)
            if counts is None:
                self._drop(post_id)
            else:
                self.count += self.flags.add(post_id)
                self.pool[post_id] = counts
        self.since, self.now = since, now
        scored = [(self.score(counts, now), post_id) for post_id, counts in self.pool.items()]
        if self.floor is not None:
            floor = self.floor
            kept = [entry for entry in scored if entry[0] >= floor]
            if len(kept) < len(scored):
                self.pool = {post_id: self.pool[post_id] for _, post_id in kept}
            scored = kept
        self.best = heapq.nlargest(self.depth, scored)
        short = self.floor is not None and len(self.best) < self.depth
        if short or len(self.pool) > POOL_LIMIT * self.depth:
            return None
        return self.best

    def counts(self, post_id: int) -> Counts:
        return self.pool[post_id]

    def _drop(self, post_id: int) -> None:
        self.count -= self.flags.discard(post_id)
        self.pool.pop(post_id, None)
