"""serve.server: the HTTP server shares connections over its workers, keeps fast requests moving past slow ones,
and stops cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.processes import CLEAN_ENV, FeedgenProcess, free_port

PROBE = textwrap.dedent(
    """
    import os, sys, time
    from flask import Flask
    from feedgen.serve.server import serve_forever
    from feedgen.settings import Settings

    def probe() -> Flask:
        app = Flask('probe')

        @app.get('/pid')
        def pid() -> str:
            return str(os.getpid())

        @app.get('/slow')
        def slow() -> str:
            time.sleep(float(os.environ['PROBE_SLOW_SECONDS']))
            return 'slow'

        return app

    settings = Settings.from_env(env_file=None)
    serve_forever(settings, '127.0.0.1', int(sys.argv[1]), 2, app_factory=probe)
    """
)


@contextmanager
def probe_server(tmp_path: Path, slow_seconds: float = 0.0) -> Iterator[str]:
    """Two workers serving a probe app that says which worker answered (`/pid`) or sleeps (`/slow`)."""
    port = free_port()
    env = CLEAN_ENV | {
        'FEEDGEN_DATABASE': str(tmp_path / 'f.db'),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'PROBE_SLOW_SECONDS': str(slow_seconds),
    }
    with open(tmp_path / 'probe.log', 'wb') as log:
        process = subprocess.Popen(
            [sys.executable, '-c', PROBE, str(port)], env=env, stdout=log, stderr=log, start_new_session=True
        )
    base = f'http://127.0.0.1:{port}'
    try:
        _wait_until_both_workers_answer(base, process, tmp_path / 'probe.log')
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _wait_until_both_workers_answer(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    seen: set[str] = set()
    while len(seen) < 2:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f'both workers did not answer: {seen}\n{log.read_text()}'
        try:
            seen.add(httpx.get(base + '/pid', timeout=2).text)  # a new connection each time
        except httpx.TransportError:
            time.sleep(0.1)


@pytest.mark.timeout(120)
def test_connections_are_served_by_every_worker(tmp_path: Path) -> None:
    with probe_server(tmp_path) as base:
        clients = [httpx.Client(base_url=base, timeout=10) for _ in range(16)]
        try:
            answered_by = [{client.get('/pid').text for _ in range(20)} for client in clients]
        finally:
            for client in clients:
                client.close()
    assert all(len(pids) == 1 for pids in answered_by)  # a keep-alive connection stays with one worker
    assert len(set.union(*answered_by)) == 2  # and the connections are spread over both


@pytest.mark.timeout(120)
def test_a_worker_that_dies_is_replaced_and_the_other_serves_meanwhile(tmp_path: Path) -> None:
    with probe_server(tmp_path) as base:
        victim = int(httpx.get(base + '/pid', timeout=10).text)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        answered: set[int] = set()
        while len(answered - {victim}) < 2:  # both workers answer again, one of them new
            assert time.monotonic() < deadline, f'no replacement worker: {answered}'
            try:
                answered.add(int(httpx.get(base + '/pid', timeout=10).text))
            except httpx.TransportError:
                time.sleep(0.1)
        assert victim not in answered


@pytest.mark.timeout(120)
def test_slow_requests_do_not_hold_up_quick_ones(tmp_path: Path) -> None:
    with probe_server(tmp_path, slow_seconds=5) as base, ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(httpx.get, base + '/slow', timeout=30) for _ in range(2)]
        quick = [httpx.get(base + '/pid', timeout=30).status_code for _ in range(20)]
        assert quick == [200] * 20
        assert not any(request.done() for request in slow)  # every quick request was answered while they waited
        assert [request.result().text for request in slow] == ['slow', 'slow']


@pytest.mark.timeout(120)
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_feedgen_serve_stops_cleanly_on_a_signal(tmp_path: Path, signum: int) -> None:
    port = free_port()
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'f.db'), 'FEEDGEN_HOSTNAME': f'localhost:{port}'}
    serve = FeedgenProcess(['serve', '--port', str(port), '--workers', '2'], env, tmp_path).start()
    try:
        serve.wait_http(f'http://127.0.0.1:{port}/xrpc/_health')
        os.kill(serve.pid, signum)  # to the command alone, as a terminal's Ctrl-C or a supervisor's stop
        assert serve.process is not None
        assert serve.process.wait(timeout=30) == 0
    finally:
        serve.kill()
    with pytest.raises(ProcessLookupError):
        os.killpg(serve.pid, 0)  # no worker outlived it
    assert 'Traceback' not in serve.log()
    assert 'ERROR' not in serve.log()
    assert 'refused to gracefully stop' not in serve.log()
