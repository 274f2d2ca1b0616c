"""End to end with Jetstream as the source: Bluesky's own Jetstream server (tests/jetstream_server.py) reads the local
PDS, and feedgen reads Jetstream.

The same PDS activity ingested from the PDS's firehose and from Jetstream gives equal stores; a `feedgen ingest`
killed at random moments while Jetstream itself restarts ends equal too; and the tests of `tests/test_e2e_atnet.py`
(`latest`, `following` for two readers, likes, a delete disappearing) pass through the PDS and the AppView against a
`feedgen run` that reads Jetstream.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from feedgen.ingest.firehose import Backoff
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.jetstream import Jetstream, subscribe_events_url
from feedgen.ingest.pipeline import Pipeline
from feedgen.store.models import open_database, save_cursor
from tests import stores
from tests.atnet import Account, Feedgen, Network, create_account, running_feedgen
from tests.jetstream_server import JetstreamServer, pds_seq, run_session
from tests.processes import FeedgenProcess
from tests.test_e2e_atnet import (
    people,
    test_viewers_read_latest_and_their_own_following_hydrated_through_their_pds,
)
from tests.test_jetstream import wait_for

__all__ = ['people', 'test_viewers_read_latest_and_their_own_following_hydrated_through_their_pds']
pytestmark = pytest.mark.atnet
SUBSCRIBE_REPOS = '/xrpc/com.atproto.sync.subscribeRepos'


@pytest.fixture(scope='module')
def jetstream(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JetstreamServer]:
    since, _ = pds_seq(network)
    with JetstreamServer(network, tmp_path_factory.mktemp('jetstream'), since) as server:
        yield server


@pytest.fixture(scope='module')
def feedgen(
    network: Network, jetstream: JetstreamServer, people: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Feedgen]:
    folder = tmp_path_factory.mktemp('feedgen')
    yield from running_feedgen(network, people['publisher'], folder, jetstream=jetstream.url)


def test_the_generator_reads_jetstream_compressed(feedgen: Feedgen, jetstream: JetstreamServer) -> None:
    assert feedgen.settings.jetstream == jetstream.url
    log = feedgen.log.read_text()
    assert f'connected to {jetstream.url}' in log and 'zstdDictionary=' in log


@contextmanager
def ingesting(path: Path, stream: Callable[[Pipeline], Jetstream], source: str, cursor: int) -> Iterator[Pipeline]:
    """Ingests `stream` into the store at `path` in a thread, from `cursor` on a new store, until the block ends."""
    db = open_database(str(path))
    pipeline = Pipeline(Indexer(db, source), batch_size=50, batch_seconds=0.05)
    if pipeline.indexer.cursor is None:
        pipeline.indexer.cursor = cursor
    reader = stream(pipeline)
    reader.backoff = Backoff(base=0.05, cap=0.5)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    try:
        yield pipeline
    finally:
        reader.stop.set()
        thread.join(30)
        db.close()


def saved_cursor(path: Path, source: str, cursor: int) -> Path:
    """A new store at `path` whose ingest from `source` starts after `cursor`."""
    db = open_database(str(path))
    with db.atomic():
        save_cursor(source, cursor)
    db.close()
    return path


def firehose_ingest(network: Network, store: Path, since: int, folder: Path) -> FeedgenProcess:
    """`feedgen ingest` of the PDS's firehose after the PDS seq `since` into `store` (a process of its own: the
    store's models bind one database per process)."""
    saved_cursor(store, network.firehose + SUBSCRIBE_REPOS, since)
    env = {'FEEDGEN_DATABASE': str(store), 'FEEDGEN_FIREHOSE': network.firehose, 'FEEDGEN_BATCH_SECONDS': '0.05'}
    return FeedgenProcess(['ingest'], env, folder, name='firehose')


def has_post(path: Path, uri: str) -> bool:
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute('SELECT 1 FROM post WHERE uri = ?', (uri,)).fetchone() is not None


def activity(network: Network, accounts: int = 4) -> tuple[Account, str]:
    """The PDS activity both stores take in: atnet's seeded session (every kind of record and delete, a handle
    change, an account deleted), an account deactivated and then reactivated, and last a marker post; returns the
    reactivated account and the marker's URI (once a store has it, it has everything before it)."""
    run_session(network, prefix=f'js{secrets.token_hex(2)}', accounts=accounts, posts=accounts)
    sleeper = create_account(network, 'sleeper')
    sleeper.post('posted before a nap')
    sleeper.client.com.atproto.server.deactivate_account()
    sleeper.client.com.atproto.server.activate_account()
    return sleeper, create_account(network, 'end').post('the end').uri


def test_the_same_activity_from_the_firehose_and_from_jetstream_gives_equal_stores(
    network: Network, tmp_path: Path
) -> None:
    since, _ = pds_seq(network)
    firehose_store, jetstream_store = tmp_path / 'firehose.db', tmp_path / 'jetstream.db'
    with (
        JetstreamServer(network, tmp_path, since) as server,
        firehose_ingest(network, firehose_store, since, tmp_path),
        ingesting(
            jetstream_store,
            lambda p: Jetstream(server.url, p, stall_seconds=10),
            subscribe_events_url(server.url),
            cursor=0,  # from Jetstream's first event: a saved cursor is the last seq stored
        ) as from_jetstream,
    ):
        sleeper, marker = activity(network)
        wait_for(lambda: has_post(firehose_store, marker) and has_post(jetstream_store, marker))
        # A new deployment's first start backfills the last hour through Jetstream's time cursor.
        backfilled = tmp_path / 'backfilled.db'
        env = {'FEEDGEN_DATABASE': str(backfilled), 'FEEDGEN_JETSTREAM': server.url, 'FEEDGEN_BACKFILL_HOURS': '1'}
        with FeedgenProcess(['ingest'], env, tmp_path, name='backfill') as backfill:
            wait_for(lambda: 'backfill: finished, ingest is live' in backfill.log())
            wait_for(lambda: has_post(backfilled, marker))
    from_firehose = stores.records(firehose_store)
    assert from_firehose == stores.records(jetstream_store) == stores.records(backfilled)
    assert 'subscribeEvents?' in backfill.log() and 'cursor=17' in backfill.log()  # a time cursor: unix µs
    statuses = {status for _, _, status in from_firehose['actor']}
    assert 'deleted' in statuses and any(did == sleeper.did for did, _, _ in from_firehose['actor'])
    assert all(from_firehose[table] for table in ('post', 'like', 'repost', 'follow'))
    events = from_jetstream.stats.events
    assert events['Account'] >= 3 and events['Identity'] and not from_jetstream.stats.skipped.get('bad_body')


@pytest.mark.timeout(300)
def test_feedgen_ingest_killed_at_random_moments_while_jetstream_restarts_ends_equal_to_the_firehose(
    network: Network, tmp_path: Path
) -> None:
    rng = random.Random(secrets.randbits(32))
    since, _ = pds_seq(network)
    store, reference = tmp_path / 'killed.db', tmp_path / 'firehose.db'
    with JetstreamServer(network, tmp_path, since) as server:
        saved_cursor(store, subscribe_events_url(server.url), 0)  # from Jetstream's first event
        env = {'FEEDGEN_DATABASE': str(store), 'FEEDGEN_JETSTREAM': server.url, 'FEEDGEN_BATCH_SIZE': '5'}
        env |= {'FEEDGEN_BATCH_SECONDS': '0.05', 'FEEDGEN_BACKFILL_HOURS': '0'}
        outcome: list[tuple[Account, str]] = []
        writer = threading.Thread(target=lambda: outcome.append(activity(network, accounts=8)), daemon=True)

        def progress() -> None:
            """Waits until ingest stores more, while there is more to store."""
            before = stores.cursor(store)
            if writer.is_alive():
                wait_for(lambda: stores.cursor(store) > before or not writer.is_alive())

        with firehose_ingest(network, reference, since, tmp_path):
            writer.start()
            for run in range(4):
                ingest = FeedgenProcess(['ingest'], env, tmp_path, name=f'ingest{run}').start()
                progress()
                if run == 1:  # Jetstream crashes under a connected ingest and comes back on its own data
                    server.kill()
                    server.start()
                    progress()
                if run == 2:  # and is restarted cleanly
                    server.stop()
                    server.start()
                    progress()
                time.sleep(rng.uniform(0, 0.5))  # somewhere inside a batch, a commit, or between them
                ingest.kill()
            writer.join(300)
            [(_, marker)] = outcome
            with FeedgenProcess(['ingest'], env, tmp_path, name='final'):
                wait_for(lambda: has_post(store, marker) and has_post(reference, marker), timeout=120)
    assert stores.records(store) == stores.records(reference)
