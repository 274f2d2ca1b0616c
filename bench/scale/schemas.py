"""Schemas: what a like costs to keep and to write under feedgen's schema and under schemas that intern identifiers.

Owns one measurement behind issue 13's storage and ingest targets: the same likes (random accounts liking random
posts, their keys time-ordered as ingest writes them) stored in a bare SQLite table four ways (at one or more page
sizes), then more of them written into the filled table in ingest-sized transactions. It reports bytes per like of
the table and each index (`dbstat`), and the seconds and WAL bytes of the later writes: the shape of the cost of a
like in a large store, without feedgen's code around it. Reposts have the like's shape; follows differ only in
naming an account instead of a post.

Usage: `python -m bench.scale.schemas [--likes 1000000] [--writes 100000] [--batch 10000]
[--page-bytes 4096,1024] [--only 0]`
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.ingest.synth import tid
from bench.measure import MB, load_averages, machine, markdown_table
from bench.serve.fill import did_of

TID_DIGITS = str.maketrans('234567abcdefghijklmnopqrstuvwxyz', '0123456789abcdefghijklmnopqrstuv')
"""A TID's sortable base32 as the digits `int(..., 32)` reads."""
BATCH = 10_000
"""Likes per transaction of those writes by default (ingest's batch catching up; live, a batch is about 500)."""

Like = tuple[int, str, int, int]
"""(account number, record key, post number, indexed_at ms)."""


@dataclass(frozen=True)
class Schema:
    name: str
    ddl: str
    row: Callable[[Like], tuple[object, ...]]


def schemas(accounts: list[str], posts: list[str]) -> list[Schema]:
    def as_int(key: str) -> int:
        return int(key.translate(TID_DIGITS), 32)

    def uri(like: Like) -> str:
        return f'at://{accounts[like[0]]}/app.bsky.feed.like/{like[1]}'

    indexes = 'create index l_s on l(subject); create index l_i on l(indexed_at);'
    return [
        Schema(
            'feedgen today: uri key, account and post as text',
            'create table l(uri text primary key, author text, subject text, indexed_at int);'
            f'create index l_a on l(author, indexed_at); {indexes}',
            lambda like: (uri(like), accounts[like[0]], posts[like[2]], like[3]),
        ),
        Schema(
            'no uri: (account, record key) as text',
            'create table l(author text, rkey text, subject text, indexed_at int);'
            f'create unique index l_k on l(author, rkey); create index l_a on l(author, indexed_at); {indexes}',
            lambda like: (accounts[like[0]], like[1], posts[like[2]], like[3]),
        ),
        Schema(
            'interned: account and post ids, record key as an integer',
            'create table l(author int, rkey int, subject int, indexed_at int);'
            f'create unique index l_k on l(author, rkey); create index l_a on l(author, indexed_at); {indexes}',
            lambda like: (like[0], as_int(like[1]), like[2], like[3]),
        ),
        Schema(
            'interned, keyed by (account, record key) without rowid',
            'create table l(author int, rkey int, subject int, indexed_at int, primary key (author, rkey)) '
            f'without rowid; {indexes}',
            lambda like: (like[0], as_int(like[1]), like[2], like[3]),
        ),
    ]


def likes(count: int, accounts: int, posts: int, start_ms: int, rng: random.Random) -> Iterator[Like]:
    for index in range(count):
        at = start_ms + index * 10
        yield rng.randrange(accounts), tid(at * 1000 + rng.randrange(1000), 0), rng.randrange(posts), at


def measure(
    schema: Schema, page_bytes: int, args: argparse.Namespace, accounts: list[str], folder: Path
) -> list[object]:
    path = folder / 'likes.db'
    for old in folder.glob('likes.db*'):
        old.unlink()
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        f'pragma page_size={page_bytes}; pragma journal_mode=wal; pragma wal_autocheckpoint=0;' + schema.ddl
    )
    rng = random.Random(1)
    db.execute('begin')
    db.executemany(f'insert into l values ({",".join("?" * 4)})',
                   map(schema.row, likes(args.likes, len(accounts), args.posts, 0, rng)))  # fmt: skip
    db.execute('commit')
    db.execute('pragma wal_checkpoint(truncate)')
    sizes = dict(db.execute('select name, sum(pgsize) from dbstat group by name').fetchall())
    sizes.pop('sqlite_schema', None)
    more = list(likes(args.writes, len(accounts), args.posts, args.likes * 10, rng))
    started = time.perf_counter()
    for first in range(0, args.writes, args.batch):
        db.execute('begin')
        db.executemany('insert into l values (?, ?, ?, ?)', map(schema.row, more[first : first + args.batch]))
        db.execute('commit')
    seconds = time.perf_counter() - started
    wal = Path(f'{path}-wal').stat().st_size
    db.close()
    parts = ', '.join(f'{name} {size / args.likes:.0f}' for name, size in sorted(sizes.items()))
    return [schema.name, page_bytes, round(sum(sizes.values()) / args.likes), parts, round(args.writes / seconds),
            round(wal / MB, 1)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--likes', type=int, default=1_000_000, help='Likes in the filled table.')
    parser.add_argument('--accounts', type=int, default=150_000)
    parser.add_argument('--posts', type=int, default=200_000)
    parser.add_argument('--writes', type=int, default=100_000, help='Likes then written into the filled table.')
    parser.add_argument('--batch', type=int, default=BATCH, help='Likes per transaction of those writes.')
    parser.add_argument('--page-bytes', default='4096', help='SQLite page sizes to compare (comma-separated).')
    parser.add_argument('--only', type=int, default=None, help='Only the schema of this number (0: feedgen today).')
    args = parser.parse_args(argv)
    rng = random.Random(0)
    accounts = [did_of(index) for index in range(args.accounts)]
    posts = [f'at://{accounts[rng.randrange(args.accounts)]}/app.bsky.feed.post/{tid(rng.getrandbits(52), 0)}'
             for _ in range(args.posts)]  # fmt: skip
    print(f'{machine()}\nLoad averages before: {load_averages()}\n')
    print(f'{args.likes:,} likes of {args.posts:,} posts by {args.accounts:,} accounts; then {args.writes:,} more '
          f'written into the filled table, {args.batch:,} a transaction.\n')  # fmt: skip
    out = Path(__file__).parents[1] / 'out'
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as folder:
        chosen = schemas(accounts, posts)
        chosen = chosen if args.only is None else [chosen[args.only]]
        pages = [int(size) for size in args.page_bytes.split(',')]
        rows = [measure(schema, size, args, accounts, Path(folder)) for schema in chosen for size in pages]
    print(markdown_table(['schema', 'page bytes', 'bytes per like', 'table and indexes, bytes per like',
                          'likes/s written into it', 'WAL MB for those'], rows))  # fmt: skip
    print(f'\nLoad averages after: {load_averages()}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
