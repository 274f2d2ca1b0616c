"""Jetstream as the source (feedgen/ingest/jetstream.py): its decoder, and ingest from a Jetstream v2 server that
serves the events of a recorded PDS session, compared with ingesting the same session from the firehose."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from feedgen.ingest.backfill import Backfill
from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import Account, Commit, ErrorFrame, Identity, Info, PostCreate, RecordDelete
from feedgen.ingest.fields import FrameError
from feedgen.ingest.firehose import Backoff
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.jetstream import Jetstream, decode_message, subscribe_events_url
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ingest.records import INDEXED_COLLECTIONS
from feedgen.store.models import BackfillState, open_database
from tests import stores
from tests.atnet import eventually
from tests.jetstreams import NS, StandInJetstream, from_firehose
from tests.processes import FeedgenProcess
from tests.stores import records

CAPTURE = Path(__file__).parent / 'data' / 'pds-session-20acct.atfh'
ALICE = 'did:plc:alice'


def frame(payload: dict) -> str:
    return json.dumps({'$type': 'message', 'payload': payload})


def commit(operation: str, collection: str = 'app.bsky.feed.post', **extra: object) -> str:
    payload = {'$type': f'{NS}#commit', 'seq': 7, 'did': ALICE, 'time': '2026-01-02T03:04:05.123456Z', 'rev': '3l'}
    return frame(payload | {'operation': operation, 'collection': collection, 'rkey': '3k'} | extra)


POST = {'$type': 'app.bsky.feed.post', 'text': 'hello #tag', 'langs': ['en'], 'createdAt': '2026-01-02T03:04:00Z'}


def test_creates_updates_and_deletes_become_the_firehose_paths_ops() -> None:
    created = decode_message(commit('create', cid='bafyreia', record=POST))
    assert isinstance(created, Commit) and (created.seq, created.repo) == (7, ALICE)
    [op] = created.ops
    assert isinstance(op, PostCreate) and (op.cid, op.post.text) == ('bafyreia', 'hello #tag')
    assert op.uri == f'at://{ALICE}/app.bsky.feed.post/3k'
    updated = decode_message(commit('update', cid='bafyreib', record=POST))
    assert [type(op) for op in updated.ops] == [RecordDelete, PostCreate]
    deleted = decode_message(commit('delete', collection='app.bsky.feed.like'))
    assert deleted.ops == [RecordDelete('app.bsky.feed.like', f'at://{ALICE}/app.bsky.feed.like/3k')]


def test_account_identity_info_and_error_frames() -> None:
    upstream = {'seq': 99, 'did': ALICE, 'time': '2026-01-02T03:04:05Z', 'active': False, 'status': 'deactivated'}
    account = {'$type': f'{NS}#account', 'seq': 8, 'did': ALICE, 'time': 'x', 'account': upstream}
    assert decode_message(frame(account)) == Account(8, ALICE, 'x', False, 'deactivated')
    identity = {'$type': f'{NS}#identity', 'seq': 9, 'did': ALICE, 'time': 'x', 'identity': {'handle': 'a.test'}}
    assert decode_message(frame(identity)) == Identity(9, ALICE, 'x', 'a.test')
    assert decode_message(frame({'$type': f'{NS}#info', 'name': 'OutdatedCursor'})) == Info('OutdatedCursor', None)
    error = json.dumps({'$type': 'error', 'error': 'ConsumerTooSlow', 'message': 'slow'})
    assert decode_message(error) == ErrorFrame('ConsumerTooSlow', 'slow')


@pytest.mark.parametrize(
    ('message', 'reason'),
    [
        ('not json', 'bad_json'),
        ('[1]', 'bad_json'),
        (frame({'$type': f'{NS}#nope', 'seq': 1}), 'unknown_type'),
        (commit('create').replace('"seq": 7', '"seq": -1'), 'bad_body'),
        (commit('create').replace(ALICE, 'alice'), 'bad_body'),
        (frame({'$type': f'{NS}#account', 'seq': 8, 'did': ALICE, 'time': 'x', 'account': 'gone'}), 'bad_body'),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(message: str, reason: str) -> None:
    with pytest.raises(FrameError) as raised:
        decode_message(message)
    assert raised.value.reason == reason


def test_a_malformed_record_is_skipped_and_counted_in_its_commit() -> None:
    bad = decode_message(commit('create', cid='bafyreia', record={'$type': 'app.bsky.feed.post', 'text': 5}))
    assert (bad.ops, bad.skipped) == ([], ['invalid_text'])
    assert decode_message(commit('create', collection='app.bsky.actor.profile')).skipped == ['unindexed_collection']


@pytest.fixture(scope='module')
def session() -> list[dict]:
    return from_firehose(read_capture(CAPTURE))


@pytest.fixture(scope='module')
def firehose_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp('firehose') / 'feedgen.db'
    db = open_database(str(path))
    replay(CAPTURE, Pipeline(Indexer(db, 'capture')))
    db.close()
    return records(path)


def wait_for(condition: Callable[[], object], timeout: float = 60) -> None:
    """Polls `condition` until it is true; fails after `timeout` seconds."""

    def check() -> None:
        assert condition()

    eventually(check, timeout)


def run_jetstream(
    server: StandInJetstream,
    path: Path,
    until: int,
    during: Callable[[], None] = lambda: None,
    from_start: bool = True,
    backfill_hours: float = 0,
) -> Jetstream:
    """Ingests from `server` into the store at `path`, calling `during` once connected, until the store's cursor
    reaches `until`. `from_start`: a new store reads from the server's first event rather than the live tip;
    `backfill_hours`: a new store backfills that many hours instead (`feedgen.ingest.backfill`)."""
    db = open_database(str(path))
    pipeline = Pipeline(Indexer(db, subscribe_events_url(server.url)), batch_size=50, batch_seconds=0.05)
    pipeline.backfill = Backfill.plan(pipeline.indexer, backfill_hours)
    if from_start and not backfill_hours and pipeline.indexer.cursor is None:
        pipeline.indexer.cursor = 0  # from the first event the server has, not the live tip
    source = Jetstream(server.url, pipeline, stall_seconds=5)
    source.backoff = Backoff(base=0.05, cap=0.5)
    thread = threading.Thread(target=source.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: source.connections > 0)
        during()
        wait_for(lambda: (pipeline.indexer.cursor or 0) >= until)
    finally:
        source.stop.set()
        thread.join(30)
        db.close()
    return source


def test_the_same_session_from_jetstream_gives_the_store_the_firehose_gives(
    session: list[dict], firehose_store: dict, tmp_path: Path
) -> None:
    with StandInJetstream(session) as server:
        source = run_jetstream(server, tmp_path / 'feedgen.db', until=server.next_seq - 1)
    assert records(tmp_path / 'feedgen.db') == firehose_store
    assert source.decoder.compression is not None and 'zstdDictionary=' in server.connections[0]
    assert all(f'collections={c}' in server.connections[0] for c in INDEXED_COLLECTIONS)


def test_a_jetstream_restart_mid_stream_is_survived(session: list[dict], firehose_store: dict, tmp_path: Path) -> None:
    server = StandInJetstream().start()

    def restart_mid_stream() -> None:
        feeder = server.feed(session, per_second=1000)
        wait_for(lambda: len(server.events) > len(session) // 3)
        server.stop()
        server.start()
        feeder.join(60)

    try:
        source = run_jetstream(server, tmp_path / 'feedgen.db', until=999 + len(session), during=restart_mid_stream)
    finally:
        server.stop()
    assert records(tmp_path / 'feedgen.db') == firehose_store
    assert source.connections >= 2 and source.pipeline.stats.reconnects


def test_consumer_too_slow_reconnects_from_the_cursor(
    session: list[dict], firehose_store: dict, tmp_path: Path
) -> None:
    with StandInJetstream(session) as server:
        server.send_error = 'ConsumerTooSlow'
        source = run_jetstream(server, tmp_path / 'feedgen.db', until=server.next_seq - 1)
    assert records(tmp_path / 'feedgen.db') == firehose_store
    assert source.pipeline.stats.events['ErrorFrame'] == 1 and source.pipeline.stats.reconnects['error frame'] == 1


def test_cursor_too_old_resumes_from_the_floor_and_counts_it(session: list[dict], tmp_path: Path, caplog) -> None:
    with StandInJetstream(session, floor=1010) as server:
        source = run_jetstream(server, tmp_path / 'feedgen.db', until=server.next_seq - 1)
    assert source.pipeline.stats.skipped['cursor_too_old'] == 1
    assert 'cursor=1010' in server.connections[0]
    assert 'older than the server keeps' in caplog.text


@pytest.mark.timeout(240)
def test_feedgen_ingest_from_jetstream_killed_at_random_points_ends_equal_to_a_clean_run(
    session: list[dict], firehose_store: dict, tmp_path: Path
) -> None:
    rng = random.Random(20261206)
    store = tmp_path / 'killed.db'
    last = 999 + len(session)
    env = {'FEEDGEN_DATABASE': str(store), 'FEEDGEN_BATCH_SIZE': '7', 'FEEDGEN_BATCH_SECONDS': '0.05'}
    env['FEEDGEN_BACKFILL_HOURS'] = '0'  # the session's events are days old: a backfill would skip them all
    kills = []
    with StandInJetstream() as server:
        env['FEEDGEN_JETSTREAM'] = server.url
        feeder = None
        for run in range(5):
            ingest = FeedgenProcess(['ingest'], env, tmp_path, name=f'ingest{run}').start()
            if feeder is None:  # a new store starts at the live tip: the network goes live once ingest listens
                wait_for(lambda: server.connections)
                feeder = server.feed(session, per_second=30)  # slow enough that five restarts land mid-stream
            before = stores.cursor(store)
            wait_for(lambda b=before: stores.cursor(store) > b, timeout=60)
            time.sleep(rng.uniform(0, 1.0))  # somewhere inside a batch, a commit, or between them
            ingest.kill()
            kills.append(stores.cursor(store))
        with FeedgenProcess(['ingest'], env, tmp_path, name='final'):
            wait_for(lambda: stores.cursor(store) == last, timeout=120)
    assert len(set(kills)) == 5 and max(kills) < last, f'kills did not land mid-stream: {kills}'
    assert stores.records(store) == firehose_store
    totals = stores.ingest_totals(store)
    assert totals['ops']['create post'] == sum(
        1 for p in session if p.get('collection') == 'app.bsky.feed.post' and p['operation'] == 'create'
    )


def test_jetstream_takes_over_a_store_the_firehose_filled_from_its_last_event_time(
    session: list[dict], firehose_store: dict, tmp_path: Path
) -> None:
    path = tmp_path / 'feedgen.db'
    messages = list(read_capture(CAPTURE))
    db = open_database(str(path))
    Pipeline(Indexer(db, 'ws://relay.test/xrpc/com.atproto.sync.subscribeRepos')).feed_all(messages[:-300])
    db.close()
    with StandInJetstream(session) as server:
        source = run_jetstream(server, path, until=server.next_seq - 1, from_start=False)
        asked = int(parse_qs(urlparse(server.connections[0]).query)['cursor'][0])
        assert asked >= 10**15  # a time cursor, a little before the firehose's last stored event
        assert server.events[0]['_us'] < asked < server.events[-300]['_us']
    assert records(path) == firehose_store
    assert source.pipeline.stats.events['Commit'] < sum(p['$type'] == f'{NS}#commit' for p in session)  # not all


def test_the_firehose_refuses_a_store_jetstream_filled(session: list[dict], tmp_path: Path) -> None:
    store = tmp_path / 'feedgen.db'
    with StandInJetstream(session[:20]) as server:
        run_jetstream(server, store, until=server.next_seq - 1)
    ingest = FeedgenProcess(
        ['ingest'], {'FEEDGEN_DATABASE': str(store), 'FEEDGEN_FIREHOSE': 'ws://127.0.0.1:9'}, tmp_path
    )
    assert ingest.start().process.wait(timeout=60) == 2
    assert 'error: this store was filled from Jetstream' in ingest.log()


def recent(session: list[dict], hours: float) -> list[dict]:
    """The session's events with their times spread evenly over the last `hours`, the newest a few seconds old."""
    end = time.time() - 5
    step = hours * 3600 / len(session)
    payloads = []
    for index, payload in enumerate(session):
        moment = datetime.fromtimestamp(end - (len(session) - 1 - index) * step, UTC)
        micros = int(moment.timestamp() * 1_000_000)
        payloads.append(payload | {'time': moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ'), '_us': micros})
    return payloads


def asked_cursor(server: StandInJetstream, connection: int = 0) -> int:
    return int(parse_qs(urlparse(server.connections[connection]).query)['cursor'][0])


def test_a_first_start_backfills_from_jetstreams_time_cursor_then_goes_live(
    session: list[dict], tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    payloads = recent(session, hours=2)
    with StandInJetstream(payloads) as server:
        run_jetstream(server, tmp_path / 'feedgen.db', until=server.next_seq - 1, backfill_hours=1)
    asked = asked_cursor(server)
    db = open_database(str(tmp_path / 'feedgen.db'))
    row = BackfillState.get()
    db.close()
    assert asked == row.horizon * 1000 and abs(asked / 1e6 - (time.time() - 3600)) < 600  # now - 1 h, in µs
    kept = [payload for payload in payloads if payload['_us'] >= asked]
    assert 0 < len(kept) < len(payloads)
    with StandInJetstream(kept) as reference:
        run_jetstream(reference, tmp_path / 'reference.db', until=reference.next_seq - 1)
    assert records(tmp_path / 'feedgen.db') == records(tmp_path / 'reference.db')
    sent = [payload for payload in kept if payload.get('collection', POST['$type']) in INDEXED_COLLECTIONS]
    assert row.finished_at is not None and row.events == len(sent)
    assert 'backfill: the store is empty; ingesting the last 1 h' in caplog.text
    assert 'backfill: finished, ingest is live (an event is from' in caplog.text


def test_feedgen_ingest_backfills_from_jetstream_and_a_restart_resumes_from_the_seq(
    session: list[dict], tmp_path: Path
) -> None:
    store = tmp_path / 'feedgen.db'
    env = {'FEEDGEN_DATABASE': str(store), 'FEEDGEN_BACKFILL_HOURS': '1', 'FEEDGEN_BATCH_SECONDS': '0.05'}
    with StandInJetstream(recent(session, hours=2)) as server:
        env['FEEDGEN_JETSTREAM'] = server.url
        with FeedgenProcess(['ingest'], env, tmp_path, name='first') as ingest:
            wait_for(lambda: stores.cursor(store) == server.next_seq - 1)
            wait_for(lambda: 'backfill: finished, ingest is live' in ingest.log())
        with FeedgenProcess(['ingest'], env, tmp_path, name='second'):
            wait_for(lambda: len(server.connections) == 2)
        status = FeedgenProcess(['status'], env, tmp_path, name='status').start()
        assert status.process.wait(timeout=60) == 0
    assert asked_cursor(server, 0) >= 10**15 and asked_cursor(server, 1) == server.next_seq - 1
    assert 'backfill    finished:' in status.output()
