"""serve.workers: gunicorn workers share out keep-alive connections that arrive at once, instead of one taking all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
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
import feedgen.serve.workers

feedgen.serve.workers.SLOW_SECONDS = 0.25  # well apart from quick requests on a loaded machine, and from 0.5 s


def post_worker_init(worker):
    worker.log.info('Worker %s {ACCEPTING}', worker.pid)
"""
"""A gunicorn config that logs when a worker has loaded the app and enters its accept loop ("Booting worker" is
logged before it imports the app, which took 0.2-0.3 s on a loaded machine)."""


def app(environ: dict, start_response: object) -> list[bytes]:
    """Answers with the pid and the thread that serve the request, and the size of its body; `sleep=1` in the query
    makes it take 0.5 s."""
    if 'sleep=1' in environ['QUERY_STRING']:
        time.sleep(0.5)
    received = len(environ['wsgi.input'].read())
    body = f'{os.getpid()} {threading.current_thread().name} {received}'.encode()
    start_response('200 OK', [('Content-Length', str(len(body))), ('Content-Type', 'text/plain')])  # type: ignore[operator]
    return [body]


@contextmanager
def gunicorn(port: int, worker_class: str, log: Path, workers: int = WORKERS) -> Iterator[None]:
    config = log.with_name('gunicorn.conf.py')
    config.write_text(HOOKS)
    command = [
        sys.executable, '-m', 'gunicorn', '--config', str(config), '--bind', f'127.0.0.1:{port}',
        '--workers', str(workers), '--threads', str(THREADS), '--worker-class', worker_class, 'tests.test_workers:app',
    ]  # fmt: skip
    with log.open('w') as output:
        process = subprocess.Popen(command, env=CLEAN_ENV, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (text := log.read_text()).count(ACCEPTING) < workers:
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
            connection.sendall(get('/'))
        return Counter(answer(connection)[0] for connection in connections)


def test_connections_opened_at_once_are_shared_by_the_workers(tmp_path: Path) -> None:
    port = free_port()
    with gunicorn(port, 'feedgen.serve.workers.FairThreadWorker', tmp_path / 'gunicorn.log'):
        for _ in range(3):
            shares = serving_workers(port)
            assert len(shares) == WORKERS, shares
            assert min(shares.values()) >= CONNECTIONS // 4, shares


def answer(connection: socket.socket) -> list[str]:
    """Reads one response from a keep-alive connection: its body's words (pid, serving thread, body size received)."""
    connection.settimeout(10)
    response = b''
    while b'\r\n\r\n' not in response:
        response += connection.recv(4096)
    head, body = response.split(b'\r\n\r\n', 1)
    length = int(
        next(line.split(b':')[1] for line in head.split(b'\r\n') if line.lower().startswith(b'content-length'))
    )
    while len(body) < length:
        body += connection.recv(4096)
    return body.decode().split()


def get(path: str) -> bytes:
    return f'GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n'.encode()


@contextmanager
def one_worker(tmp_path: Path, connections: int) -> Iterator[list[socket.socket]]:
    """One `FairThreadWorker` (2 threads, routes slow beyond 0.25 s) and `connections` keep-alive connections to it."""
    port = free_port()
    with (
        gunicorn(port, 'feedgen.serve.workers.FairThreadWorker', tmp_path / 'gunicorn.log', workers=1),
        ExitStack() as stack,
    ):
        yield [stack.enter_context(socket.create_connection(('127.0.0.1', port))) for _ in range(connections)]


def test_a_whole_request_is_served_by_the_loop_and_part_of_one_waits_in_a_thread_without_holding_it_up(
    tmp_path: Path,
) -> None:
    with one_worker(tmp_path, 2) as (whole, partial):
        whole.sendall(get('/'))
        assert answer(whole)[1] == 'MainThread'
        partial.sendall(b'GET / HTTP/1.1\r\nHost: loc')
        time.sleep(0.2)  # the partial request is on its way; the loop must go on serving the other connection
        whole.sendall(get('/again'))
        assert answer(whole)[1] == 'MainThread'
        partial.sendall(b'alhost\r\n\r\n')
        assert answer(partial)[1] != 'MainThread'


def test_a_post_is_served_by_the_loop_once_its_whole_body_has_arrived(tmp_path: Path) -> None:
    with one_worker(tmp_path, 2) as (posting, other):
        head = b'POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n'
        posting.sendall(head + b'0123456789')
        assert answer(posting)[1:] == ['MainThread', '10']
        posting.sendall(head + b'01234')
        time.sleep(0.2)
        other.sendall(get('/'))  # once the loop has answered it, it has seen the body's first half too
        assert answer(other)[1] == 'MainThread'
        posting.sendall(b'56789')
        served_by, received = answer(posting)[1:]
        assert (served_by != 'MainThread', received) == (True, '10')


def test_a_slow_route_is_served_by_the_threads_until_one_of_its_requests_is_quick(tmp_path: Path) -> None:
    with one_worker(tmp_path, 1) as (connection,):
        served_by = []
        for path in [
            '/xrpc/page?feed=slow&sleep=1',  # served by the loop: nothing is known of the route yet; 0.5 s
            '/xrpc/page?feed=slow&cursor=a',  # the route is slow now: a thread; quick, so it is not slow any more
            '/xrpc/page?feed=slow&cursor=b',  # the loop again
            '/xrpc/page?feed=slow&sleep=1',  # the loop; slow again
            '/xrpc/page?feed=other',  # another feed is another route: the loop
        ]:
            connection.sendall(get(path))
            served_by.append(answer(connection)[1] == 'MainThread')
        assert served_by == [True, False, True, True, True]
