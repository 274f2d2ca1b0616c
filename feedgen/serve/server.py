"""Server: the HTTP server `feedgen serve` and `feedgen run` answer on, granian running the Flask app.

Owns the serving processes: granian (a maintained Rust HTTP server) accepts and parses connections, keep-alive
included, and hands each request to the WSGI app on one of a worker's blocking threads; each worker process builds
its own app (and database connection) after the fork. Feeds and the store are loaded once in the parent first, so
a bad feeds config or plugin fails with one line, not once per worker. SIGTERM and SIGINT stop the workers
gracefully (in each worker a thread of its own takes them: `take_stop_signals`); their log lines follow feedgen's
format (`feedgen.logs`). Why granian and not gunicorn: see docs/design.md.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from granian import Granian
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings

from feedgen.ingest.plugin_indexers import table_specs
from feedgen.ranking.plugins import discover_algorithms, feed_indexers, load_feeds
from feedgen.serve.app import create_app
from feedgen.serve.limits import MAX_BODY_BYTES
from feedgen.serve.metrics import multiprocess_directory
from feedgen.settings import Settings
from feedgen.store.models import open_database
from feedgen.store.plugin_tables import prepare_plugin_tables

HEADER_READ_SECONDS = 10
"""A connection that has not sent a whole request head in this long is closed (a slow-loris client)."""
MAX_REQUEST_BUFFER_BYTES = 65_536
"""What granian buffers of one request's head; a larger head is refused before the app (which refuses past
`feedgen.serve.limits`' own, smaller limits with an XRPC error)."""
STOP_SECONDS = 5
"""How long a worker may take to finish its requests after SIGTERM before it is killed."""
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
"""What stops a worker (`take_stop_signals`)."""
LOG_CONFIG = {'loggers': {'_granian': {'handlers': [], 'propagate': True}}}
"""Granian's own lines (workers starting, stopping) go to the root logger, in feedgen's format."""


def frozen(factory: Callable[[], Flask]) -> Callable[[], Flask]:
    """A loader that builds the app with `factory`, then freezes everything loaded so far out of the cyclic collector.

    The app, its plugins and the modules they import live as long as the worker: frozen, full collections stop
    rescanning them between requests (see docs/design.md).
    """

    def load() -> Flask:
        app = factory()
        gc.freeze()
        return app

    return load


def worker_loader(factory: Callable[[], Flask]) -> Callable[[], Flask]:
    """What a granian worker runs first: `take_stop_signals`, then the `frozen` loader of `factory`."""
    load = frozen(factory)

    def load_in_worker() -> Flask:
        take_stop_signals()
        return load()

    return load_in_worker


def take_stop_signals() -> None:
    """Blocks SIGINT and SIGTERM in every thread of this process from now on, and runs their handler on a thread that
    waits for them; call it in a serving worker's main thread before any other thread starts (threads inherit the
    blocked set, and so would a process it started: a worker starts none).

    The kernel hands a signal sent to a process to any of its threads that does not block it, and Python runs a
    handler only in the main thread, when that thread runs Python code again. A granian worker's main thread waits on
    a lock until its stop handler runs; when a signal landed on one of the server's other threads, nothing woke the
    main thread and the worker was killed after `STOP_SECONDS` instead ("refused to gracefully stop", 2 of 6 stops
    of `feedgen demo`). Blocked everywhere, the signals wait for `sigwait` here, which calls the handler installed by
    then (granian's), or ends the process where the handler is the default one."""
    inherited = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_run_stop_handlers, args=(inherited,), name='feedgen-stop-signals', daemon=True).start()


def _run_stop_handlers(inherited: dict[int, Any]) -> None:
    """Runs the handler of each stop signal that arrives. A signal that arrives while the worker still loads (the
    server stopping right after it started) waits, up to `STOP_SECONDS`, for the worker's own handler to replace the
    one the process inherited."""
    while True:
        signum = signal.sigwait(STOP_SIGNALS)
        deadline = time.monotonic() + STOP_SECONDS
        while signal.getsignal(signum) is inherited[signum] and time.monotonic() < deadline:
            time.sleep(0.01)
        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, None)
        elif handler != signal.SIG_IGN:
            os._exit(128 + signum)  # the default action: the process ends


def serve_forever(
    settings: Settings, host: str, port: int, workers: int, app_factory: Callable[[], Flask] | None = None
) -> None:
    """Serves `create_app(settings)` (or `app_factory()`, built in each worker) until SIGTERM or SIGINT.

    Raises:
        SettingsError: `settings.dev_viewer` is set and `host` is not a loopback address.
    """
    settings.loopback_only(host)
    feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    db = open_database(settings.database)
    prepare_plugin_tables(db, table_specs(feed_indexers(feeds.values())))  # what the feeds read exists, or one line
    db.close()
    server = Granian(
        'feedgen.serve.app:create_app',  # the name granian logs; each worker loads the app with `worker_loader`
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=settings.threads,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(
            header_read_timeout=HEADER_READ_SECONDS * 1000, max_buffer_size=MAX_REQUEST_BUFFER_BYTES + MAX_BODY_BYTES
        ),
        log_dictconfig=LOG_CONFIG,
        workers_kill_timeout=STOP_SECONDS,
        respawn_failed_workers=True,  # a worker that dies is replaced; the others serve meanwhile
    )
    with multiprocess_directory():  # request metrics of every worker, added up at each scrape
        server.serve(target_loader=worker_loader(app_factory or (lambda: create_app(settings))), wrap_loader=False)
