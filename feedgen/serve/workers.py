"""Workers: the gunicorn worker class `feedgen serve` runs: it shares keep-alive connections out fairly and serves
a request that has wholly arrived without handing it to a thread.

Owns `FairThreadWorker`, gunicorn's threaded worker (`gthread`) with two changes: how many connections a worker
takes, and which thread serves a request.

**Sharing connections.** A Bluesky AppView keeps a pool of keep-alive connections to a feed generator and sends every
request down one of them, so whichever worker accepted a connection serves it for as long as it lives. gunicorn's
workers all wait on one listening socket and the first awake takes each new connection; when a pool opens its
connections at once, one worker often takes all of them (measured with 64 connections from `wrk`: 64 and 0, about
one run in three). That worker is then bound by its one interpreter lock to one core, and throughput halves
(bench/serve: 1,400 instead of 2,800 req/s at 64 connections), whatever the other worker could do. A worker that
already holds as many connections as it has threads stops accepting for `HOLD_SECONDS` after each connection it
takes, leaving the next one to a worker that holds fewer; if none takes it in that time, it takes it itself.
Measured with 16 connections opened at once, 8 times: split 8/8 every time; `gthread` from 1/15 to 6/10; gunicorn's
`reuse_port` (one socket per worker, the kernel hashing connections among them) from 5/11 to 7/9, and it drops
the connections queued at a worker that restarts. The hold is the interpreter's switch interval (5 ms): a busy
worker's loop may wait that long for the lock before it can take a connection.

**Serving on the loop.** `gthread` hands every request to a pool thread and the connection back to its loop
afterwards: two hand-offs of the interpreter lock a request, each waiting up to the 5 ms switch interval while
other threads run. Here the loop peeks at a readable connection; when the whole request is there (head, and a
`Content-Length` body), it serves it itself, with no hand-off. Measured with `bench.serve.ceiling` (one page query,
2 workers, 16 connections): 4,481 req/s, p99 12.8 ms with `gthread`'s hand-offs; 4,667 req/s, p99 7.6 ms on the loop
(gunicorn's `sync` worker, which closes every connection: 4,005 req/s, p99 5.6 ms). Part of a request (a slow
client) still goes to a thread, which waits for the rest while the loop serves the others, and so does every request
of a slow route (a path and its `feed`): one that took over `SLOW_SECONDS` sends the next ones to the threads until
one of them is quick again, so a slow feed holds up the worker's other connections once, not at every request. A
request that may wait for its reader's follows to be read (a token whose issuer this process has not seen synced,
`feedgen.serve.reader_graph.may_wait`) goes to a thread too. A
pass over the ready connections now takes as long as serving them, so while connections arrive in a burst the loop
also tries to take one after each request it serves (taking one a pass, 64 connections opened at once waited about
half a second; the ceiling's p99 at 64 connections went from 195-297 to 52-55 ms). What it costs: a client that
sends requests without reading the answers blocks the loop once its socket's buffers are full, until gunicorn's
worker timeout restarts the worker (with `gthread` it held a thread for good).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from socket import MSG_DONTWAIT, MSG_PEEK, socket
from urllib.parse import parse_qs

from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

from feedgen.serve.reader_graph import may_wait

HOLD_SECONDS = 0.005
"""How long a worker at its share of connections leaves new ones to the others."""
SLOW_SECONDS = 0.02
"""A request that took longer makes its route slow: the route's requests go to the threads until one is quicker."""
MAX_SLOW_ROUTES = 1024
"""Slow routes remembered at most (the set starts over beyond it, so made-up feed names cannot grow it)."""
_PEEK_BYTES = 65_536


class FairThreadWorker(ThreadWorker):
    """gunicorn's `gthread` worker that, once it holds `threads` connections, takes new ones only when no other
    worker has taken them within `HOLD_SECONDS`, and serves a request that has wholly arrived on its loop."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._hold_until = 0.0
        self._limit = 0
        self._slow_routes: set[str] = set()
        self._in_burst = False
        """Whether the last try to take a connection took one (then the next request served on the loop tries again)."""
        self._accepting_here = False
        super().__init__(*args, **kwargs)

    @property
    def worker_connections(self) -> int:  # type: ignore[override]
        """The configured limit, or, while holding back, the connections held now (so the loop stops accepting)."""
        if self._hold_until and time.monotonic() < self._hold_until:
            return self.nr_conns
        return self._limit

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._limit = value

    def accept(self, listener: socket) -> None:
        """Takes a waiting connection, if any; holds back afterwards once this worker has its share."""
        held = self.nr_conns
        super().accept(listener)
        self._in_burst = self.nr_conns > held
        if self._in_burst and self.cfg.workers > 1 and self.nr_conns >= self.cfg.threads:
            self._hold_until = time.monotonic() + HOLD_SECONDS
            # The loop waits for events with the listener set aside: wake it when the hold ends.
            timer = threading.Timer(HOLD_SECONDS, self._wake)
            timer.daemon = True
            timer.start()

    def enqueue_req(self, conn: TConn) -> None:
        """Serves a request that has wholly arrived on the loop's own thread, unless its route is slow; parks a new
        connection that has sent nothing yet in the poller; leaves the rest (part of a request) to the threads."""
        request = None if self.cfg.is_ssl else _whole_request(conn.sock)
        if request is None and not conn.initialized and not conn.data_ready:
            self.finish_request(conn, _outcome(lambda: _DEFER))  # gthread's own parking, as after its 5 s wait
            return
        conn.route = None if request is None else _route(request)
        conn.data_ready = conn.data_ready or request is not None
        if request is None or conn.route in self._slow_routes or self._may_wait(request):
            super().enqueue_req(conn)
        else:
            self.finish_request(conn, _outcome(lambda: self.handle(conn)))
            self._accept_between_requests()

    def _may_wait(self, head: bytes) -> bool:
        """Whether the request may wait for its reader's follows to be read (`feedgen.serve.reader_graph`)."""
        extensions = getattr(self.wsgi, 'extensions', {})
        graphs = extensions.get('feedgen', {}).get('graphs')
        return graphs is not None and may_wait(graphs, _header(head, b'authorization'))

    def _accept_between_requests(self) -> None:
        """While connections arrive in a burst, tries to take one after each request served on the loop: a pass
        over the ready connections is long enough that taking one a pass left a burst of 64 waiting half a second."""
        if self._in_burst and not self._accepting_here and self.alive and self.nr_conns < self.worker_connections:
            self._accepting_here = True  # a connection taken here may be served at once: no deeper than that
            try:
                for listener in self.sockets:
                    self.accept(listener)
            finally:
                self._accepting_here = False

    def handle(self, conn: TConn) -> object:
        """gthread's `handle`, timed: a request slower than `SLOW_SECONDS` makes its route slow, a quicker one not."""
        started = time.perf_counter()
        try:
            return super().handle(conn)
        finally:
            route = getattr(conn, 'route', None)
            if route is not None:
                if time.perf_counter() - started <= SLOW_SECONDS:
                    self._slow_routes.discard(route)
                elif len(self._slow_routes) < MAX_SLOW_ROUTES:
                    self._slow_routes.add(route)
                else:
                    self._slow_routes = {route}

    def _wake(self) -> None:
        """Ends a hold: the loop wakes and looks at the limit again (unless the worker is stopping)."""
        if self.alive:
            with contextlib.suppress(OSError, ValueError):  # the worker stopped in the meantime
                self.method_queue.defer(_nothing)


def _nothing() -> None:
    """What the wake-up at the end of a hold runs: nothing; waking the loop is the point."""


def _outcome(call: Callable[[], object]) -> Future:
    """`call()`'s result or exception as a finished future, the form gthread's `finish_request` takes."""
    done: Future = Future()
    try:
        done.set_result(call())
    except Exception as error:
        done.set_exception(error)
    return done


def _whole_request(sock: socket) -> bytes | None:
    """The head of the request waiting on `sock` if all of it (head and `Content-Length` body) has arrived, without
    taking it from the socket; None if part of it is still on its way (or the body is chunked)."""
    try:
        data = sock.recv(_PEEK_BYTES, MSG_PEEK | MSG_DONTWAIT)
    except OSError:  # nothing to read yet (EAGAIN), or the connection is gone: the slow path finds out which
        return None
    head_end = data.find(b'\r\n\r\n')
    if head_end < 0:
        return None
    head = data[:head_end]
    body_length = 0
    for line in head.split(b'\r\n')[1:]:
        name, _, value = line.partition(b':')
        name = name.strip().lower()
        if name == b'transfer-encoding':
            return None
        if name == b'content-length':
            if not value.strip().isdigit():
                return None
            body_length = int(value)
    return head if len(data) >= head_end + 4 + body_length else None


def _header(head: bytes, name: bytes) -> str | None:
    """The value of the header `name` (lower case) in a request head, or None."""
    for line in head.split(b'\r\n')[1:]:
        key, _, value = line.partition(b':')
        if key.strip().lower() == name:
            return value.strip().decode('latin-1')
    return None


def _route(head: bytes) -> str:
    """What requests of the same kind share: the path and any `feed` parameter (a feed's pages cost alike)."""
    target = head.split(b'\r\n', 1)[0].split(b' ')[1:2]
    path, _, query = (target[0] if target else b'').decode('latin-1').partition('?')
    return ' '.join([path, *parse_qs(query).get('feed', [])])
