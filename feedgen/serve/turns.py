"""Turns: the requests of one serving process run one at a time, first come first served; a request that waits on
something outside the process gives its turn to the next.

Owns `Turns`. Requests running at once in one process share the interpreter lock and stretch each other's latency,
so `create_app` runs each request in a turn; the process's other threads only queue for theirs. A request that waits
(a new reader's follows, read from their PDS: `feedgen.serve.reader_graph`) steps `away` meanwhile, so the process
keeps answering, and queues again after. Why: docs/design.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Turns:
    """A first-come first-served turn to run, shared by the threads of one serving process."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._issued = 0
        self._serving = 0

    def _take(self) -> None:
        with self._changed:
            ticket = self._issued
            self._issued += 1
            while self._serving != ticket:
                self._changed.wait()

    def _give(self) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()

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
