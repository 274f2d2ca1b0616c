"""feedgen.store.models under concurrency: 64 clients read through `feedgen serve` while `feedgen ingest` writes at full
speed into the same SQLite store, and nobody sees `database is locked` or an error response.

SQLite in WAL mode lets readers read their snapshot while the one writer commits; the busy timeout and write
transactions that take the write lock up front (`write_transaction`) make the other writers (the serving
processes' receipts and counters) wait their turn instead of failing.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import peewee
import pytest

from feedgen.ingest.relay import CaptureRelay
from feedgen.jobs import prune
from feedgen.store.models import Post, write_transaction
from tests import stores
from tests.processes import FeedgenProcess, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'bench' / 'ingest'))
import synth

CLIENTS = 64
REQUESTS_PER_CLIENT = 15


def load(base: str, feed: str) -> list[tuple[int, str]]:
    """One client on its own connection: pages through `latest`, with a few other endpoints in between."""
    answers = []
    with httpx.Client(base_url=base, timeout=60) as http:
        cursor = ''
        for number in range(REQUESTS_PER_CLIENT):
            if number % 5 == 4:
                path = ('/xrpc/app.bsky.feed.describeFeedGenerator', '/xrpc/_health', '/metrics')[number % 3]
                response = http.get(path)
            else:
                params = {'feed': feed, 'limit': '30'} | ({'cursor': cursor} if cursor else {})
                response = http.get('/xrpc/app.bsky.feed.getFeedSkeleton', params=params)
                cursor = response.json().get('cursor', '') if response.status_code == 200 else ''
            answers.append((response.status_code, response.text[:200] if response.status_code != 200 else ''))
    return answers


@pytest.mark.timeout(300)
def test_64_readers_while_ingest_writes_at_full_speed(tmp_path: Path) -> None:
    messages = list(synth.Synthesizer(frames=40_000, accounts=3_000, seed=5).messages())
    port = free_port()
    store = tmp_path / 'feedgen.db'
    env = {
        'FEEDGEN_DATABASE': str(store),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_BATCH_SIZE': '500',
        'FEEDGEN_BACKFILL_HOURS': '0',  # index every synthetic event, however old its time
    }
    feed = f'at://did:web:localhost%3A{port}/app.bsky.feed.generator/latest'
    base = f'http://127.0.0.1:{port}'
    with (
        CaptureRelay(messages, close_when_done=False) as relay,
        FeedgenProcess(['serve', '--port', str(port), '--workers', '2'], env, tmp_path, 'serve') as serve,
        FeedgenProcess(['ingest'], env | {'FEEDGEN_FIREHOSE': relay.url}, tmp_path, 'ingest') as ingest,
    ):
        serve.wait_http(base + '/xrpc/_health')
        deadline = time.monotonic() + 60
        while stores.cursor(store) == 0 and time.monotonic() < deadline:  # ingest is writing
            time.sleep(0.05)
        before = stores.cursor(store)
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [answer for client in pool.map(lambda _: load(base, feed), range(CLIENTS)) for answer in client]
        during = stores.cursor(store) - before
        assert ingest.running(), ingest.log()[-3000:]
    assert before > 0 and during > 0, f'ingest did not write while the clients read ({before}, +{during})'
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    failures = [answer for answer in answers if answer[0] != 200]
    assert not failures, failures[:5]
    for process in (serve, ingest):
        log = process.log()
        assert 'database is locked' not in log, log[-3000:]
        assert 'Traceback' not in log, log[-3000:]


def test_pruning_while_ingest_commits_waits_for_the_lock_instead_of_failing(db: peewee.Database) -> None:
    """Pruning reads, then deletes. In a deferred transaction, a commit by the ingest writer between the two makes
    the delete fail at once with `database is locked` (SQLite cannot move a read snapshot forward); it failed in a
    quarter of these rounds before pruning took the write lock up front."""
    stop = threading.Event()

    def ingest_commits() -> None:
        number = 0
        while not stop.is_set():
            with write_transaction(db):
                stores.write_like(db, number)
            number += 1

    writer = threading.Thread(target=ingest_commits)
    writer.start()
    try:
        for round_ in range(40):
            old = [{'uri': f'at://did:plc:o/app.bsky.feed.post/{round_}-{n}', 'cid': 'c', 'author': 'did:plc:o',
                    'created_at': 0, 'sort_at': 0, 'indexed_at': 0} for n in range(20)]  # fmt: skip
            with write_transaction(db):
                Post.insert_many(old).execute()
            assert prune(db, retention_hours=1.0)['posts'] == 20
    finally:
        stop.set()
        writer.join()
    assert Post.select().count() == 0
