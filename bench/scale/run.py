"""Scale benchmark: feedgen on a steady-state store holding a fraction of 72 hours of the whole network.

Owns the measurement of issue 13's targets at one fraction of the full window: it fills the store
(`bench.scale.store`), times each periodic job's first run on it and its next runs after ingest (the jobs of the
default feeds, one per installed algorithm, as `feedgen run` schedules them), ingests a real capture remapped onto
the store's accounts and posts (`bench.scale.remap`) with `feedgen ingest --once` and its scheduler, into the
filled store and into a fresh one in the same run (as fast as it reads, then paced at the live 2,000 frames/s; each
from the moment its process's jobs ended their first runs: a steady state, not a start),
times a prune run (the rows expiring over one pruning period) and the longest wait of a writer during it, weighs
every table and index, and serves every feed's first page at 16 connections (`bench.serve.run`, optional; memory per
serving worker, its private memory apart from the store pages it maps). Prints
one table, writes everything as JSON under `bench/out/`, and keeps the stores there (`scale-<fraction>.db`).

Usage: `python -m bench.scale --fraction 0.125 [--frames 60000] [--paced-seconds 20] [--no-serve]`
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from types import TracebackType
from typing import Any

import peewee

from bench.ingest.run import run_measured
from bench.measure import MB, load_averages, machine, markdown_table, written_bytes
from bench.scale import postgres
from bench.scale.remap import Remapper
from bench.scale.store import Stored, Volumes, fill, storage, table_totals
from bench.serve.fill import StoreInfo, did_of
from feedgen.ingest.capture import read_capture
from feedgen.ingest.relay import CaptureRelay
from feedgen.jobs import PRUNE_EVERY_SECONDS, feed_jobs, prune
from feedgen.ranking.algorithm import Job
from feedgen.ranking.plugins import discover_algorithms, load_feeds
from feedgen.store.models import open_database

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / 'bench' / 'out'
CAPTURE = ROOT / 'tests' / 'data' / 'pds-session-20acct.atfh'
LIVE_RATE = 2000
"""Frames per second of the live network at its sustained peak."""
RETENTION_HOURS = 72
GB = 1024**3
_JOB_LINE = re.compile(r'job (.+?) done in ([0-9.]+)s')
_JOB_END = re.compile(r'job (.+?) (?:done in|failed after) ')


def time_jobs(db: peewee.Database, jobs: Sequence[Job]) -> dict[str, dict[str, float]]:
    """Runs each of `jobs` once on `db`, one after the other; their seconds (wall and CPU) and periods. The jobs keep
    what they learned between calls on the same `db`, as in the ingest process: a first call scans the window, a
    later one reads what changed since."""
    times = {}
    for job in jobs:
        started, cpu = time.monotonic(), time.thread_time()
        job.run(db)
        times[job.name] = {'seconds': round(time.monotonic() - started, 3),
                           'cpu_seconds': round(time.thread_time() - cpu, 3), 'every': job.seconds}  # fmt: skip
    return times


def ingest_runs(
    database: Path | str, frames: Sequence[bytes], args: argparse.Namespace, name: str, jobs: Sequence[Job]
) -> dict[str, Any]:
    """The frames into one store: `args.frames` of them as fast as it reads, then the rest at the live rate."""
    print(f'ingest into the {name} store ...', file=sys.stderr)
    runs = {'fast': ingest(database, frames[: args.frames], None, args.out / f'scale-ingest-{name}.log', jobs)}
    if len(frames) > args.frames and 'error' not in runs['fast']:
        paced = frames[args.frames :]
        runs['paced'] = ingest(database, paced, LIVE_RATE, args.out / f'scale-paced-{name}.log', jobs)
    return runs


class WriterProbe:
    """While in a `with` block, takes and releases SQLite's write lock over and over on its own connection, keeping
    each wait: how long another writer (ingest) could have been held up."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True)

    @property
    def longest(self) -> float:
        return max(self.waits, default=0.0)

    def _probe(self) -> None:
        conn = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        try:
            while not self._stop.wait(0.002):
                started = time.perf_counter()
                conn.execute('BEGIN IMMEDIATE')
                conn.execute('COMMIT')
                self.waits.append(time.perf_counter() - started)
        finally:
            conn.close()

    def __enter__(self) -> WriterProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


def time_prune(db: peewee.Database, store: Path | str, ahead: float = PRUNE_EVERY_SECONDS) -> dict[str, Any]:
    """One prune run on `db` as the scheduler makes it, `ahead` seconds from now (by default what expires in one
    period), its seconds (wall and CPU: it pauses between transactions). On SQLite a `WriterProbe` measures the
    longest wait of another writer (PostgreSQL's writers wait only for the same rows)."""
    probe = WriterProbe(store) if isinstance(store, Path) else None
    with probe or contextlib.nullcontext():
        started, cpu = time.monotonic(), time.thread_time()
        removed = prune(db, RETENTION_HOURS, now=time.time() + ahead)
        seconds, cpu_seconds = time.monotonic() - started, time.thread_time() - cpu
    waited = {'longest_writer_wait_ms': round(probe.longest * 1000, 1), 'probes': len(probe.waits)} if probe else {}
    return {'seconds': round(seconds, 3), 'cpu_seconds': round(cpu_seconds, 3), 'removed': removed} | waited


def settle(database: Path | str) -> int:
    """Writes to the database file what the store still holds elsewhere (SQLite: a WAL checkpoint, TRUNCATE;
    PostgreSQL: a `CHECKPOINT`); returns the bytes that took. An ingest run ends with pages it dirtied still waiting
    for the next checkpoint (up to `CHECKPOINT_BYTES` of WAL): they are its writes, and the next run would pay them."""
    if isinstance(database, str):
        before = postgres.server_write_bytes()
        db = open_database(database)
        try:
            db.execute_sql('CHECKPOINT')
        finally:
            db.close()
        return postgres.server_write_bytes() - before
    before = written_bytes(os.getpid()) or 0
    with contextlib.closing(sqlite3.connect(database)) as conn:
        conn.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchall()
    return (written_bytes(os.getpid()) or 0) - before


def ingest(
    database: Path | str, frames: Sequence[bytes], rate: float | None, log: Path, jobs: Sequence[Job]
) -> dict[str, Any]:
    """`feedgen ingest --once` (the default feeds' jobs scheduled beside it) over a loopback relay of `frames`,
    measured in its steady state: the relay holds the frames until the process's jobs (`jobs` and the prune) have
    ended their first runs, which scan the whole window once per process start, and rates, CPU and disk writes are
    those from then on (the jobs' next runs, which read what changed, fall in it: the first batch brings them
    forward). Disk writes are the process's, and on PostgreSQL the database server's too, with the checkpoint of what it
    left (`settle`: each run starts from a settled store and pays its own)."""
    feedgen = shutil.which('feedgen', path=str(Path(sys.executable).parent)) or 'feedgen'
    on_postgres = isinstance(database, str)
    hold = threading.Event()
    waited_for = {'prune', *(job.name for job in jobs)}
    warm_up: list[float] = []
    server_before = 0

    def ready() -> bool:
        nonlocal server_before
        if waited_for <= set(_JOB_END.findall(log.read_text())):
            warm_up.append(time.monotonic() - started)
            server_before = postgres.server_write_bytes() if on_postgres else 0
            hold.set()
        return hold.is_set()

    settle(database)
    started = time.monotonic()
    with CaptureRelay(frames, rate=rate, hold=hold) as relay:
        env = {'FEEDGEN_DATABASE': str(database), 'FEEDGEN_FIREHOSE': relay.url, 'FEEDGEN_BACKFILL_HOURS': '0',
               'FEEDGEN_RETENTION_HOURS': str(RETENTION_HOURS)}  # fmt: skip
        try:
            stdout, usage = run_measured([feedgen, 'ingest', '--once'], env, log, ready)
        except RuntimeError:  # the ingest process failed: its last line says why
            return {'error': log.read_text().strip().splitlines()[-1], 'log': str(log)}
        usage.write_bytes += postgres.server_write_bytes() - server_before if on_postgres else 0
    usage.write_bytes += settle(database)
    summary = json.loads(stdout.strip().splitlines()[-1])
    runs: dict[str, list[float]] = {}
    for name, seconds in _JOB_LINE.findall(log.read_text()):
        runs.setdefault(name, []).append(float(seconds))
    return {
        'frames': summary['frames'],
        'warm_up_seconds': round(warm_up[0], 1) if warm_up else None,
        'seconds': round(usage.seconds, 3),
        'frames_per_s': round(summary['frames'] / usage.seconds),
        'write_mb': round(usage.write_bytes / MB, 1),
        'write_mb_per_s': round(usage.write_bytes / MB / usage.seconds, 1),
        'cpu_percent': round(usage.cpu_percent),
        'peak_rss_mb': round(usage.peak_rss_mb),
        'peak_private_mb': round(usage.peak_private_mb),
        'peak_mapped_mb': round(usage.peak_mapped_mb),
        'skipped': summary['skipped'],
        'jobs_in_process': runs,
    }


def serve(info: StoreInfo, store: Path | str, seconds: float, workers: int) -> list[dict[str, Any]]:
    """Every feed's first page at 16 connections (`bench.serve.run`: feedgen's server with granian)."""
    from bench.serve.run import serve_rows  # needs wrk and the server's extras: only when serving

    rows = serve_rows(info, store, seconds, [16], workers, everything=True, deep=False)
    return [{'feed': row.target.removesuffix(' (granian)'), 'page': row.page, 'connections': row.connections,
             'requests_per_s': round(row.load.rate), 'p50_ms': round(row.load.p50_ms, 2),
             'p99_ms': round(row.load.p99_ms, 2), 'errors': row.load.errors, 'server_rss_mb': round(row.rss_mb),
             'worker_private_mb': round(row.private_mb), 'worker_mapped_mb': round(row.mapped_mb),
             'workers': workers} for row in rows]  # fmt: skip


def forget_cursors(store: Path) -> None:
    """Deletes the saved firehose cursors of a store an earlier run ingested into: the new frames start at seq 1."""
    with sqlite3.connect(store) as conn:
        conn.execute('DELETE FROM ingest_state')


def fresh_store(path: Path) -> Path:
    """An empty store at `path`, with the tables `feedgen.store.models` creates."""
    for suffix in ('', '-wal', '-shm'):
        Path(f'{path}{suffix}').unlink(missing_ok=True)
    open_database(path).close()
    return path


def file_bytes(path: Path) -> int:
    return sum(Path(f'{path}{suffix}').stat().st_size for suffix in ('', '-wal') if Path(f'{path}{suffix}').exists())


def engagement(store: Path) -> dict[str, Any]:
    """How likes spread over posts: the share with none, percentiles and the most liked post."""
    with sqlite3.connect(f'file:{store}?mode=ro', uri=True) as conn:
        counts = [count for (count,) in conn.execute('SELECT like_count FROM post ORDER BY like_count')]
    if not counts:
        return {}
    n = len(counts)
    return {'posts': n, 'unliked_share': round(sum(1 for c in counts if c == 0) / n, 3), 'p50': counts[n // 2],
            'p90': counts[n * 9 // 10], 'p99': counts[n * 99 // 100], 'p999': counts[n * 999 // 1000],
            'max': counts[-1], 'over_10000': sum(1 for c in counts if c > 10_000)}  # fmt: skip


def row_counts(store: Path) -> dict[str, int]:
    with sqlite3.connect(f'file:{store}?mode=ro', uri=True) as conn:
        tables = ('post', 'like', 'account_number', 'repost', 'follow', 'post_term', 'actor')
        return {table: conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] for table in tables}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs every measurement; returns the results (written as JSON by `main`)."""
    volumes = Volumes.at(args.fraction)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    name = f'scale-{args.fraction:g}'
    store = out / f'{name}.db'
    info_file = out / f'{name}.info.json'
    if args.reuse and info_file.exists():
        info = StoreInfo(**json.loads(info_file.read_text()))
        forget_cursors(store)
    else:
        print(f'filling {volumes.posts:,} posts over {volumes.accounts:,} accounts ...', file=sys.stderr)
        info = fill(store, volumes, args.seed)
        info_file.write_text(json.dumps(asdict(info)))
    results: dict[str, Any] = {'fraction': args.fraction, 'machine': machine(), 'load_before': load_averages()}
    results['fill'] = asdict(info) | {'bytes': file_bytes(store)}
    results['rows'] = row_counts(store)
    results['engagement'] = engagement(store)
    messages = list(read_capture(args.capture))
    paced = round(LIVE_RATE * args.paced_seconds)
    accounts = [did_of(i) for i in range(info.accounts)]
    frames = Remapper(store, accounts, seed=args.seed).frames(messages, args.frames + paced)
    url: str = args.database
    if url:
        postgres.empty(url)
    jobs = feed_jobs(load_feeds(discover_algorithms()).values())
    fresh = url or fresh_store(out / f'{name}-fresh.db')
    results['ingest'] = {'fresh': ingest_runs(fresh, frames, args, 'fresh', jobs)}
    target: Path | str = store
    if url:
        print('copying the store into PostgreSQL ...', file=sys.stderr)
        postgres.load(store, url)
        target = url
    print('pruning what expired since the fill, first job runs ...', file=sys.stderr)
    db = open_database(target)  # one store object for the jobs, as in the ingest process: they keep what they learned
    results['prune_catch_up'] = time_prune(db, target, ahead=0)
    results['jobs_first'] = time_jobs(db, jobs)
    results['ingest']['filled'] = ingest_runs(target, frames, args, 'filled', jobs)
    print('job runs after ingest, prune ...', file=sys.stderr)
    results['jobs'] = time_jobs(db, jobs)
    results['prune'] = time_prune(db, target)
    db.close()
    print('weighing tables and indexes ...', file=sys.stderr)
    stored = postgres.storage(url) if url else storage(store)
    results['storage'] = [asdict(item) | {'per_row': round(item.per_row, 1)} for item in stored]
    results['store_bytes'] = postgres.database_bytes(url) if url else file_bytes(store)
    if args.serve:
        print('serving ...', file=sys.stderr)
        results['serve'] = serve(info, target, args.serve_seconds, args.workers)
    results['load_after'] = load_averages()
    return results


def report(results: dict[str, Any]) -> str:
    """The one table of results: the filled store, the fresh store where measured, and issue 13's target."""
    fraction = results['fraction']
    filled, fresh = results['ingest']['filled'], results['ingest']['fresh']
    rows: list[list[object]] = []
    full = results['store_bytes'] / fraction / GB
    rows.append(['store size GB (full size: linear extrapolation)', f'{results["store_bytes"] / GB:.2f} ({full:.1f})',
                 '', '<= 12 at full size'])  # fmt: skip
    rows.append(['fill seconds', results['fill']['seconds'], '', ''])
    stored = [Stored(item['table'], item['name'], item['bytes'], item['rows']) for item in results['storage']]
    for table, total in table_totals(stored).items():
        if total.rows < 1000:
            continue
        rows.append([f'bytes per {table} row, indexes included ({total.rows:,} rows)', round(total.per_row), '', ''])
    for run in ('fast', 'paced'):
        if run not in filled:
            continue
        if 'error' in filled[run] or 'error' in fresh.get(run, {}):
            failed = filled[run].get('error') or fresh[run].get('error')
            rows.append([f'ingest ({run})', f'failed: {failed}', '', ''])
            continue
        label = 'as fast as read' if run == 'fast' else f'paced at {LIVE_RATE:,}/s'
        warm_up = f'{filled[run].get("warm_up_seconds")} s; fresh {fresh[run].get("warm_up_seconds")} s'
        rows.append([f"ingest frames/s, {label}, after the jobs' first runs ({warm_up})",
                     filled[run]['frames_per_s'], fresh[run]['frames_per_s'],
                     '>= 10,000' if run == 'fast' else '2,000'])  # fmt: skip
        rows.append([f'disk writes MB/s, {label}', filled[run]['write_mb_per_s'], fresh[run]['write_mb_per_s'],
                     '<= 25' if run == 'paced' else ''])  # fmt: skip
        rows.append([f'ingest+jobs peak RSS MB (private; mapped store pages), {label}', _memory(filled[run]),
                     _memory(fresh[run]), '<= 1,024'])  # fmt: skip
    share = 0.0
    for name, job in results['jobs'].items():
        first = results['jobs_first'].get(name, {}).get('seconds', '')
        label = f'job `{name}` s after ingest, CPU s (first run: a full scan; every {job["every"]:g} s)'
        rows.append([label, f'{job["seconds"]:.3f}, {job["cpu_seconds"]:.3f} ({first})', '', ''])
        share += job['cpu_seconds'] / job['every']
    catch_up = results['prune_catch_up']
    removed = ', '.join(f'{count:,} {kind}' for kind, count in catch_up['removed'].items())
    rows.append([f'prune of what expired during the fill, s ({removed})', catch_up['seconds'], '', ''])
    if 'longest_writer_wait_ms' in catch_up:
        rows.append(['that prune: longest writer wait ms', catch_up['longest_writer_wait_ms'], '', '<= 100'])
    prune_run = results['prune']
    share += prune_run['cpu_seconds'] / PRUNE_EVERY_SECONDS
    rows.append(['periodic work, CPU share of one core (full size: x1/fraction)',
                 f'{share:.3f} ({share / fraction:.2f})', '', '<= 0.10 at full size'])  # fmt: skip
    removed = ', '.join(f'{count:,} {kind}' for kind, count in prune_run['removed'].items())
    rows.append([f'prune s, CPU s ({removed})', f'{prune_run["seconds"]}, {prune_run["cpu_seconds"]}', '', ''])
    if 'longest_writer_wait_ms' in prune_run:
        rows.append(['prune: longest writer wait ms', prune_run['longest_writer_wait_ms'], '', '<= 100'])
    for row in results.get('serve', []):
        latency = f'{row["p50_ms"]} / {row["p99_ms"]}' if row['p50_ms'] else 'no answer within 5 s'
        rows.append([f'serve `{row["feed"]}` first page p50 / p99 ms, 16 conns', latency, '',
                     _serve_target(row['feed'])])  # fmt: skip
        rows.append([f'serve `{row["feed"]}` errors', row['errors'], '', '0'])
        label = f'serve `{row["feed"]}` worker private MB (mapped pages; RSS of {row["workers"]} workers + parent)'
        memory = f'{row["worker_private_mb"]} ({row["worker_mapped_mb"]}; {row["server_rss_mb"]})'
        rows.append([label, memory, '', '<= 200 each'])
    return markdown_table(['measure', f'filled store ({fraction:g} of 72 h)', 'fresh store', 'target'], rows)


def _memory(run: dict[str, Any]) -> str:
    """An ingest run's peak RSS, and its peaks of private memory and of mapped store pages where measured."""
    if 'peak_private_mb' not in run:
        return str(run['peak_rss_mb'])
    return f'{run["peak_rss_mb"]} ({run["peak_private_mb"]}; {run["peak_mapped_mb"]})'


def _serve_target(feed: str) -> str:
    return 'p99 < 50' if feed.split('-')[0] in ('network', 'quiet') else 'p99 < 10'


def storage_table(results: dict[str, Any]) -> str:
    rows = [[item['table'], item['name'], item['rows'], round(item['bytes'] / MB, 1), item['per_row']]
            for item in results['storage']]  # fmt: skip
    return markdown_table(['table', 'table or index', 'rows', 'MB', 'bytes per row'], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--fraction', type=float, default=0.125, help='Of 72 hours of the whole network.')
    parser.add_argument('--frames', type=int, default=60_000, help='Remapped capture frames ingested at full speed.')
    parser.add_argument('--paced-seconds', type=float, default=20.0, help='Then this long at 2,000 frames/s (0: none).')
    parser.add_argument('--capture', type=Path, default=CAPTURE, help='The ATFH capture to remap.')
    parser.add_argument('--serve', action=argparse.BooleanOptionalAction, default=True, help='Serve (needs wrk).')
    parser.add_argument('--serve-seconds', type=float, default=5.0)
    parser.add_argument('--workers', type=int, default=2, help='Serving processes.')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--reuse', action='store_true', help='Reuse the store an earlier run filled (not its times).')
    parser.add_argument('--out', type=Path, default=OUT, help='Where the stores, logs and JSON go.')
    parser.add_argument(
        '--database', default='', help='postgresql://... : run on this database (its feedgen tables are emptied).'
    )
    args = parser.parse_args(argv)
    results = measure(args)
    results['command'] = 'python -m bench.scale ' + ' '.join(sys.argv[1:] if argv is None else argv)
    path = args.out / f'scale-{args.fraction:g}{"-postgres" if args.database else ""}.json'
    path.write_text(json.dumps(results, indent=2))
    print(f'\n### Scale: {args.fraction:g} of 72 h of the network\n')
    loads = f'{results["load_before"]} before, {results["load_after"]} after'
    print(f'Machine: {results["machine"]}. Load averages {loads}.')
    print(f'Command: `{results["command"]}`; results in {path}.\n')
    print(report(results))
    print()
    print(storage_table(results))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
