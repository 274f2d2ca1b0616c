"""`feedgen run` as a real process: SIGTERM or Ctrl-C stops every process it started, quietly; a crashed ingest
process is restarted; and the INFO log has one line per job run, none of apscheduler's."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from feedgen.ingest.capture import read_capture
from feedgen.ingest.relay import CaptureRelay
from tests.conftest import CAPTURE_5
from tests.processes import FeedgenProcess, free_port, group_processes

INGEST_CHILD = 'feedgen.supervise'


@pytest.fixture(scope='module')
def relay() -> Iterator[CaptureRelay]:
    with CaptureRelay(list(read_capture(CAPTURE_5)), close_when_done=False) as running:
        yield running


def _run(tmp_path: Path, relay: CaptureRelay) -> FeedgenProcess:
    """`feedgen run` on the relay's capture, once its ingest process has indexed some of it."""
    port = free_port()
    env = {
        'FEEDGEN_FIREHOSE': relay.url,
        'FEEDGEN_DATABASE': str(tmp_path / 'feedgen.db'),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_WORKERS': '2',
        'FEEDGEN_BACKFILL_HOURS': '0',  # the relay replays the whole (old) capture to a connection without a cursor
    }
    run = FeedgenProcess(['run', '--host', '127.0.0.1', '--port', str(port)], env, tmp_path, name='run').start()
    feed = quote(f'at://did:web:localhost%3A{port}/app.bsky.feed.generator/latest', safe='')
    url = f'http://127.0.0.1:{port}/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed}'
    run.wait_http(url)
    deadline = time.monotonic() + 60
    while not httpx.get(url, timeout=10).json()['feed']:
        assert time.monotonic() < deadline, run.log()[-3000:]
        time.sleep(0.2)
    return run


def _ingest_children(run: FeedgenProcess) -> list[int]:
    return [pid for pid, command in group_processes(run.pid).items() if INGEST_CHILD in command]


def _wait_for(condition: str, check: Callable[[], bool], run: FeedgenProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f'{condition}:\n{run.log()[-3000:]}'
        time.sleep(0.1)


def _assert_stopped_cleanly(run: FeedgenProcess) -> None:
    assert run.process is not None
    assert run.process.wait(timeout=40) == 0, run.log()[-3000:]
    assert run.left_behind() == []
    assert 'Traceback' not in run.log(), run.log()[-3000:]
    assert 'restarting' not in run.log(), run.log()[-3000:]


@pytest.mark.parametrize(
    ('signum', 'group'),
    [(signal.SIGTERM, False), (signal.SIGTERM, True), (signal.SIGINT, True)],
    ids=['sigterm', 'sigterm-to-the-group', 'ctrl-c'],
)
def test_a_signal_stops_every_process_quietly(tmp_path: Path, relay: CaptureRelay, signum: int, group: bool) -> None:
    run = _run(tmp_path, relay)
    try:
        assert len(_ingest_children(run)) == 1
        assert len(group_processes(run.pid)) == 4, 'main, ingest, two server workers'
    finally:
        run.send(signum, group=group)
    _assert_stopped_cleanly(run)


def test_each_job_run_logs_one_line_with_its_outcome(tmp_path: Path, relay: CaptureRelay) -> None:
    run = _run(tmp_path, relay)
    try:
        _wait_for('a scores job ran', lambda: 'job scores hot' in run.log(), run)
    finally:
        run.send(signal.SIGTERM)
    _assert_stopped_cleanly(run)
    counts = r'posts \d+, likes \d+, reposts \d+, follows \d+, labels \d+'
    prune = rf' INFO feedgen\.jobs job prune done in [\d.]+s: {counts}$'
    assert re.search(prune, run.log(), re.M)
    assert re.search(r' INFO feedgen\.jobs job scores hot:\w+ done in [\d.]+s$', run.log(), re.M)
    assert 'apscheduler' not in run.log(), 'apscheduler says nothing at INFO'


def test_a_crashed_ingest_process_is_restarted(tmp_path: Path, relay: CaptureRelay) -> None:
    run = _run(tmp_path, relay)
    try:
        [first] = _ingest_children(run)
        os.kill(first, signal.SIGKILL)  # a crash: no handler runs
        _wait_for('a new ingest process', lambda: _ingest_children(run) not in ([], [first]), run)
        crashed = rf'ERROR feedgen\.supervise ingest process {first} exited with status -9; restarting'
        assert re.search(crashed, run.log())
    finally:
        run.send(signal.SIGTERM)
    assert run.process is not None and run.process.wait(timeout=40) == 0
    assert run.left_behind() == []


def test_a_signal_to_the_ingest_process_alone_stops_the_main_job(tmp_path: Path, relay: CaptureRelay) -> None:
    run = _run(tmp_path, relay)
    try:
        [child] = _ingest_children(run)
        os.kill(child, signal.SIGTERM)
        assert run.process is not None
        run.process.wait(timeout=60)
    finally:
        run.stop()
    _assert_stopped_cleanly(run)
    assert 'was stopped by a signal; stopping the main job' in run.log()
