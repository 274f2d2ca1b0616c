"""feedgen.serve.metrics: /metrics in the Prometheus text format, ingest totals kept in the store, `feedgen status`."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import httpx
import peewee
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

import feedgen.serve.app
from feedgen.cli import main
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.serve.app import create_app
from feedgen.serve.receipts import ReceiptSampler
from feedgen.settings import ReceiptPolicy, Settings
from feedgen.store.models import IngestStat
from tests import frames
from tests.conftest import CAPTURE_5, feed_uri
from tests.processes import FeedgenProcess, free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels (parsed by prometheus_client)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_ingest_numbers_come_from_the_store(client: FlaskClient, pipeline: Pipeline) -> None:
    hostile = [b'\xff garbage', frames.commit(999_999, 'did:plc:m', [('create', 'app.bsky.feed.post/x', {})])]
    replay(CAPTURE_5, pipeline)
    pipeline.feed_all(hostile)
    response = client.get('/metrics')
    assert response.status_code == 200
    assert response.content_type.startswith('text/plain; version=0.0.4')
    got = samples(response.get_data(as_text=True))
    test = (('firehose', 'test'),)
    assert got['feedgen_ingest_frames_total', test] == 160
    assert got['feedgen_ingest_cursor', test] == 999_999
    assert got['feedgen_ingest_skipped_total', (('firehose', 'test'), ('reason', 'bad_cbor'))] == 1
    assert got['feedgen_ingest_skipped_total', (('firehose', 'test'), ('reason', 'wrong_type'))] == 1
    assert got['feedgen_ingest_events_total', (('firehose', 'test'), ('kind', 'commit'))] == 138
    assert got['feedgen_ingest_ops_total', (('firehose', 'test'), ('op', 'create post'))] == 53
    assert got['feedgen_ingest_lag_seconds', test] > 0  # the frames' time is fixed, the clock moves on
    assert got['feedgen_ingest_events_per_second', test] > 0
    assert abs(got['feedgen_ingest_last_batch_timestamp_seconds', test] - time.time()) < 60
    assert got['feedgen_database_bytes', ()] > 100_000


def test_totals_add_up_across_restarts_and_survive_them(db: peewee.Database) -> None:
    first = Pipeline(Indexer(db, 'relay'), batch_size=10)
    first.feed_all([frames.commit(seq, 'did:plc:a', []) for seq in range(1, 31)] + [b'junk'])
    again = Pipeline(Indexer(db, 'relay'), batch_size=10)  # a new process: counters from zero, cursor from the store
    again.feed_all([frames.commit(seq, 'did:plc:a', []) for seq in range(25, 41)])
    totals = json.loads(IngestStat.get(IngestStat.firehose == 'relay').totals)
    assert totals['frames'] == 31 + 16
    assert totals['skipped'] == {'bad_cbor': 1, 'duplicate_seq': 6}
    assert totals['events'] == {'Commit': 46}


def test_counters_not_yet_committed_are_not_counted(db: peewee.Database) -> None:
    """Counted in the batch's own transaction: a batch that fails leaves the totals as they were."""
    pipeline = Pipeline(Indexer(db, 'relay'), batch_size=1000)
    pipeline.feed_all([frames.commit(1, 'did:plc:a', [])])
    pipeline.feed(frames.commit(2, 'did:plc:a', [('create', 'app.bsky.feed.post/p', frames.post_record())]))

    def fail(_events: object) -> None:
        raise peewee.OperationalError('disk I/O error')

    pipeline.indexer.write = fail  # type: ignore[method-assign]
    with pytest.raises(peewee.OperationalError):
        pipeline.flush()
    assert json.loads(IngestStat.get(IngestStat.firehose == 'relay').totals)['frames'] == 1


def test_requests_are_counted_by_endpoint_feed_and_status(client: FlaskClient) -> None:
    for _ in range(3):
        assert client.get(f'/xrpc/app.bsky.feed.getFeedSkeleton?feed={quote(feed_uri("latest"))}').status_code == 200
    client.get('/xrpc/app.bsky.feed.getFeedSkeleton?feed=at://x/y/z')
    client.get('/nowhere')
    got = samples(client.get('/metrics').get_data(as_text=True))
    skeleton = ('endpoint', '/xrpc/app.bsky.feed.getFeedSkeleton')
    assert got['feedgen_requests_total', (skeleton, ('feed', 'latest'), ('status', '200'))] == 3
    assert got['feedgen_requests_total', (skeleton, ('feed', 'unknown'), ('status', '400'))] == 1
    assert got['feedgen_requests_total', (('endpoint', 'unmatched'), ('feed', ''), ('status', '404'))] == 1
    assert got['feedgen_request_duration_seconds_count', (skeleton, ('feed', 'latest'))] == 3
    assert got['feedgen_receipts_total', (('feed', 'latest'), ('kept', 'true'))] == 3


def test_receipts_left_out_are_counted(
    settings: Settings, db: peewee.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate's bucket sees a stopped clock: the requests' own duration (seconds on a loaded machine) refills none."""
    monkeypatch.setattr(feedgen.serve.app, 'ReceiptSampler', functools.partial(ReceiptSampler, clock=lambda: 0.0))
    client = create_app(replace(settings, receipts=ReceiptPolicy(per_second=2.0)), db=db).test_client()
    for _ in range(5):
        assert client.get(f'/xrpc/app.bsky.feed.getFeedSkeleton?feed={quote(feed_uri("latest"))}').status_code == 200
    got = samples(client.get('/metrics').get_data(as_text=True))
    kept = got.get(('feedgen_receipts_total', (('feed', 'latest'), ('kept', 'true'))), 0)
    left_out = got.get(('feedgen_receipts_total', (('feed', 'latest'), ('kept', 'false'))), 0)
    assert (kept, left_out) == (2, 3), 'a burst of 2, then none until the bucket refills'


def test_status_prints_what_metrics_reports(settings, pipeline: Pipeline) -> None:
    replay(CAPTURE_5, pipeline)
    env = {'FEEDGEN_DATABASE': settings.database}
    report = json.loads(CliRunner().invoke(main, ['status', '--json'], env=env).output)
    (ingest,) = report['ingest']
    assert ingest['firehose'] == 'test'
    assert ingest['cursor'] == 158
    assert ingest['totals']['frames'] == 158
    assert ingest['totals']['ops']['create post'] == 53
    assert report['database_bytes'] > 0
    text = CliRunner().invoke(main, ['status'], env=env).output
    assert 'cursor      158 (event time 20' in text
    assert 'frames      158 in ' in text
    assert 'skipped     unindexed_collection 6' in text  # profiles
    assert 'reconnects  none' in text


@pytest.mark.timeout(180)
def test_two_serving_processes_report_the_same_totals_and_log_json(tmp_path: Path) -> None:
    port = free_port()
    env = {
        'FEEDGEN_DATABASE': str(tmp_path / 'f.db'),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_LOG_FORMAT': 'json',
    }
    feed = quote(f'at://did:web:localhost%3A{port}/app.bsky.feed.generator/latest', safe='')
    base = f'http://127.0.0.1:{port}'
    with FeedgenProcess(['serve', '--port', str(port), '--workers', '2'], env, tmp_path) as serve:
        serve.wait_http(base + '/xrpc/_health')
        requests = 40
        for _ in range(requests):  # new connections: the server spreads them over both workers
            assert httpx.get(f'{base}/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed}').status_code == 200
        scrapes = [httpx.get(base + '/metrics').text for _ in range(8)]
    key = (
        'feedgen_requests_total',
        (('endpoint', '/xrpc/app.bsky.feed.getFeedSkeleton'), ('feed', 'latest'), ('status', '200')),
    )
    assert {samples(text)[key] for text in scrapes} == {requests}
    lines = [line for line in serve.log().splitlines() if line.strip()]
    assert lines, 'nothing was logged'
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {'time', 'level', 'logger', 'pid', 'message'} <= set(entries[0])
    assert len({entry['pid'] for entry in entries}) >= 2  # the master and the workers
