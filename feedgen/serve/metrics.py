"""Metrics: `GET /metrics` in the Prometheus text format, and the same ingest numbers for `feedgen status`.

Owns what is measured and what it is called. Ingest runs in its own process, so its numbers come from the store:
the `IngestStat` row the ingest pipeline updates in each batch's own transaction (so they are as durable as the
data, and any serving process reads the same), `IngestState` (the cursor and its event time) and `BackfillState`
(a history backfill's progress). Requests and their latency, by endpoint and feed, are counted in the serving
processes with prometheus_client: with several workers in multiprocess files (`PROMETHEUS_MULTIPROC_DIR`, which
`feedgen serve` sets up), so whichever worker answers a scrape reports the totals of all of them. Reader-graph
syncs (readers synced, pending, failed by reason) are counted from their `ReaderGraph` rows. It never writes the
store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import peewee
from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedgen.ingest.backfill import backfill_progress
from feedgen.ingest.pipeline import RATE_WINDOW_SECONDS
from feedgen.ingest.records import RecordError, parse_datetime_ms
from feedgen.store.labels import labeler_totals
from feedgen.store.models import BackfillState, IngestStat, IngestState
from feedgen.store.reader_graphs import graph_counts

MULTIPROC_ENV = 'PROMETHEUS_MULTIPROC_DIR'
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

metrics = Blueprint('metrics', __name__)


@dataclass
class IngestSnapshot:
    """What the store says about one firehose's ingest: its cursor and the running totals of `IngestStat`."""

    firehose: str
    cursor: int | None = None
    event_time: str = ''
    lag_seconds: float | None = None
    """Now minus the relay's time of the event at the cursor; None when that time is unknown."""
    events_per_second: float = 0.0
    updated_at: float | None = None
    """When ingest last committed a batch (Unix seconds); `events_per_second` reads 0 once that is
    `RATE_WINDOW_SECONDS` ago."""
    totals: dict[str, Any] = field(default_factory=dict)
    """`frames`, `batches`, `relay_resets`, and by label: `events`, `skipped`, `ops`, `reconnects`."""
    backfill: dict[str, Any] | None = None
    """The history backfill's `backfill_progress`, None when this firehose never backfilled."""


def ingest_snapshots(now: float | None = None) -> list[IngestSnapshot]:
    """One snapshot per firehose (or replayed capture) ingest has written to the store, by name."""
    now = time.time() if now is None else now
    snapshots: dict[str, IngestSnapshot] = {}
    for state in IngestState.select():
        snapshot = snapshots.setdefault(state.firehose, IngestSnapshot(state.firehose))
        snapshot.cursor, snapshot.event_time = state.cursor, state.time
        with contextlib.suppress(RecordError):
            snapshot.lag_seconds = max(0.0, now - parse_datetime_ms(state.time) / 1000)
    for stat in IngestStat.select():
        snapshot = snapshots.setdefault(stat.firehose, IngestSnapshot(stat.firehose))
        snapshot.totals = json.loads(stat.totals)
        snapshot.updated_at = stat.updated_at / 1000
        fresh = now - snapshot.updated_at <= RATE_WINDOW_SECONDS
        snapshot.events_per_second = stat.rate if fresh else 0.0
    for row in BackfillState.select():
        snapshots.setdefault(row.firehose, IngestSnapshot(row.firehose)).backfill = backfill_progress(row)
    return [snapshots[name] for name in sorted(snapshots)]


def database_bytes(db: peewee.Database) -> int | None:
    """Bytes the store takes on disk (a SQLite file with its WAL), or None for a server database."""
    if not isinstance(db, peewee.SqliteDatabase) or db.database == ':memory:':
        return None
    files = [Path(db.database + suffix) for suffix in ('', '-wal', '-shm')]
    return sum(path.stat().st_size for path in files if path.exists())


class StoreCollector(Collector):
    """Prometheus families of the ingest numbers and the database size, read from the store at each scrape."""

    def __init__(self, db: peewee.Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        self.db.connect(reuse_if_open=True)
        snapshots = ingest_snapshots()
        gauges: dict[str, tuple[str, Callable[[IngestSnapshot], float | None]]] = {
            'cursor': ('Last sequence number committed (with the events it covers).', lambda s: s.cursor),
            'lag_seconds': ('Now minus the relay time of the event at the cursor.', lambda s: s.lag_seconds),
            'events_per_second': (
                f'Frames read per second over the last {RATE_WINDOW_SECONDS:g} s of ingest (0 when idle).',
                lambda s: s.events_per_second,
            ),
            'last_batch_timestamp_seconds': ('When ingest last committed a batch.', lambda s: s.updated_at),
        }
        for name, (doc, value) in gauges.items():
            family: GaugeMetricFamily | CounterMetricFamily = GaugeMetricFamily(
                f'feedgen_ingest_{name}', doc, labels=['firehose']
            )
            for snapshot in snapshots:
                if (measured := value(snapshot)) is not None:
                    family.add_metric([snapshot.firehose], measured)
            yield family
        counters = {
            'frames': 'Websocket messages read from the relay.',
            'batches': 'Batches committed.',
            'relay_resets': 'Times the relay sequence went backwards and ingest took the new one.',
        }
        for name, doc in counters.items():
            family = CounterMetricFamily(f'feedgen_ingest_{name}', doc, labels=['firehose'])
            for snapshot in snapshots:
                family.add_metric([snapshot.firehose], snapshot.totals.get(name, 0))
            yield family
        labelled = {
            'events': ('kind', 'Frames decoded, by kind (commit, account, identity, sync, info, errorframe).'),
            'skipped': ('reason', 'Frames and ops left out, by reason (bad_cbor, missing_block, duplicate_seq, ...).'),
            'ops': ('op', 'Record operations written, by kind (create post, delete like, ...).'),
            'reconnects': ('reason', 'Connections that ended and were retried, by reason.'),
            'plugin_errors': ('indexer', 'Records a plugin indexer failed on (its rows left out), by indexer.'),
        }
        for name, (label, doc) in labelled.items():
            family = CounterMetricFamily(f'feedgen_ingest_{name}', doc, labels=['firehose', label])
            for snapshot in snapshots:
                for key, count in sorted(snapshot.totals.get(name, {}).items()):
                    family.add_metric([snapshot.firehose, key.lower()], count)
            yield family
        yield from _backfill_families(snapshots)
        yield from reader_graph_families(graph_counts())
        yield from labeler_families(labeler_totals())
        size = database_bytes(self.db)
        if size is not None:
            yield GaugeMetricFamily('feedgen_database_bytes', 'Size of the store on disk (SQLite file and WAL).', size)


_BACKFILL_GAUGES = {
    'active': ('1 while the history backfill runs (ingest is not live yet), 0 once it finished.', None),
    'events': ('Events the backfill read from the source (skipped ones included).', 'events'),
    'hours_covered': ('Hours of history the backfill has ingested.', 'hours_covered'),
    'hours': ('Hours of history the backfill was asked for.', 'hours'),
    'events_per_second': ('Events per second the backfill reads.', 'events_per_second'),
    'eta_seconds': ('Estimated seconds until ingest is live.', 'eta_seconds'),
}


def _backfill_families(snapshots: list[IngestSnapshot]) -> Iterator[Metric]:
    for name, (doc, key) in _BACKFILL_GAUGES.items():
        family = GaugeMetricFamily(f'feedgen_backfill_{name}', doc, labels=['firehose'])
        for snapshot in snapshots:
            progress = snapshot.backfill
            if progress is None:
                continue
            value = (progress['state'] == 'backfilling') if key is None else progress[key]
            if value is not None:
                family.add_metric([snapshot.firehose], float(value))
        yield family


_LABELER_COUNTERS = {
    'received': ('val', 'Labels received from each labeler (well-formed, before the signature check), by value.'),
    'rejected': ('reason', 'Labels dropped, by reason (bad_signature, malformed, wrong_src, unsigned, bad_cbor, ...).'),
    'applied': ('val', 'Labels stored and in force on their subject (unless a newer one replaces them), by value.'),
    'negated': ('val', 'Negations stored (a label removed), by value.'),
}


def labeler_families(totals: dict[str, dict[str, dict[str, int]]]) -> Iterator[Metric]:
    """The labelers' running totals (`feedgen.store.labels.labeler_totals`) as Prometheus counters."""
    for name, (label, doc) in _LABELER_COUNTERS.items():
        family = CounterMetricFamily(f'feedgen_labels_{name}', doc, labels=['labeler', label])
        for did, counts in sorted(totals.items()):
            for key, count in sorted(counts.get(name, {}).items()):
                family.add_metric([did, key], count)
        yield family


def reader_graph_families(counts: dict[str, Any]) -> Iterator[Metric]:
    """The reader-graph syncs (`feedgen.store.reader_graphs.graph_counts`) as Prometheus gauges."""
    readers = GaugeMetricFamily(
        'feedgen_reader_graphs', 'Readers whose follows were read from their PDS, by state.', labels=['state']
    )
    for state in ('synced', 'pending', 'failed'):
        readers.add_metric([state], counts[state])
    yield readers
    failed = GaugeMetricFamily(
        'feedgen_reader_graph_failures', 'Readers whose last follow sync failed, by reason.', labels=['reason']
    )
    for reason, count in sorted(counts['failed_by_reason'].items()):
        failed.add_metric([reason], count)
    yield failed
    yield GaugeMetricFamily(
        'feedgen_reader_graphs_truncated',
        'Synced readers who follow more accounts than FEEDGEN_GRAPH_MAX_FOLLOWS (the newest are kept).',
        counts['truncated'],
    )


class RequestMetrics:
    """Request counters and latencies of one app; kept in the multiprocess files when `PROMETHEUS_MULTIPROC_DIR`
    is set (the server's workers), in this process otherwise (tests, a single process)."""

    def __init__(self) -> None:
        self.directory = os.environ.get(MULTIPROC_ENV)
        if self.directory:
            # prometheus_client picks its value store when imported, which may be before the server set the
            # directory; this worker's metrics must live in the shared files, so pick again.
            values.ValueClass = values.MultiProcessValue()
        self.requests = Counter(
            'feedgen_requests',
            'HTTP requests answered, by endpoint, feed (record key; empty for other endpoints) and status.',
            ['endpoint', 'feed', 'status'],
            registry=None,
        )
        self.seconds = Histogram(
            'feedgen_request_duration_seconds',
            'Time to answer a request, by endpoint and feed.',
            ['endpoint', 'feed'],
            registry=None,
        )
        self.receipts = Counter(
            'feedgen_receipts',
            'Skeleton requests by feed and by whether their receipt was kept (FEEDGEN_RECEIPTS).',
            ['feed', 'kept'],
            registry=None,
        )
        self._children: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric`'s child for `labels`, looked up once per label set: its value is all a request changes (the label
        sets are few: endpoints, served feeds, statuses)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def count_request(self, endpoint: str, feed: str, status: int, seconds: float) -> None:
        """Counts one answered request and its time."""
        self._child(self.requests, endpoint, feed, str(status)).inc()
        self._child(self.seconds, endpoint, feed).observe(seconds)

    def count_receipt(self, rkey: str, kept: bool) -> None:
        """Counts one skeleton request of feed `rkey` whose receipt was kept, or not (a share or a rate left it out)."""
        self._child(self.receipts, rkey, 'true' if kept else 'false').inc()

    def registry(self, db: peewee.Database) -> CollectorRegistry:
        """A registry to scrape once: the store's numbers and the request metrics of every serving process."""
        registry = CollectorRegistry()
        registry.register(StoreCollector(db))
        if self.directory:
            multiprocess.MultiProcessCollector(registry, self.directory)
        else:
            registry.register(self.requests)
            registry.register(self.seconds)
            registry.register(self.receipts)
        return registry


def _feed_label() -> str:
    """The record key of the served feed a request names (`feed=`), or '' (never an arbitrary client string)."""
    uri = request.args.get('feed', '') if request.url_rule else ''
    if not uri:
        return ''
    state = current_app.extensions['feedgen']
    prefix = f'at://{state["settings"].publisher_did}/app.bsky.feed.generator/'
    rkey = uri[len(prefix) :] if uri.startswith(prefix) else ''
    return rkey if rkey in state['feeds'] else 'unknown'


@metrics.before_app_request
def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


@metrics.after_app_request
def _count(response: Response) -> Response:
    started = g.pop('metrics_started', None)
    if started is None:  # refused before this blueprint's hook ran
        started = time.perf_counter()
    request_metrics: RequestMetrics = current_app.extensions['feedgen_metrics']
    endpoint = request.url_rule.rule if request.url_rule else 'unmatched'
    try:
        feed = _feed_label()
    except UnicodeDecodeError:
        feed = ''
    request_metrics.count_request(endpoint, feed, response.status_code, time.perf_counter() - started)
    return response


@metrics.get('/metrics')
def scrape() -> Response:
    """The Prometheus text exposition of everything above."""
    db = current_app.extensions['feedgen']['db']
    registry = current_app.extensions['feedgen_metrics'].registry(db)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE)


def register(app: Flask) -> None:
    """Serves `/metrics` from `app` and counts every request it answers."""
    app.extensions['feedgen_metrics'] = RequestMetrics()
    app.register_blueprint(metrics)


@contextlib.contextmanager
def multiprocess_directory() -> Iterator[str]:
    """Makes `PROMETHEUS_MULTIPROC_DIR` name a fresh folder for the serving processes started inside the block,
    removed after it; an operator's own setting is kept as it is."""
    if os.environ.get(MULTIPROC_ENV):
        yield os.environ[MULTIPROC_ENV]
        return
    folder = tempfile.mkdtemp(prefix='feedgen-metrics-')
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def status_report(db: peewee.Database) -> dict[str, Any]:
    """What `feedgen status` shows: the store's size and each firehose's ingest snapshot, as JSON-able data."""
    db.connect(reuse_if_open=True)
    return {
        'database_bytes': database_bytes(db),
        'ingest': [asdict(s) for s in ingest_snapshots()],
        'reader_graphs': graph_counts(),
    }


def _format_backfill(progress: dict[str, Any]) -> list[str]:
    eta = progress['eta_seconds']
    running = progress['state'] == 'backfilling'
    return [
        f'  backfill    {progress["state"]}: {progress["events"]} events, {progress["hours_covered"]:.1f} of '
        f'{progress["hours"]:g} h covered (from {progress["horizon"]}, up to {progress["event_time"] or "none yet"})',
        f'              {progress["events_per_second"]:.0f} events/s, '
        + (('ETA unknown' if eta is None else f'ETA {eta:.0f} s') if running else 'ingest is live'),
    ]


def format_status(report: dict[str, Any], now: float | None = None) -> str:
    """`status_report` for a person: one block per firehose, one line per number."""
    now = time.time() if now is None else now
    size = report['database_bytes']
    lines = [f'database      {"server database" if size is None else f"{size / 1e6:.1f} MB"}']
    for snapshot in report['ingest']:
        totals = snapshot['totals']
        lag = snapshot['lag_seconds']
        updated = snapshot['updated_at']
        lines += [
            f'ingest        {snapshot["firehose"]}',
            f'  cursor      {snapshot["cursor"]} (event time {snapshot["event_time"] or "unknown"}, '
            + ('lag unknown)' if lag is None else f'{lag:.1f} s behind)'),
            f'  rate        {snapshot["events_per_second"]:.1f} events/s, last batch '
            + ('never' if updated is None else f'{now - updated:.1f} s ago'),
            f'  frames      {totals.get("frames", 0)} in {totals.get("batches", 0)} batches',
        ]
        for name in ('events', 'ops', 'skipped', 'reconnects'):
            counts = totals.get(name) or {}
            shown = ', '.join(f'{key} {count}' for key, count in sorted(counts.items())) or 'none'
            lines.append(f'  {name:<11} {shown}')
        lines.append(f'  resets      {totals.get("relay_resets", 0)} (relay sequence went backwards)')
        if snapshot.get('backfill'):
            lines += _format_backfill(snapshot['backfill'])
    if not report['ingest']:
        lines.append('ingest        nothing ingested into this store yet')
    graphs = report['reader_graphs']
    failures = ', '.join(f'{reason} {count}' for reason, count in sorted(graphs['failed_by_reason'].items()))
    lines.append(
        f'readers       {graphs["synced"]} synced ({graphs["truncated"]} cut at the cap), {graphs["pending"]} pending, '
        f'{graphs["failed"]} failed' + (f' ({failures})' if failures else '') + ': follows read from their PDS'
    )
    lines.append('requests      by feed, with latency: GET /metrics on the running server')
    return '\n'.join(lines)
