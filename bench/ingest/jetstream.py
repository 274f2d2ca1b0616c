"""Jetstream benchmark: the same synthetic events through the firehose and through Jetstream, in one run.

Owns the source comparison: it takes the cached synthetic capture (`synth.py`), serves it once as a firehose
(`CaptureRelay`) and once as Jetstream events (the stand-in server of `tests/jetstreams.py`, the capture's frames
translated to Jetstream's wire, with and without dictionary zstd compression), and runs `feedgen ingest --once`
on a fresh store against each, in its own process. It reports records written per second, CPU microseconds per
record, bytes on the wire and peak RSS of the ingest process, and checks that every store holds the capture's
truth (live posts and their like counts). The stand-in's own work is in this process and not counted.

Usage: `python -m bench.ingest.jetstream [--frames 50000]`
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from bench.ingest.run import OUT, check_store, ensure_capture, run_measured
from bench.measure import MB, Usage, load_averages, markdown_table
from feedgen.ingest.capture import read_capture
from feedgen.ingest.jetstream import subscribe_events_url
from feedgen.ingest.records import INDEXED_COLLECTIONS
from feedgen.ingest.relay import CaptureRelay
from feedgen.store.models import open_database, save_cursor
from tests.jetstreams import StandInJetstream, from_firehose

HEADERS = ['source', 'messages', 'records written', 'seconds', 'records/s', 'CPU µs per record', 'wire MB',
           'wire bytes per record', 'peak RSS MB']  # fmt: skip


def ingest(name: str, env: dict[str, str], cursor_under: str | None = None) -> tuple[dict, Usage, Path]:
    """`feedgen ingest --once` on a fresh store with `env`; the store's cursor starts at 0 under `cursor_under`."""
    database = OUT / f'jetstream-bench-{name}.db'
    for suffix in ('', '-wal', '-shm'):
        Path(f'{database}{suffix}').unlink(missing_ok=True)
    if cursor_under:
        db = open_database(str(database))
        with db.atomic():
            save_cursor(cursor_under, 0)  # from the first event, not the live tip
        db.close()
    feedgen = shutil.which('feedgen', path=str(Path(sys.executable).parent)) or 'feedgen'
    stdout, usage = run_measured([feedgen, 'ingest', '--once'], env | {'FEEDGEN_DATABASE': str(database)},
                                 OUT / f'jetstream-bench-{name}.log')  # fmt: skip
    return json.loads(stdout.strip().splitlines()[-1]), usage, database


def row(name: str, summary: dict, usage: Usage, wire_bytes: int, records: int) -> list[object]:
    return [name, summary['frames'], records, round(summary['seconds'], 2), round(records / summary['seconds']),
            round(usage.cpu_seconds / records * 1e6), round(wire_bytes / MB, 1), round(wire_bytes / records),
            round(usage.peak_rss_mb)]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=50_000)
    parser.add_argument('--accounts', type=int, default=5_000)
    args = parser.parse_args(argv)
    capture, truth = ensure_capture(args.frames, args.accounts)
    frames = list(read_capture(capture))
    payloads = from_firehose(frames)
    records = sum(
        1 for p in payloads if p['$type'].endswith('#commit') and p['collection'] in INDEXED_COLLECTIONS
    )  # the records both sources write (an update counts once)
    print(
        f'\n### Firehose and Jetstream: {len(frames):,} synthetic frames, {records:,} records of indexed collections\n'
    )
    print(f'Load averages before: {load_averages()}\n')
    rows = []
    with CaptureRelay(frames) as relay:
        summary, usage, database = ingest('firehose', {'FEEDGEN_FIREHOSE': relay.url})
    check_store(database, truth)
    rows.append(row('firehose (relay, CBOR + CAR)', summary, usage, sum(map(len, frames)), records))
    for compress in (False, True):
        with StandInJetstream(payloads, compress=compress, close_when_done=True) as server:
            name = 'jetstream-zstd' if compress else 'jetstream'
            summary, usage, database = ingest(name, {'FEEDGEN_JETSTREAM': server.url}, subscribe_events_url(server.url))
            wire = server.bytes_sent
        check_store(database, truth)
        label = 'Jetstream, zstd dictionary' if compress else 'Jetstream, uncompressed JSON'
        rows.append(row(label, summary, usage, wire, records))
    print(markdown_table(HEADERS, rows))
    print("\nEvery store matches the capture's truth (live posts and their like counts).")
    print(f'Load averages after: {load_averages()}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
