"""Freshness benchmark: how long a post takes from its frame leaving the relay to being in the store `latest` reads.

Owns the freshness measurement: a `CaptureRelay` replays a synthetic capture at a live rate (2,000 events/s by
default) to `feedgen ingest --once` in its own process, noting when each seq was sent; this process polls the
store every 10 ms for new posts and notes when each appeared. The delay of a post is appeared - sent, both on
this process's monotonic clock. Posts deleted before a poll saw them are not counted. Prints a markdown table.

Usage: `python -m bench.freshness [--rate 2000] [--seconds 30]`
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.ingest.run import OUT, ensure_capture
from bench.measure import load_averages, markdown_table
from feedgen.ingest.capture import read_capture
from feedgen.ingest.relay import CaptureRelay

POLL_SECONDS = 0.01


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(rate: float, seconds: float, accounts: int) -> tuple[list[float], int]:
    """Replays `rate * seconds` frames at `rate`; returns each seen post's delay in seconds, and the posts sent."""
    capture, truth = ensure_capture(int(rate * seconds), accounts)
    frames = list(read_capture(capture))
    database = OUT / 'freshness.db'
    for suffix in ('', '-wal', '-shm'):
        Path(f'{database}{suffix}').unlink(missing_ok=True)
    feedgen = shutil.which('feedgen', path=str(Path(sys.executable).parent)) or 'feedgen'
    seen: dict[int, float] = {}
    with CaptureRelay(frames, rate=rate) as relay, open(OUT / 'freshness-ingest.log', 'w') as log:
        env = os.environ | {
            'FEEDGEN_DATABASE': str(database),
            'FEEDGEN_FIREHOSE': relay.url,
            'FEEDGEN_BACKFILL_HOURS': '0',
        }
        process = subprocess.Popen([feedgen, 'ingest', '--once'], env=env, stdout=subprocess.DEVNULL, stderr=log)
        while not database.exists():
            time.sleep(POLL_SECONDS)
        conn = sqlite3.connect(f'file:{database}?mode=ro', uri=True)
        last_id = 0
        while True:
            running = process.poll() is None
            try:
                rows = conn.execute('SELECT id, seq FROM post WHERE id > ? ORDER BY id', (last_id,)).fetchall()
            except sqlite3.OperationalError:  # the schema is being created
                rows = []
            now = time.monotonic()
            for post_id, seq in rows:
                seen.setdefault(seq, now)
                last_id = post_id
            if not running:
                break
            time.sleep(POLL_SECONDS)
        conn.close()
        sent = dict(relay.sent_at)
    delays = [appeared - sent[seq] for seq, appeared in seen.items() if seq in sent]
    return delays, truth['op_counts'].get('create app.bsky.feed.post', 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rate', type=float, default=2000.0, help='Frames per second the relay sends.')
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--accounts', type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f'\n### Freshness: frame sent -> post in the store, at {args.rate:,.0f} events/s for {args.seconds:g} s\n')
    print(f'Load averages before: {load_averages()}\n')
    delays, posts = measure(args.rate, args.seconds, args.accounts)
    ms = [delay * 1000 for delay in delays]
    rows = [[f'{args.rate:,.0f} events/s', posts, len(ms), round(statistics.median(ms)), round(percentile(ms, 0.9)),
             round(percentile(ms, 0.99)), round(max(ms))]]  # fmt: skip
    print(markdown_table(['replay rate', 'posts sent', 'posts seen', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'], rows))
    print(f'\nPolled every {POLL_SECONDS * 1000:g} ms. Load averages after: {load_averages()}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
