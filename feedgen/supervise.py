"""Supervise: the main job's ingest process, started, kept alive and stopped by the serving process.

Owns the ingest child's life. `supervise_ingest` (a thread of `feedgen run`) starts `python -m feedgen.supervise`,
hands it the settings pickled on its stdin, restarts it with backoff when it crashes, and stops it (SIGTERM, then
SIGKILL after `STOP_SECONDS`) when the main job stops. A child stopped by a signal is not restarted: a signal
sent to the whole process group (Ctrl-C, `systemctl stop`) stops the main job too, and a signal sent to the child
alone stops the main job after `STOP_SECONDS`, as if it had been sent to the main process. The child installs its
signal handlers before its heavy imports, and stops by itself when the process that started it is gone.

It is a subprocess, not a `multiprocessing` child, so that its handlers are in place before it imports anything
heavy: a spawned `multiprocessing` child imports its target's module (the command line, the SDK: a second or
more) before the target runs, and a Ctrl-C in that time would end it with a KeyboardInterrupt traceback.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedgen.settings import Settings

log = logging.getLogger('feedgen.supervise')  # also when run as __main__

STOP_SECONDS = 10.0
"""How long a stopping child may take to finish its batch before it is killed, and how long a child stopped by a
signal waits for the main job to stop by itself before the supervisor stops it."""
_POLL_SECONDS = 0.5
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_STOPPED_STATUSES = frozenset({0, *(-signum for signum in _STOP_SIGNALS)})


def supervise_ingest(settings: Settings, stopping: threading.Event, stop_main: Callable[[], None]) -> None:
    """Keeps one ingest process alive until `stopping` is set, then stops it; run it in a thread.

    Args:
        settings: The main job's settings, handed to the child.
        stopping: Set when the main job stops.
        stop_main: Called when the child was stopped by a signal and the main job did not stop with it.
    """
    from feedgen.ingest.firehose import Backoff  # not at the top: the child imports this module before its handlers

    backoff = Backoff(base=1.0, cap=60.0)
    while not stopping.is_set():
        child = _Child(settings)
        while child.process.poll() is None and not stopping.wait(_POLL_SECONDS):
            pass
        if stopping.is_set():
            child.stop()
            return
        if child.stopped_on_request():
            if not stopping.wait(STOP_SECONDS):
                log.info('ingest process %d was stopped by a signal; stopping the main job', child.process.pid)
                stop_main()
            return
        delay = backoff.next_delay()
        status = child.process.returncode
        log.error('ingest process %d exited with status %s; restarting in %.1fs', child.process.pid, status, delay)
        stopping.wait(delay)


class _Child:
    """One ingest process."""

    def __init__(self, settings: Settings) -> None:
        self.process = subprocess.Popen([sys.executable, '-m', 'feedgen.supervise'], stdin=subprocess.PIPE)
        verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
        assert self.process.stdin is not None  # stdin=PIPE
        with self.process.stdin:
            self.process.stdin.write(pickle.dumps((settings, verbose, os.getpid())))

    def stopped_on_request(self) -> bool:
        """Whether the process, now ended, stopped on a signal: it exits 0 then, or dies of the signal if it came
        before its handler was set."""
        return self.process.returncode in _STOPPED_STATUSES

    def stop(self) -> None:
        """Stops the process: SIGTERM, then SIGKILL after `STOP_SECONDS`."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning('ingest process %d did not stop within %.0fs; killing it', self.process.pid, STOP_SECONDS)
            self.process.kill()
            self.process.wait()


def _watch_parent(parent: int, stop: threading.Event) -> None:
    """Sets `stop` when the process `parent` is gone (this process was handed to another parent)."""
    while not stop.wait(_POLL_SECONDS * 2):
        if os.getppid() != parent:
            log.warning('the main process %d is gone; stopping ingest', parent)
            stop.set()


def _child_main() -> None:
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        received.append(signum)
        stop.set()

    for signum in _STOP_SIGNALS:
        signal.signal(signum, on_signal)
    settings, verbose, parent = pickle.load(sys.stdin.buffer)  # from our own parent, through a pipe
    # Imported once the handlers are in place: a Ctrl-C during these imports stops the child quietly.
    from feedgen.cli import ingest_forever
    from feedgen.logs import setup_logging

    setup_logging(verbose, settings.log_format)
    threading.Thread(target=_watch_parent, args=(parent, stop), name='watch-parent', daemon=True).start()
    if not stop.is_set():
        ingest_forever(settings, stop=stop)
    if received:
        log.info('ingest stopped on signal %s', signal.Signals(received[0]).name)


if __name__ == '__main__':
    _child_main()
