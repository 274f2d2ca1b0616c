"""Time the engine's periodic and personal work on a filled store: score jobs, pruning, network and quiet pages.

Owns a quick, repeatable measurement of the parts issue 13 makes cheap, on a copy of a filled serve store
(`bench/serve/fill.py`; the copy is written to). Score jobs: a full scan of the window (a fresh algorithm, as every
run did before incremental scoring) against the incremental run of a kept one, after each simulated minute of
likes indexed through the indexer. Personal feeds: the first page of `network` and `quiet` for the store's reader
(who follows 500 busy accounts), cold (first request) and warm (p50, p99 of repeated first pages).

`following` (`--only following`): the first page for the same reader, `--repeats` times with the followed accounts
sought through one range of the whole window and as shipped (widening ranges), and whether the pages are identical.

Pruning (`--only prune`): what is older than `--prune-hours` before the store's newest post, each of the job's
transactions timed (from its `BEGIN IMMEDIATE` to its `COMMIT`) with the rows it changed, while a
`bench.scale.run.WriterProbe` (another writer, as ingest is) takes the write lock over and over and keeps its waits.

Usage: `cp bench/out/serve-1000000.db* bench/out/serve-1000000.json /tmp/x/ &&
python -m bench.engine --store /tmp/x/serve-1000000.db` (a `bench.scale` store: its `.info.json` beside it).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import peewee
from feedgen_algorithms import following

from bench.scale.run import WriterProbe
from feedgen import jobs
from feedgen.ingest.events import Commit, SubjectCreate
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.records import LIKE
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.plugins import discover_algorithms
from feedgen.store.models import Post, open_database


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def like_minute(indexer: Indexer, post_ids: tuple[int, int], now_ms: int, likes: int, rng: random.Random) -> None:
    """Indexes `likes` likes of random posts, one commit each, in batches of 1,000 as ingest would."""
    ids = [rng.randint(*post_ids) for _ in range(likes)]
    uris = [uri for (uri,) in Post.select(Post.uri).where(Post.id.in_(ids)).tuples()]
    iso = time.strftime('%Y-%m-%dT%H:%M:%S.000Z', time.gmtime(now_ms / 1000))
    commits = []
    for uri in uris:
        seq = (indexer.cursor or 0) + len(commits) + 1
        author = f'did:plc:engine{rng.randrange(100_000)}'
        commit = Commit(seq=seq, repo=author, time=iso, time_ms=now_ms)
        commit.ops.append(SubjectCreate(LIKE, f'at://{author}/{LIKE}/e{seq}', author, uri))
        commits.append(commit)
    for start in range(0, len(commits), 1000):
        indexer.write(commits[start : start + 1000])


def score_jobs(db: peewee.Database, info: dict[str, object], minutes: int, likes: int) -> list[str]:
    algorithms = discover_algorithms()
    now = int(info['newest_ms'])  # type: ignore[call-overload]
    lowest, highest = (
        Post.select(Post.id).order_by(Post.id).first().id,
        Post.select(Post.id).order_by(Post.id.desc()).first().id,
    )
    indexer = Indexer(db, 'bench-engine', clock=lambda: now / 1000)
    kept = {name: algorithms[name]() for name in ('hot', 'catch-up')}
    lines = ['| job | full scan s | incremental s (median, max) | runs |', '|---|---:|---:|---:|']
    full: dict[str, list[float]] = {name: [] for name in kept}
    incremental: dict[str, list[float]] = {name: [] for name in kept}
    for algorithm in kept.values():
        algorithm.refresh(db, now_ms=now)  # the first run scans
    rng = random.Random(1)
    for _ in range(minutes):
        now += 60_000
        like_minute(indexer, (lowest, highest), now, likes, rng)
        for name, algorithm in kept.items():
            incremental[name].append(timed(partial(algorithm.refresh, db, now_ms=now)))
            full[name].append(timed(partial(algorithms[name]().refresh, db, now_ms=now)))
    for name in kept:
        inc, scan = incremental[name], statistics.median(full[name])
        lines.append(f'| {name} | {scan:.3f} | {statistics.median(inc):.3f}, {max(inc):.3f} | {minutes} |')
    return lines


def personal_pages(info: dict[str, object], repeats: int) -> list[str]:
    algorithms = discover_algorithms()
    viewer, now = str(info['viewer']), int(info['newest_ms'])  # type: ignore[call-overload]
    lines = ['| feed | cold first page ms | warm p50 ms | warm p99 ms | items |', '|---|---:|---:|---:|---:|']
    for name in ('network', 'quiet'):
        algorithm = algorithms[name]()
        request = FeedRequest(limit=30, viewer=viewer, at_ms=now)
        cold = timed(partial(algorithm.page, request))
        times = []
        for n in range(repeats):
            algorithm = algorithms[name]()  # no session kept: every page is a first page
            times.append(timed(partial(algorithm.page, FeedRequest(limit=30, viewer=viewer, at_ms=now - n))))
        items = len(algorithm.page(request).items)
        p99 = sorted(times)[max(0, int(len(times) * 0.99) - 1)]
        lines.append(
            f'| {name} | {cold * 1000:.1f} | {statistics.median(times) * 1000:.1f} | {p99 * 1000:.1f} | {items} |'
        )
    return lines


def following_pages(info: dict[str, object], repeats: int) -> list[str]:
    """First pages of `following` for the store's reader: its seeks of the followed accounts through one range of
    the whole window (every match sorted: the query as it was before the widening ranges) and as shipped."""
    algorithm = following.Following()
    viewer = str(info['viewer'])
    lines = ['| seeks of followed accounts | p50 ms | p99 ms | items |', '|---|---:|---:|---:|']
    shipped = following.WINDOW_MS
    pages = {}
    for label, window in (('one range: every match sorted', 2**62), ('widening ranges (shipped)', shipped)):
        following.WINDOW_MS = window
        try:
            times = [timed(partial(algorithm.page, FeedRequest(limit=30, viewer=viewer))) for _ in range(repeats)]
            pages[label] = algorithm.page(FeedRequest(limit=30, viewer=viewer))
        finally:
            following.WINDOW_MS = shipped
        p99 = sorted(times)[max(0, int(len(times) * 0.99) - 1)]
        items = len(pages[label].items)
        lines.append(f'| {label} | {statistics.median(times) * 1000:.1f} | {p99 * 1000:.1f} | {items} |')
    same = len({(tuple(page.items), page.cursor) for page in pages.values()}) == 1
    return [*lines, '', f'identical first pages: {same}']


def prune_transactions(db: peewee.Database, info: dict[str, object], hours: float) -> list[str]:
    """Prunes what is older than `hours` before the store's newest post, timing each transaction and another writer's
    waits."""
    took: list[float] = []
    rows: list[int] = []
    began: list[tuple[float, int]] = []
    slowest: dict[str, float] = {}
    """The longest transaction of each table, by the table its first DELETE names."""
    table = ''
    connection = db.connection()

    def trace(statement: str) -> None:
        nonlocal table
        if statement.startswith('BEGIN'):
            began.append((time.perf_counter(), connection.total_changes))
            table = ''
        elif statement.startswith('DELETE FROM') and not table:
            table = statement.split()[2].strip('"')
        elif statement == 'COMMIT' and began:
            started, changes = began.pop()
            took.append(time.perf_counter() - started)
            rows.append(connection.total_changes - changes)
            slowest[table] = max(slowest.get(table, 0.0), took[-1])

    connection.set_trace_callback(trace)
    try:
        with WriterProbe(Path(db.database)) as probe:
            started = time.perf_counter()
            removed = jobs.prune(db, retention_hours=hours, now=int(info['newest_ms']) / 1000)  # type: ignore[call-overload]
            seconds = time.perf_counter() - started
    finally:
        connection.set_trace_callback(None)
    rows.sort()
    slow = sum(wait > 0.1 for wait in probe.waits)
    return [
        f'pruned {removed} in {seconds:.1f} s, {len(took)} transactions; rows each: median {rows[len(rows) // 2]}, '
        f'max {rows[-1]}',
        f'transaction ms: {spread(took)}',
        f'writer waits ({len(probe.waits)}) ms: {spread(probe.waits)}; over 100 ms: {slow}',
        'longest transaction ms by table: ' + ', '.join(f'{name} {ms * 1000:.1f}' for name, ms in slowest.items()),
    ]


def info_file(store: Path) -> Path:
    """What a filled store holds: `X.json` beside `X.db` (`bench.serve.fill`), or `X.info.json` (`bench.scale`)."""
    serve = store.with_suffix('.json')
    return serve if serve.exists() else store.with_suffix('.info.json')


def spread(seconds: list[float]) -> str:
    """The median, p99 and max of `seconds`, in ms."""
    ordered = sorted(seconds)
    median, p99 = (ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000 for share in (0.5, 0.99))
    return f'median {median:.1f}, p99 {p99:.1f}, max {ordered[-1] * 1000:.1f}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--store', type=Path, required=True, help='A copy of a filled serve store (written to).')
    parser.add_argument('--minutes', type=int, default=5, help='Simulated minutes of likes between score runs.')
    parser.add_argument('--likes', type=int, default=10_000, help='Likes indexed per simulated minute.')
    parser.add_argument('--repeats', type=int, default=50, help='First pages timed per personal feed.')
    parser.add_argument('--only', choices=('jobs', 'pages', 'prune', 'following'), help='Run one part.')
    parser.add_argument('--prune-hours', type=float, default=12.0, help='What `--only prune` keeps.')
    args = parser.parse_args(argv)
    info = json.loads(info_file(args.store).read_text())
    db = open_database(args.store)
    if args.only == 'following':
        print('\n'.join(following_pages(info, args.repeats)))
        return 0
    if args.only == 'prune':
        print('\n'.join(prune_transactions(db, info, args.prune_hours)))
        return 0
    if args.only != 'jobs':
        print('\n'.join(personal_pages(info, args.repeats)), end='\n\n')
    if args.only != 'pages':
        print('\n'.join(score_jobs(db, info, args.minutes, args.likes)))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
