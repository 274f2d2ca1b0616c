"""Turns: the requests of one serving process run one at a time, first come first served; a request that waits on
something outside the process gives its turn to the next.

Owns `Turns`. Requests running at once in one process share the interpreter lock and stretch each other's latency,
so `create_app` runs each request in a turn; the process's other threads only queue for theirs. A request that waits
(a new reader's follows, read from their PDS: `feedgen.serve.reader_graph`) steps `away` meanwhile, so the process
keeps answering, and queues again after. Why: docs/design.md.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Turns:
    """A first-come first-served turn to run, shared by the threads of one serving process.

    The turn passes straight from the thread that gives it to the first in line, which alone is woken: waking every
    waiting thread to check whose turn it is costs a switch of the interpreter lock per waiting thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken = False
        self._line: deque[threading.Lock] = deque()

    def _take(self) -> None:
        with self._lock:
            if not self._taken:
                self._taken = True
                return
            gate = threading.Lock()
            gate.acquire()
            self._line.append(gate)
        gate.acquire()  # released by `_give`, which hands this thread the turn

    def _give(self) -> None:
        with self._lock:
            if self._line:
                self._line.popleft().release()
            else:
                self._taken = False

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Waits for this thread's turn, runs the block, then gives the turn to the next in line."""
        self._take()
        try:
            yield
        finally:
            self._give()

    @contextmanager
    def away(self) -> Iterator[None]:
        """Gives the turn this thread holds to the next in line while the block waits; queues for it again after."""
        self._give()
        try:
            yield
        finally:
            self._take()

    def wrap(self, app: Wsgi) -> Wsgi:
        """`app` run in turns (a whole request: Flask builds its response body before returning it)."""

        def in_turn(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with self.turn():
                return app(environ, start_response)

        return in_turn
