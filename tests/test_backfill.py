"""feedgen.ingest.backfill: a first start with an empty store ingests the source's recent history, then goes live.

The 20-account capture is replayed by a loopback relay. Its events were recorded days ago, so the in-process tests
give the backfill a clock set an hour after the capture ends and a number of hours that puts the horizon inside the
capture; the `feedgen ingest` and `feedgen run` subprocesses get hours counted back from the real clock instead.
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import libipld
import pytest

from feedgen.ingest import backfill as backfill_module
from feedgen.ingest.backfill import Backfill
from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import SEQUENCED, decode_frame, event_time_ms
from feedgen.ingest.firehose import Firehose
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ingest.relay import CaptureRelay
from feedgen.serve.app import create_app
from feedgen.serve.metrics import format_status, status_report
from feedgen.settings import Settings
from feedgen.store.models import BackfillState, open_database, save_cursor
from tests import stores
from tests.conftest import CAPTURE_20
from tests.processes import FeedgenProcess, free_port

FRAMES = list(read_capture(CAPTURE_20))
LAST_SEQ = len(FRAMES)
TIMES = [event_time_ms(decode_frame(frame)) or 0 for frame in FRAMES]
NOW = TIMES[-1] / 1000 + 3600
"""The in-process tests' clock: an hour after the capture's last event."""
HORIZON_AT = 600
"""The frame (by position) the in-process tests put the horizon at: the 600 before it are older."""
RELAY = 'ws://relay.test/xrpc/com.atproto.sync.subscribeRepos'
pytestmark = pytest.mark.timeout(120)


def hours_back_to(moment_ms: int, now: float = NOW) -> float:
    return (now - moment_ms / 1000) / 3600


def ingest(path: Path, hours: float, frames: list[bytes] = FRAMES, now: float = NOW, **relay: object) -> Pipeline:
    """Ingests `frames` from a loopback relay into the store at `path` until the relay closes the stream."""
    db = open_database(path)
    try:
        with CaptureRelay(frames, **relay) as capture:  # type: ignore[arg-type]
            pipeline = Pipeline(Indexer(db, capture.subscribe_url), batch_size=100, batch_seconds=0.05)
            pipeline.backfill = Backfill.plan(pipeline.indexer, hours, clock=lambda: now)
            Firehose(capture.subscribe_url, pipeline, stall_seconds=30).run(once=True)
        return pipeline
    finally:
        db.close()


def info_frame(name: str, message: str) -> bytes:
    body = {'name': name, 'message': message}
    return libipld.encode_dag_cbor({'op': 1, 't': '#info'}) + libipld.encode_dag_cbor(body)


def test_events_before_the_horizon_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    pipeline = ingest(tmp_path / 'feedgen.db', hours_back_to(TIMES[HORIZON_AT]))
    kept = [frame for frame, moment in zip(FRAMES, TIMES, strict=True) if moment >= TIMES[HORIZON_AT]]
    older = LAST_SEQ - len(kept)
    assert pipeline.stats.skipped['before_horizon'] == older > 0
    assert any(r.getMessage().endswith('subscribeRepos?cursor=0') for r in caplog.records)
    # The store holds exactly the records of the events from the horizon on, as if the capture had begun there.
    reference = tmp_path / 'reference.db'
    db = open_database(reference)
    Pipeline(Indexer(db, 'capture')).feed_all(kept)
    db.close()
    assert stores.records(tmp_path / 'feedgen.db') == stores.records(reference)
    assert stores.ingest_totals(tmp_path / 'feedgen.db')['skipped']['before_horizon'] == older
    assert not any('holds less' in r.getMessage() for r in caplog.records)


def test_a_source_holding_less_than_asked_says_so_in_one_line_and_goes_on(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    outdated = info_frame('OutdatedCursor', 'Requested cursor exceeded limit. Possibly missing events')
    pipeline = ingest(tmp_path / 'feedgen.db', 6, frames=[outdated, *FRAMES])
    lines = [r.getMessage() for r in caplog.records if 'holds less' in r.getMessage()]
    assert lines == [  # one line, although the oldest event is younger than the horizon too
        'backfill: the source holds less than the 6 h asked (it answered OutdatedCursor: Requested cursor exceeded'
        f' limit. Possibly missing events, the horizon is {_iso(NOW - 6 * 3600)}); ingesting what it has'
    ]
    assert pipeline.stats.skipped['before_horizon'] == 0
    assert stores.cursor(tmp_path / 'feedgen.db') == LAST_SEQ


def test_an_oldest_event_younger_than_the_horizon_is_reported(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    ingest(tmp_path / 'feedgen.db', 24)
    lines = [r.getMessage() for r in caplog.records if 'holds less' in r.getMessage()]
    assert len(lines) == 1 and f'its oldest event is from {_iso(TIMES[0] / 1000)}' in lines[0]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).isoformat().replace('+00:00', 'Z')


def test_progress_shows_in_the_log_status_metrics_and_health(tmp_path: Path, caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    monkeypatch.setattr(backfill_module, 'PROGRESS_SECONDS', 0.0)
    path = tmp_path / 'feedgen.db'
    clock = iter(range(10**6))  # one second a reading: rates and the ETA are defined
    db = open_database(path)
    pipeline = Pipeline(Indexer(db, RELAY), batch_size=100, batch_seconds=60)
    pipeline.backfill = Backfill.plan(pipeline.indexer, hours_back_to(TIMES[0]), clock=lambda: NOW + next(clock))
    pipeline.feed_all(FRAMES[:700])  # a backfill stopped part way (a crash, or still running)
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith('backfill: 700 events')]
    assert progress and all('h covered' in line and 'events/s' in line and 'ETA' in line for line in progress)

    app = create_app(Settings(database=str(path)), db=db)
    health = app.test_client().get('/xrpc/_health').get_json()
    assert health['status'] == 'backfilling'
    assert health['backfill'][RELAY]['events'] == 700
    report = status_report(db)
    (snapshot,) = report['ingest']
    assert snapshot['backfill']['state'] == 'backfilling' and snapshot['backfill']['eta_seconds'] is not None
    assert 'backfill    backfilling: 700 events' in format_status(report)
    scrape = app.test_client().get('/metrics').get_data(as_text=True)
    assert f'feedgen_backfill_active{{firehose="{RELAY}"}} 1.0' in scrape
    assert f'feedgen_backfill_events{{firehose="{RELAY}"}} 700.0' in scrape
    assert 'feedgen_backfill_eta_seconds{' in scrape and 'feedgen_backfill_events_per_second{' in scrape

    pipeline.backfill.finish('the test says so')
    pipeline.flush()
    assert pipeline.backfill is None
    assert app.test_client().get('/xrpc/_health').get_json()['status'] == 'ok'
    assert f'feedgen_backfill_active{{firehose="{RELAY}"}} 0.0' in app.test_client().get('/metrics').text
    finished = [r.getMessage() for r in caplog.records if r.getMessage().startswith('backfill: finished')]
    assert finished and finished[0].startswith('backfill: finished, ingest is live (the test says so): 700 events')
    db.close()


def test_a_restart_after_the_backfill_finished_never_backfills_again(tmp_path: Path) -> None:
    path = tmp_path / 'feedgen.db'
    ingest(path, hours_back_to(TIMES[HORIZON_AT]))
    db = open_database(path)
    indexer = Indexer(db, 'anything')
    assert Backfill.plan(Indexer(db, BackfillState.get().firehose), 24, clock=lambda: NOW) is None
    assert Backfill.plan(indexer, 24, clock=lambda: NOW) is None  # another firehose: the store is not empty
    assert BackfillState.select().count() == 1
    db.close()


def test_a_store_from_before_backfill_existed_is_not_empty(tmp_path: Path) -> None:
    db = open_database(tmp_path / 'feedgen.db')
    with db.atomic():
        save_cursor('wss://relay.example', 42)
    assert Backfill.plan(Indexer(db, 'wss://relay.example'), 24, clock=lambda: NOW) is None
    assert BackfillState.select().count() == 0
    db.close()


def test_backfill_hours_0_starts_at_the_live_tip_as_before(tmp_path: Path) -> None:
    db = open_database(tmp_path / 'feedgen.db')
    pipeline = Pipeline(Indexer(db, RELAY))
    pipeline.backfill = Backfill.plan(pipeline.indexer, 0, clock=lambda: NOW)
    assert pipeline.backfill is None and BackfillState.select().count() == 0
    assert Firehose(pipeline.indexer.firehose, pipeline).connect_url() == pipeline.indexer.firehose  # no cursor
    app = create_app(Settings(database=str(tmp_path / 'feedgen.db')), db=db)
    assert app.test_client().get('/xrpc/_health').get_json()['status'] == 'ok'
    db.close()


def test_backfill_hours_are_capped_at_the_retention(tmp_path: Path) -> None:
    settings = Settings.from_env({'FEEDGEN_BACKFILL_HOURS': '48', 'FEEDGEN_RETENTION_HOURS': '10'}, env_file=None)
    assert settings.backfill_window_hours == 10
    assert Settings.from_env({}, env_file=None).backfill_window_hours == 24
    assert Settings.from_env({'FEEDGEN_BACKFILL_HOURS': '0'}, env_file=None).backfill_window_hours == 0
    db = open_database(tmp_path / 'feedgen.db')
    backfill = Backfill.plan(Indexer(db, 'relay'), settings.backfill_window_hours, clock=lambda: NOW)
    assert backfill is not None and backfill.row.horizon == int((NOW - 10 * 3600) * 1000)
    db.close()


def test_a_live_event_ends_the_backfill(tmp_path: Path) -> None:
    """An event within a minute of now: ingest is live, even while the source streams on."""
    path = tmp_path / 'feedgen.db'
    now = TIMES[900] / 1000 + 60
    pipeline = ingest(path, 24, now=now)
    assert pipeline.backfill is None
    with sqlite3.connect(path) as conn:
        (finished_at, event_time) = conn.execute('SELECT finished_at, event_time FROM backfill_state').fetchone()
    assert finished_at == int(now * 1000) and TIMES[900] <= event_time < TIMES[-1]
    assert stores.cursor(path) == LAST_SEQ


@pytest.mark.timeout(300)
def test_feedgen_ingest_killed_during_backfill_ends_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    """SIGKILL a real `feedgen ingest` five times while it backfills; the store ends as one clean run leaves it."""
    rng = random.Random(20261206)
    store = tmp_path / 'killed.db'
    middle = TIMES[len(TIMES) // 5]
    with CaptureRelay(FRAMES, rate=300) as relay:  # about 4.4 s of stream: kills land mid-backfill
        env = {
            'FEEDGEN_FIREHOSE': relay.url,
            'FEEDGEN_DATABASE': str(store),
            'FEEDGEN_BATCH_SIZE': '7',
            'FEEDGEN_BATCH_SECONDS': '0.05',
            'FEEDGEN_RETENTION_HOURS': '100000',
            'FEEDGEN_BACKFILL_HOURS': str(hours_back_to(middle, time.time())),
        }
        kills = []
        for run in range(5):
            ingest_process = FeedgenProcess(['ingest', '--once'], env, tmp_path, name=f'ingest{run}').start()
            before = stores.cursor(store)
            deadline = time.monotonic() + 60
            while stores.cursor(store) <= before and ingest_process.running() and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 1.0))
            ingest_process.kill()
            kills.append(stores.cursor(store))
        final = FeedgenProcess(['ingest', '--once'], env, tmp_path, name='final').start()
        assert final.process is not None
        assert final.process.wait(timeout=120) == 0, final.log()[-3000:]
    assert len(set(kills)) == 5 and max(kills) < LAST_SEQ, f'kills did not land mid-stream: {kills}'
    with sqlite3.connect(store) as conn:
        horizon, finished_at = conn.execute('SELECT horizon, finished_at FROM backfill_state').fetchone()
    assert finished_at is not None
    reference = tmp_path / 'reference.db'
    db = open_database(reference)
    indexer = Indexer(db, 'capture')
    indexer.horizon_ms = horizon  # the same horizon, read in one uninterrupted pass
    replay(CAPTURE_20, Pipeline(indexer))
    db.close()
    assert stores.records(store) == stores.records(reference)
    assert stores.cursor(store) == LAST_SEQ
    totals, clean = stores.ingest_totals(store), stores.ingest_totals(reference)
    assert totals['frames'] == LAST_SEQ
    assert 0 < totals['skipped']['before_horizon'] == clean['skipped']['before_horizon'] < LAST_SEQ
    assert totals['skipped'].get('duplicate_seq', 0) == 0
    assert 'backfill: resuming after cursor' in final.log()
    assert json.loads(final.output())['cursor'] == LAST_SEQ


@pytest.mark.timeout(240)
def test_feedgen_run_serves_and_runs_its_jobs_while_it_backfills(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / 'feedgen.db'
    with CaptureRelay(FRAMES, rate=60, close_when_done=False) as relay:  # about 22 s of backfill
        env = {
            'FEEDGEN_FIREHOSE': relay.url,
            'FEEDGEN_DATABASE': str(store),
            'FEEDGEN_PORT': str(port),
            'FEEDGEN_HOSTNAME': f'localhost:{port}',
            'FEEDGEN_WORKERS': '1',
            'FEEDGEN_RETENTION_HOURS': '100000',
            'FEEDGEN_BACKFILL_HOURS': str(hours_back_to(TIMES[0], time.time()) + 1),
        }
        base = f'http://127.0.0.1:{port}'
        with FeedgenProcess(['run', '--host', '127.0.0.1'], env, tmp_path, name='run') as run:
            run.wait_http(base + '/xrpc/_health')
            feed = f'at://did:web:localhost%3A{port}/app.bsky.feed.generator/latest'
            seen: dict[str, bool] = {}
            deadline = time.monotonic() + 120
            while len(seen) < 3 and time.monotonic() < deadline:
                health = httpx.get(base + '/xrpc/_health', timeout=10).json()
                if health['status'] == 'backfilling':
                    page = httpx.get(base + '/xrpc/app.bsky.feed.getFeedSkeleton', params={'feed': feed}, timeout=10)
                    if page.json()['feed']:
                        seen['latest serves'] = True
                    if _score_snapshots(store):
                        seen['jobs ran'] = True
                    if health['backfill'][relay.subscribe_url]['events'] > 0:
                        seen['progress'] = True
                time.sleep(0.2)
            assert seen == {'latest serves': True, 'jobs ran': True, 'progress': True}, run.log()[-3000:]

            def live() -> bool:
                return httpx.get(base + '/xrpc/_health', timeout=10).json()['status'] == 'ok'

            deadline = time.monotonic() + 120
            while not live() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert live(), run.log()[-3000:]
        assert 'backfill: finished, ingest is live (the source sent nothing for 5 s)' in run.log()


def _score_snapshots(store: Path) -> int:
    try:
        with sqlite3.connect(store, timeout=30) as conn:
            return conn.execute('SELECT COUNT(*) FROM score_snapshot').fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_every_sequenced_event_has_a_time() -> None:
    """The horizon compares `time`s: the capture's sequenced events all carry one."""
    assert all(event_time_ms(event) for event in map(decode_frame, FRAMES) if isinstance(event, SEQUENCED))


def test_backfill_hours_0_ends_an_unfinished_backfill(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger='feedgen')
    db = open_database(tmp_path / 'feedgen.db')
    assert Backfill.plan(Indexer(db, RELAY), 24, clock=lambda: NOW) is not None  # then the process dies
    assert Backfill.plan(Indexer(db, RELAY), 0, clock=lambda: NOW) is None
    assert BackfillState.get().finished_at == int(NOW * 1000)
    assert any(r.getMessage().startswith('backfill: turned off (FEEDGEN_BACKFILL_HOURS=0)') for r in caplog.records)
    app = create_app(Settings(database=str(tmp_path / 'feedgen.db')), db=db)
    assert app.test_client().get('/xrpc/_health').get_json()['status'] == 'ok'
    db.close()
