"""feedgen.workers: gunicorn workers share out keep-alive connections that arrive at once, instead of one taking all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from tests.processes import CLEAN_ENV, free_port

WORKERS = 2
THREADS = 2
CONNECTIONS = 16
ACCEPTING = 'accepts connections'
HOOKS = f"""
def post_worker_init(worker):
    worker.log.info('Worker %s {ACCEPTING}', worker.pid)
"""
"""A gunicorn config that logs when a worker has loaded the app and enters its accept loop ("Booting worker" is
logged before it imports the app, which took 0.2-0.3 s on a loaded machine)."""


def app(environ: dict, start_response: object) -> list[bytes]:
    """Answers every request with the pid of the worker that serves it."""
    body = str(os.getpid()).encode()
    start_response('200 OK', [('Content-Length', str(len(body))), ('Content-Type', 'text/plain')])  # type: ignore[operator]
    return [body]


@contextmanager
def gunicorn(port: int, worker_class: str, log: Path) -> Iterator[None]:
    config = log.with_name('gunicorn.conf.py')
    config.write_text(HOOKS)
    command = [
        sys.executable, '-m', 'gunicorn', '--config', str(config), '--bind', f'127.0.0.1:{port}',
        '--workers', str(WORKERS), '--threads', str(THREADS), '--worker-class', worker_class, 'tests.test_workers:app',
    ]  # fmt: skip
    with log.open('w') as output:
        process = subprocess.Popen(command, env=CLEAN_ENV, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (text := log.read_text()).count(ACCEPTING) < WORKERS:
            assert process.poll() is None and time.monotonic() < deadline, text
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


def serving_workers(port: int) -> Counter[str]:
    """Opens `CONNECTIONS` keep-alive connections at once, asks once on each: how many each worker answered."""
    with ExitStack() as stack:
        connections = [stack.enter_context(socket.create_connection(('127.0.0.1', port))) for _ in range(CONNECTIONS)]
        for connection in connections:
            connection.sendall(b'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')
        answers = []
        for connection in connections:
            connection.settimeout(10)
            response = b''
            while b'\r\n\r\n' not in response or not response.split(b'\r\n\r\n', 1)[1]:
                response += connection.recv(4096)
            answers.append(response.split(b'\r\n\r\n', 1)[1].decode())
    return Counter(answers)


def test_connections_opened_at_once_are_shared_by_the_workers(tmp_path: Path) -> None:
    port = free_port()
    with gunicorn(port, 'feedgen.workers.FairThreadWorker', tmp_path / 'gunicorn.log'):
        for _ in range(3):
            shares = serving_workers(port)
            assert len(shares) == WORKERS, shares
            assert min(shares.values()) >= CONNECTIONS // 4, shares
