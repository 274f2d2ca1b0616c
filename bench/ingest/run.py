"""Ingest benchmark: `feedgen ingest --once` against the template baseline, on the same synthetic firehose.

Owns the ingest measurement: it makes (or reuses) a synthetic capture with the live mix (`synth.py`, cached
in `bench/out/`), replays it over a loopback `CaptureRelay` as fast as each consumer reads, and runs, one
after the other, `feedgen ingest --once` and `bench/ingest/baseline.py` (and with `--backfill`, `feedgen ingest
--once` as a first start that backfills the whole capture), each in its own process on a fresh store. CPU time
and peak RSS come from the kernel's accounting of each process (`wait4`). It checks that feedgen's store holds
what the capture's truth says, and prints a markdown table.

With `--before DIR` it first runs `feedgen ingest --once` from the feedgen source tree in DIR (say, `git archive` of
the commit before a change), so a change's cost is measured in the same run, on the same relay.

Usage: `python -m bench.ingest.run [--frames 200000] [--backfill] [--before DIR]`
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.ingest.synth import truth_path, write_synthetic
from bench.measure import MB, Usage, load_averages, markdown_table, resident, written_bytes
from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import decode_frame, event_time_ms
from feedgen.ingest.records import FOLLOW, LIKE, POST, REPOST
from feedgen.ingest.relay import CaptureRelay

OUT = Path(__file__).resolve().parents[1] / 'out'
ROOT = Path(__file__).resolve().parents[2]
KINDS = {'posts': POST, 'likes': LIKE, 'reposts': REPOST, 'follows': FOLLOW}


@dataclass(frozen=True)
class Run:
    """One consumer's pass over the capture."""

    name: str
    frames: int
    seconds: float
    """From the consumer's start of consuming to its last write (its own clock)."""
    usage: Usage
    """CPU and peak RSS of the whole process, over its whole life."""
    indexed: dict[str, int]
    """Create and delete ops indexed, by kind (`posts`, `likes`, ..., `deletes`)."""

    def cells(self, commits: int) -> list[object]:
        rate = self.frames / self.seconds
        per_second = [round(self.indexed[kind] / self.seconds) if kind in self.indexed else '—' for kind in
                      (*KINDS, 'deletes')]  # fmt: skip
        per_cpu_second = round(self.frames / self.usage.cpu_seconds)
        return [self.name, self.frames, round(self.seconds, 2), round(rate), round(commits / self.seconds),
                *per_second, round(self.usage.cpu_percent), per_cpu_second, round(self.usage.peak_rss_mb)]  # fmt: skip


HEADERS = ['pipeline', 'frames', 'seconds', 'frames/s', 'commits/s', 'posts/s', 'likes/s', 'reposts/s', 'follows/s',
           'deletes/s', 'CPU %', 'frames per CPU-s', 'peak RSS MB']  # fmt: skip


def ensure_capture(frames: int, accounts: int, seed: int = 1) -> tuple[Path, dict]:
    """The cached synthetic capture of `frames` frames and its truth, made first when missing."""
    path = OUT / f'ingest-{frames}-{accounts}-{seed}.atfh'
    if not path.exists() or not truth_path(path).exists():
        OUT.mkdir(parents=True, exist_ok=True)
        write_synthetic(path, frames, accounts, seed)
    return path, json.loads(truth_path(path).read_text())


def run_measured(
    command: Sequence[str], env: dict[str, str], log: Path, ready: Callable[[], bool] | None = None
) -> tuple[str, Usage]:
    """Runs `command` to completion; returns its stdout, its CPU time (the kernel's account of waited children), peak
    RSS (the kernel's high-water mark `VmHWM`, read every 50 ms: `ru_maxrss` would count this parent's memory,
    inherited for a moment between fork and exec), the peaks of its private memory and of the store pages it maps
    (`bench.measure.resident`, sampled as often) and bytes written to disk (`/proc/<pid>/io`).

    With `ready` (asked every 50 ms until it first holds), the wall time, CPU time and disk writes are those from that
    moment to the exit: what the process did before it was ready (say, its jobs' first runs) is left out; the memory
    peaks stay those of its whole life."""
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak = written = written_before = 0
    cpu_before = 0.0
    private = mapped = 0.0
    with open(log, 'w') as stderr, tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, env=os.environ | env, stdout=output, stderr=stderr, cwd=ROOT)
        while True:  # the exited process stays unreaped until read: its last writes are counted too
            exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            written = max(written, written_bytes(process.pid) or 0)
            if exited:
                break
            if ready is not None and ready():
                ready = None
                started, written_before = time.monotonic(), written
                cpu_before = sum(psutil.Process(process.pid).cpu_times()[:2])
            peak = max(peak, high_water_kb(process.pid))
            if (memory := resident(process.pid)) is not None:
                private, mapped = max(private, memory.private_mb), max(mapped, memory.mapped_mb)
            time.sleep(0.05)
        process.wait()
        output.seek(0)
        stdout = output.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f'{command[0]} exited with {process.returncode}; see {log}')
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime - cpu_before
    return stdout, Usage(wall, cpu, peak / 1024, written - written_before, private, mapped)


def high_water_kb(pid: int) -> int:
    """The peak resident memory of process `pid` so far, in KiB (0 once it has exited)."""
    try:
        with open(f'/proc/{pid}/status') as status:
            return next((int(line.split()[1]) for line in status if line.startswith('VmHWM:')), 0)
    except OSError:
        return 0


def created(truth: dict, collection: str) -> int:
    return truth['op_counts'].get(f'create {collection}', 0)


def deleted(truth: dict) -> int:
    return sum(truth['op_counts'].get(f'delete {collection}', 0) for collection in KINDS.values())


def backfill_hours(frames: Sequence[bytes]) -> float:
    """Hours from the capture's first event to now, and one more: a backfill asked for them ingests every event."""
    first = event_time_ms(decode_frame(frames[0])) or 0
    return (time.time() - first / 1000) / 3600 + 1


def run_feedgen(
    relay: CaptureRelay, truth: dict, batch_size: int | None, backfill: float = 0, source: Path | None = None
) -> Run:
    """`feedgen ingest --once` on a fresh store: live ingest from the relay's start, or with `backfill` hours a
    first-start backfill (`cursor=0`, the horizon before the capture's first event, so nothing is skipped); with
    `source`, the feedgen of that source tree (`python -m feedgen` on its path) instead of this one."""
    database = OUT / 'ingest-feedgen.db'
    for suffix in ('', '-wal', '-shm'):
        Path(f'{database}{suffix}').unlink(missing_ok=True)
    feedgen = shutil.which('feedgen', path=str(Path(sys.executable).parent)) or 'feedgen'
    env = {'FEEDGEN_DATABASE': str(database), 'FEEDGEN_FIREHOSE': relay.url, 'FEEDGEN_BACKFILL_HOURS': str(backfill)}
    if backfill:
        env['FEEDGEN_RETENTION_HOURS'] = str(backfill)
    if batch_size:
        env['FEEDGEN_BATCH_SIZE'] = str(batch_size)
    command = [feedgen, 'ingest', '--once']
    if source is not None:
        env['PYTHONPATH'] = str(source)
        command = [sys.executable, '-m', 'feedgen', 'ingest', '--once']
    stdout, usage = run_measured(command, env, OUT / 'ingest-feedgen.log')
    summary = json.loads(stdout.strip().splitlines()[-1])
    check_store(database, truth)
    if backfill:
        check_backfilled(database)
    indexed = {kind: created(truth, collection) for kind, collection in KINDS.items()} | {'deletes': deleted(truth)}
    name = 'feedgen backfill' if backfill else 'feedgen' if source is None else f'feedgen of {source.name}'
    return Run(name, summary['frames'], summary['seconds'], usage, indexed)


def check_backfilled(database: Path) -> None:
    """Raises unless the store's backfill ran to its end."""
    with sqlite3.connect(database) as conn:
        row = conn.execute('SELECT finished_at FROM backfill_state').fetchone()
    if row is None or row[0] is None:
        raise AssertionError('feedgen did not backfill, or its backfill did not finish')


def check_store(database: Path, truth: dict) -> None:
    """Raises when feedgen's store does not hold exactly the capture's live posts with their like counts."""
    with sqlite3.connect(database) as conn:
        stored = dict(conn.execute('SELECT uri, like_count FROM post WHERE NOT hidden').fetchall())
    expected = {uri: post['likes'] for uri, post in truth['posts'].items()}
    if stored != expected:
        missing, extra = len(expected.keys() - stored.keys()), len(stored.keys() - expected.keys())
        raise AssertionError(f'feedgen store differs from the truth: {missing} posts missing, {extra} extra')


def run_baseline(relay: CaptureRelay, truth: dict) -> Run:
    database = OUT / 'ingest-baseline.db'
    database.unlink(missing_ok=True)
    command = [sys.executable, '-m', 'bench.ingest.baseline', '--firehose', relay.url, '--database', str(database),
               '--last-seq', str(truth['seq']['last'])]  # fmt: skip
    stdout, usage = run_measured(command, {'PYTHONPATH': str(ROOT)}, OUT / 'ingest-baseline.log')
    stats = json.loads(stdout.strip().splitlines()[-1])
    return Run('template baseline', stats['frames'], stats['seconds'], usage, {'posts': stats['posts']})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=200_000)
    parser.add_argument('--accounts', type=int, default=20_000)
    parser.add_argument('--batch-size', type=int, default=None, help='FEEDGEN_BATCH_SIZE (default: the setting).')
    parser.add_argument('--skip-baseline', action='store_true')
    parser.add_argument(
        '--backfill', action='store_true', help="Also measure a first start's backfill (FEEDGEN_BACKFILL_HOURS)."
    )
    parser.add_argument('--before', type=Path, help='Also run the feedgen of this source tree first (same relay).')
    args = parser.parse_args(argv)
    capture, truth = ensure_capture(args.frames, args.accounts)
    frames = list(read_capture(capture))
    commits = truth['frame_counts'].get('#commit', 0)
    print(f'\n### Ingest: {len(frames):,} synthetic frames ({capture.stat().st_size / MB:,.0f} MB) over loopback\n')
    print(f'Load averages before: {load_averages()}\n')
    with CaptureRelay(frames) as relay:
        before = [run_feedgen(relay, truth, args.batch_size, source=args.before)] if args.before else []
        runs = [run_feedgen(relay, truth, args.batch_size), *before]
        if args.backfill:
            runs.append(run_feedgen(relay, truth, args.batch_size, backfill_hours(frames)))
        if not args.skip_baseline:
            runs.append(run_baseline(relay, truth))
    print(markdown_table(HEADERS, [run.cells(commits) for run in runs]))
    if not args.skip_baseline:
        ratio = (runs[0].frames / runs[0].seconds) / (runs[-1].frames / runs[-1].seconds)
        print(f'\nfeedgen / baseline: {ratio:.1f}x the frames per second.')
    print("feedgen's store matches the capture's truth (live posts and their like counts).")
    print(f'Load averages after: {load_averages()}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
