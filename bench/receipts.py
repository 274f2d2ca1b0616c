"""Receipts: what stamping, counting and storing a receipt costs a skeleton request, on a quick local loop.

Fills a temporary SQLite store (WAL, as served) with synthetic posts through `feedgen.authoring.builder`, then
answers the same `getFeedSkeleton` page (`latest` and `topic`, limit 30) `--requests` times through the
Flask app in-process, with `FEEDGEN_RECEIPTS` on, at a rate (50/s, the default), at a share (0.1) and off.
It times each request (what the reader waits for), the hand-off after the response is sent (`call_on_close`),
and the loop's throughput with the process's background writes of receipts and counters included, and prints a
table.

Usage: `python bench/receipts.py --posts 20000 --requests 2000`
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bench.measure import load_averages, machine, markdown_table
from feedgen.authoring.builder import StoreBuilder
from feedgen.serve.app import create_app
from feedgen.serve.receipts import flush_requests, get_receipt
from feedgen.settings import ReceiptPolicy, Settings
from feedgen.store.models import Receipt, open_database

SHARES = (ReceiptPolicy(), ReceiptPolicy(per_second=50.0), ReceiptPolicy(share=0.1), ReceiptPolicy(share=0.0))


def fill(store: StoreBuilder, posts: int) -> None:
    with store.db.atomic():
        for i in range(posts):
            store.make_post(f'author{i % 500}', f'post {i}', tags=['atproto'] if i % 3 == 0 else [], langs=['en'])


@dataclass
class Run:
    served: list[float]
    """Milliseconds of each request until its body was ready."""
    closed: list[float]
    """Milliseconds of each `call_on_close` (handing the request to the process's RequestLog)."""
    per_second: float
    """Requests answered per second over the whole loop, background writes and the final flush included."""


def measure(settings: Settings, db: object, rkey: str, requests: int) -> Run:
    client = create_app(settings, db=db).test_client()
    feed = f'at://{settings.publisher_did}/app.bsky.feed.generator/{rkey}'
    served, closed = [], []
    began = time.perf_counter()
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed, 'limit': 30})
        ready = time.perf_counter()
        response.close()  # as the WSGI server does once the body is sent
        done = time.perf_counter()
        assert response.status_code == 200, response.json
        served.append((ready - started) * 1000)
        closed.append((done - ready) * 1000)
    flush_requests()
    return Run(served, closed, requests / (time.perf_counter() - began))


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--posts', type=int, default=20000)
    parser.add_argument('--requests', type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='feedgen-bench-receipts-') as folder:
        settings = Settings(hostname='bench.example.test', database=str(Path(folder) / 'bench.db'))
        db = open_database(settings.database)
        fill(StoreBuilder(db), args.posts)
        rows = []
        for rkey in ('latest', 'topic'):
            for policy in SHARES:
                before = Receipt.select().count()
                run = measure(replace(settings, receipts=policy), db, rkey, args.requests)
                rows.append(
                    [
                        rkey,
                        str(policy),
                        args.requests,
                        Receipt.select().count() - before,
                        f'{statistics.mean(run.served):.3f}',
                        f'{percentile(run.served, 0.95):.3f}',
                        f'{statistics.mean(run.closed):.3f}',
                        f'{run.per_second:.0f}',
                    ]
                )
        size = Receipt.select().count()
        stored = sum(len(r.payload) for r in Receipt.select(Receipt.payload)) / max(size, 1)
        found = (get_receipt(r.req_id) for r in Receipt.select(Receipt.req_id))
        payload = sum(len(receipt.text) for receipt in found if receipt is not None) / max(size, 1)
    print(f'{machine()}; load {load_averages()}')
    print(f'{args.posts} posts; {size} receipts, on average {payload:.0f} bytes of JSON stored as {stored:.0f}\n')
    headers = ['feed', 'FEEDGEN_RECEIPTS', 'requests', 'receipts written', 'request ms (mean)', 'request ms (p95)']
    headers += ['after response ms (mean)', 'requests/s, writes included']
    print(markdown_table(headers, rows))


if __name__ == '__main__':
    sys.exit(main())
