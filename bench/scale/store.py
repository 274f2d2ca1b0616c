"""The steady-state store of the scale benchmark: a fraction of 72 hours of the whole network, and what it weighs.

Owns the network's volumes (posts a day; likes, reposts and follows per post; accounts active in the window), the
`bench.serve.fill.Shape` they give at a fraction of the full window, and the storage report: bytes of every table
and index (SQLite's `dbstat` table) per row of its table. The engagement is heavy-tailed as on the network: 60%
of posts draw no like or repost at all, the others' popularity is Pareto-distributed with shape 1.4 (a few posts
take tens of thousands of likes at full size), and likes come a few hours after their post: the newest posts
are still drawing theirs, and the oldest likes are of posts already pruned (`Shape.steady`). Rows are written by
`bench.serve.fill.Filler` (bulk `executemany` into the tables `feedgen.store.models` creates); the counters of
every post are set from the rows, as the indexer's recounts would.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.serve.fill import Filler, Shape, StoreInfo

POSTS_PER_DAY = 2_200_000
LIKES_PER_POST = 6.7
REPOSTS_PER_POST = 0.76
FOLLOWS_PER_POST = 1.4
WINDOW_HOURS = 72
ACCOUNTS = 3_000_000
"""Accounts that post, like, repost or follow in 72 hours at full size (an estimate: about 1.5M daily actives)."""
UNLIKED = 0.6
TAIL = 1.4
LIKE_DELAY_MS = 3 * 3_600_000


@dataclass(frozen=True)
class Volumes:
    """What a store at `fraction` of the full window holds, as asked (the fill draws follows at random)."""

    fraction: float
    posts: int
    accounts: int
    shape: Shape

    @classmethod
    def at(cls, fraction: float) -> Volumes:
        posts = max(100, round(POSTS_PER_DAY * WINDOW_HOURS / 24 * fraction))
        accounts = max(1000, round(ACCOUNTS * fraction))
        shape = Shape(
            window_ms=WINDOW_HOURS * 3_600_000,
            likes_per_post=LIKES_PER_POST,
            reposts_per_post=REPOSTS_PER_POST,
            follows_per_account=FOLLOWS_PER_POST * posts / accounts,
            unliked=UNLIKED,
            tail=TAIL,
            recency=False,
            like_delay_ms=LIKE_DELAY_MS,
            steady=True,
        )
        return cls(fraction, posts, accounts, shape)


def fill(path: Path, volumes: Volumes, seed: int = 1) -> StoreInfo:
    """Builds the store at `path` (replacing any file there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return Filler(volumes.posts, volumes.accounts, seed=seed, shape=volumes.shape).write(path)


@dataclass(frozen=True)
class Stored:
    """One table or index: its bytes on disk (pages, free space in them included) and the rows of its table."""

    table: str
    name: str
    """The table's name, or its index's."""
    bytes: int
    rows: int

    @property
    def per_row(self) -> float:
        return self.bytes / self.rows if self.rows else 0.0


def storage(path: Path) -> list[Stored]:
    """Every non-empty table and its indexes, with their sizes (`dbstat`), biggest tables first."""
    with sqlite3.connect(f'file:{path}?mode=ro', uri=True) as conn:
        owners = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        sizes = dict(conn.execute('SELECT name, SUM(pgsize) FROM dbstat GROUP BY name'))
        rows = {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in set(owners.values())}
    stored = [Stored(owners[name], name, size, rows[owners[name]]) for name, size in sizes.items() if name in owners]
    by_table: dict[str, int] = {}
    for item in stored:
        by_table[item.table] = by_table.get(item.table, 0) + item.bytes
    stored = [item for item in stored if item.rows]
    return sorted(stored, key=lambda item: (-by_table[item.table], item.table, item.name != item.table, item.name))


def table_totals(stored: list[Stored]) -> dict[str, Stored]:
    """Per table: its bytes with its indexes', and its rows."""
    totals: dict[str, Stored] = {}
    for item in stored:
        total = totals.get(item.table, Stored(item.table, item.table, 0, item.rows))
        totals[item.table] = Stored(item.table, item.table, total.bytes + item.bytes, item.rows)
    return totals
