"""Serve benchmark: getFeedSkeleton throughput and latency at a million posts, against a minimal ceiling.

Owns the serve measurement: it fills (or reuses) the cached store of `bench.serve.fill`, starts
feedgen's server (`bench.serve.app`: `feedgen serve` with the viewer's signing key local) on a loopback port
with a feeds config covering every installed algorithm (`latest`, `topic` by hashtag and by language, `hot`,
`following` for a viewer following 500 accounts, then the others with default parameters), runs their
scheduled jobs once, collects first-page and deep
(10,000+ items down) cursors by walking each feed, and runs wrk at 1, 16 and 64 connections per feed and
page depth, sampling the server's CPU and memory (summed RSS, and the largest process's private memory apart from
the store pages it maps: `bench.measure`). In the same run it measures the ceiling app
(`bench.serve.ceiling`) under granian with the same worker settings. Prints markdown tables. With
`--database postgresql://...` the server reads a PostgreSQL copy of the store (`bench.serve.postgres`); the
server CPU column then leaves out PostgreSQL's own processes.

Usage: `python -m bench.serve.run [--posts 1000000] [--seconds 5] [--connections 1,16,64] [--feeds latest,hot]`
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

from bench.measure import TreeSampler, load_averages, markdown_table
from bench.serve.app import SERVERS, viewer_token
from bench.serve.fill import TAG, StoreInfo, cached_store
from bench.serve.loadgen import Load, require_wrk, run_wrk
from bench.serve.postgres import copy_store
from feedgen.jobs import feed_jobs
from feedgen.ranking.plugins import discover_algorithms, load_feeds
from feedgen.store.models import open_database
from tests.jwts import SigningKey

OUT = Path(__file__).resolve().parents[1] / 'out'
ROOT = Path(__file__).resolve().parents[2]
PUBLISHER = 'did:web:localhost'
DEEP_ITEMS = 10_000
"""Deep cursors start this many items down the feed."""
DEEP_CURSORS = 20
PAGE_LIMIT = 50


@dataclass(frozen=True)
class Target:
    """One benchmarked feed page kind: the requests wrk cycles through."""

    feed: str
    page: str
    requests: list[str]


@dataclass(frozen=True)
class Row:
    target: str
    page: str
    connections: int
    load: Load
    cpu_percent: float
    rss_mb: float
    """Peak summed RSS of the server's processes, mapped store pages included (counted once per process)."""
    private_mb: float
    """Peak private memory of the largest server process (`bench.measure.Resident`)."""
    mapped_mb: float
    """Peak mapped file pages of the largest server process: page cache, shared and reclaimable."""

    def cells(self) -> list[object]:
        load = self.load
        return [
            self.target, self.page, self.connections, round(load.rate), round(load.p50_ms, 2), round(load.p90_ms, 2),
            round(load.p99_ms, 2), load.errors, round(self.cpu_percent), round(self.rss_mb), round(self.private_mb),
            round(self.mapped_mb),
        ]  # fmt: skip


HEADERS = ['feed', 'page', 'conns', 'req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'errors', 'server CPU %', 'server RSS MB',
           'worker private MB', 'worker mapped MB']  # fmt: skip


BENCH_FEEDS = (
    ('latest', 'latest', {}),
    ('topic-tag', 'topic', {'tags': [TAG]}),
    ('topic-lang', 'topic', {'tags': [], 'langs': ['ja']}),
    ('hot', 'hot', {}),
    ('following', 'following', {}),
)
"""The feeds every run measures, when their algorithm is installed; with `--all-algorithms`, every other installed
algorithm follows with its default parameters."""


def bench_feeds(algorithms: Sequence[str], everything: bool, only: Sequence[str] = ()) -> list[tuple[str, str, dict]]:
    named = [feed for feed in BENCH_FEEDS if feed[1] in algorithms]
    covered = {algorithm for _, algorithm, _ in named}
    feeds = named + [(name, name, {}) for name in sorted(algorithms) if everything and name not in covered]
    return [feed for feed in feeds if not only or feed[0] in only]


def feeds_config(feeds: Sequence[tuple[str, str, dict]]) -> str:
    """The feeds TOML of the benchmark."""
    lines = []
    for rkey, algorithm, params in feeds:
        lines += ['[[feed]]', f'rkey = {json.dumps(rkey)}', f'algorithm = {json.dumps(algorithm)}']
        if params:
            lines.append('params = { ' + ', '.join(f'{k} = {json.dumps(v)}' for k, v in params.items()) + ' }')
        lines.append('')
    return '\n'.join(lines)


def run_jobs(store: Path | str, config: Path) -> None:
    """Runs the served feeds' scheduled jobs once (scores for `hot`...), as the ingest process would have."""
    db = open_database(store)
    try:
        for job in feed_jobs(load_feeds(discover_algorithms(), config).values()):
            job.run(db)
    finally:
        db.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def _get(port: int, path: str, authorization: str | None = None) -> dict:
    headers = {'Authorization': authorization} if authorization else {}
    with urllib.request.urlopen(urllib.request.Request(f'http://127.0.0.1:{port}{path}', headers=headers)) as answer:
        return json.load(answer)


@contextmanager
def running(command: Sequence[str], env: dict[str, str], port: int, ready_path: str) -> Iterator[subprocess.Popen]:
    """Runs a server until the block ends; waits until `ready_path` answers on `port`."""
    log = open(OUT / f'server-{port}.log', 'w')  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, env=os.environ | env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, ready_path)
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f'server did not start; see {log.name}') from None
                time.sleep(0.2)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def skeleton_path(rkey: str, cursor: str | None = None, limit: int = PAGE_LIMIT) -> str:
    feed = quote(f'at://{PUBLISHER}/app.bsky.feed.generator/{rkey}', safe='')
    path = f'/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed}&limit={limit}'
    return path + (f'&cursor={quote(cursor, safe="")}' if cursor else '')


def targets_for(port: int, rkey: str, authorization: str | None, deep: bool = True) -> list[Target]:
    """First-page and (with `deep`) deep requests of one feed; deep cursors are found by walking it 100 items a page."""
    suffix = f'\t{authorization}' if authorization else ''
    first = Target(rkey, 'first', [skeleton_path(rkey) + suffix])
    if not deep:
        return [first]
    cursors: list[tuple[int, str]] = []
    cursor, seen = None, 0
    while len(cursors) < DEEP_CURSORS:
        page = _get(port, skeleton_path(rkey, cursor, limit=100), authorization)
        seen += len(page['feed'])
        cursor = page.get('cursor')
        if not cursor:
            break
        if seen >= DEEP_ITEMS:
            cursors.append((seen, cursor))
    if not cursors:
        return [first]
    label = f'deep {cursors[0][0]:,}+'
    return [first, Target(rkey, label, [skeleton_path(rkey, c) + suffix for _, c in cursors])]


def measure(server: subprocess.Popen, port: int, target: Target, connections: int, seconds: float) -> Row:
    with TreeSampler(server.pid) as sampler:
        load = run_wrk(port, target.requests, connections, seconds)
    usage = sampler.usage
    return Row(target.feed, target.page, connections, load, usage.cpu_percent, usage.peak_rss_mb,
               usage.peak_private_mb, usage.peak_mapped_mb)  # fmt: skip


def serve_rows(
    info: StoreInfo,
    store: Path | str,
    seconds: float,
    connections: Sequence[int],
    workers: int,
    everything: bool,
    receipts: str | None = None,
    only: Sequence[str] = (),
    server: str = 'granian',
    deep: bool = True,
) -> list[Row]:
    """Starts `bench.serve.app` (feedgen's server, viewers' keys local) and measures every benchmarked feed, its first
    pages and, with `deep`, pages 10,000 items down."""
    algorithms = discover_algorithms()
    feeds = bench_feeds(list(algorithms), everything, only)
    config = OUT / 'serve-feeds.toml'
    config.write_text(feeds_config(feeds))
    run_jobs(store, config)
    key = SigningKey()
    port = free_port()
    env = {
        'FEEDGEN_DATABASE': str(store),
        'FEEDGEN_FEEDS_CONFIG': str(config),
        'FEEDGEN_HOSTNAME': 'localhost',
        'FEEDGEN_SERVICE_DID': PUBLISHER,
        'FEEDGEN_BENCH_VIEWER_KEYS': f'{info.viewer}={key.did_key}',
        'PYTHONPATH': str(ROOT),
    } | ({'FEEDGEN_RECEIPTS': receipts} if receipts else {})
    command = [sys.executable, '-m', 'bench.serve.app', '--port', str(port), '--workers', str(workers)]
    command += ['--server', server]
    authorization = viewer_token(key, info.viewer, PUBLISHER)
    rows = []
    with running(command, env, port, '/xrpc/app.bsky.feed.describeFeedGenerator') as process:
        targets = []
        for rkey, algorithm, _ in feeds:
            targets += targets_for(port, rkey, authorization if algorithms[algorithm].personalized else None, deep)
        for count in connections:
            for target in targets:
                # Warms this target, and lets the server finish what the row before left queued (16 slow pages of
                # `following` delay the next feed's first requests by their whole queue).
                run_wrk(port, target.requests, 4, 1)
                rows.append(measure(process, port, replace(target, feed=f'{target.feed} ({server})'), count, seconds))
    return rows


def ceiling_rows(store: Path, seconds: float, connections: Sequence[int], workers: int) -> list[Row]:
    """The minimal app under granian (same workers and threads as `feedgen serve`), first and deep pages."""
    port = free_port()
    command = [
        sys.executable, '-m', 'granian', '--interface', 'wsgi', '--host', '127.0.0.1', '--port', str(port),
        '--workers', str(workers), '--blocking-threads', '4', '--log-level', 'warning', '--factory',
        'bench.serve.ceiling:app_from_env',
    ]  # fmt: skip
    rows = []
    env = {'PYTHONPATH': str(ROOT), 'BENCH_CEILING_DATABASE': str(store)}
    with running(command, env, port, '/page?limit=1') as server:
        cursor = None
        cursors = []
        for _ in range(DEEP_ITEMS // 100 + DEEP_CURSORS):
            cursor = _get(port, f'/page?limit=100&cursor={cursor}' if cursor else '/page?limit=100')['cursor']
            cursors.append(cursor)
        targets = [
            Target('ceiling', 'first', [f'/page?limit={PAGE_LIMIT}']),
            Target('ceiling', f'deep {DEEP_ITEMS:,}+', [f'/page?limit={PAGE_LIMIT}&cursor={c}' for c in cursors[-20:]]),
        ]
        run_wrk(port, targets[0].requests, 16, 2)
        for count in connections:
            rows += [measure(server, port, target, count, seconds) for target in targets]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--posts', type=int, default=1_000_000)
    parser.add_argument('--seconds', type=float, default=5.0, help='Length of each wrk run.')
    parser.add_argument('--connections', default='1,16,64')
    parser.add_argument('--workers', type=int, default=2, help='Serving processes, for feedgen and the ceiling.')
    parser.add_argument('--all-algorithms', action='store_true', help='Also every other installed algorithm.')
    parser.add_argument('--receipts', default=None, help='FEEDGEN_RECEIPTS for the server (default: its default).')
    parser.add_argument('--feeds', default='', help='Only these benchmark feeds (comma-separated record keys).')
    parser.add_argument('--no-ceiling', action='store_true', help='Leave out the ceiling app.')
    parser.add_argument(
        '--servers',
        default='granian',
        help=f'What serves feedgen, one after another (comma-separated: {", ".join(SERVERS)}).',
    )
    parser.add_argument(
        '--database',
        default='',
        help='Serve from this postgresql:// database instead, after copying the store into it (bench.serve.postgres).',
    )
    args = parser.parse_args(argv)
    require_wrk()
    OUT.mkdir(exist_ok=True)
    store = OUT / f'serve-{args.posts}.db'
    info = cached_store(store, args.posts)
    connections = [int(c) for c in args.connections.split(',')]
    print(f'\n### Serve: getFeedSkeleton at {info.posts:,} posts\n')
    print(
        f'Store: {info.posts:,} posts, {info.likes:,} likes, {info.reposts:,} reposts, {info.follows:,} follows, '
        f'{info.accounts:,} accounts; `#{info.tag}` on {info.tagged_posts:,} posts; the viewer follows '
        f'{info.viewer_follows}. {args.seconds:g} s of wrk per row, {args.workers} serving processes, '
        f'FEEDGEN_RECEIPTS={args.receipts or "default (50/s per process)"}.\n'
    )
    print(f'Load averages before: {load_averages()}\n')
    only = [rkey for rkey in args.feeds.split(',') if rkey]
    served: Path | str = store
    if args.database:
        copy_store(store, args.database).close()
        served = args.database
        print(f'Served from PostgreSQL ({args.database}); the ceiling reads the SQLite file.\n')
    rows = []
    for server in args.servers.split(','):
        rows += serve_rows(
            info, served, args.seconds, connections, args.workers, args.all_algorithms, args.receipts, only, server
        )
    if not args.no_ceiling:
        rows += ceiling_rows(store, args.seconds, connections, args.workers)
    rows.sort(key=lambda row: (row.target == 'ceiling', row.connections))
    print(markdown_table(HEADERS, [row.cells() for row in rows]))
    print(f'\nLoad averages after: {load_averages()}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
