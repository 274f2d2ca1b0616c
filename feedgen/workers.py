"""Workers: the gunicorn worker class `feedgen serve` runs, which shares keep-alive connections out fairly.

Owns `FairThreadWorker`, gunicorn's threaded worker (`gthread`) with one change: how many connections a worker takes.
A Bluesky AppView keeps a pool of keep-alive connections to a feed generator and sends every request down one of
them, so whichever worker accepted a connection serves it for as long as it lives. gunicorn's workers all wait on
one listening socket and the first awake takes each new connection; when a pool opens its connections at once, one
worker often takes all of them (measured with 64 connections from `wrk`: 64 and 0, about one run in three). That
worker is then bound by its one interpreter lock to one core, and throughput halves (bench/serve: 1,400 instead of
2,800 req/s at 64 connections), whatever the other worker could do.

A `FairThreadWorker` that already holds as many connections as it has threads stops accepting for `HOLD_SECONDS`
after each connection it takes, leaving the next one to a worker that holds fewer; if none takes it in that time,
it takes it itself, so a connection waits at most that long (a burst of 64 connections opened at once is
accepted within about 150 ms). With one worker it behaves exactly as `gthread`. Measured with 16 connections
opened at once, 8 times: `FairThreadWorker` split them 8/8 every time; `gthread` from 1/15 to 6/10; gunicorn's
`reuse_port` (one socket per worker, the kernel hashing connections among them) from 5/11 to 7/9, and it drops
the connections queued at a worker that restarts. The hold is the interpreter's switch interval (5 ms): a busy
worker's accepting thread may wait that long for the lock before it can take a connection.
It never touches requests or the app.
"""

from __future__ import annotations

import contextlib
import threading
import time
from socket import socket

from gunicorn.workers.gthread import ThreadWorker

HOLD_SECONDS = 0.005
"""How long a worker at its share of connections leaves new ones to the others."""


class FairThreadWorker(ThreadWorker):
    """gunicorn's `gthread` worker that, once it holds `threads` connections, takes new ones only when no other
    worker has taken them within `HOLD_SECONDS`."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._hold_until = 0.0
        self._limit = 0
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
        super().accept(listener)
        if self.cfg.workers > 1 and self.nr_conns >= self.cfg.threads:
            self._hold_until = time.monotonic() + HOLD_SECONDS
            # The loop waits for events with the listener set aside: wake it when the hold ends.
            timer = threading.Timer(HOLD_SECONDS, self._wake)
            timer.daemon = True
            timer.start()

    def _wake(self) -> None:
        """Ends a hold: the loop wakes and looks at the limit again (unless the worker is stopping)."""
        if self.alive:
            with contextlib.suppress(OSError, ValueError):  # the worker stopped in the meantime
                self.method_queue.defer(_nothing)


def _nothing() -> None:
    """What the wake-up at the end of a hold runs: nothing; waking the loop is the point."""
