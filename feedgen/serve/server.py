"""Server: the HTTP server `feedgen serve` and `feedgen run` answer on, granian running the Flask app.

Owns the serving processes: granian (a maintained Rust HTTP server) accepts and parses connections, keep-alive
included, and hands each request to the WSGI app on one of a worker's blocking threads; each worker process builds
its own app (and database connection) after the fork. Feeds and the store are loaded once in the parent first, so
a bad feeds config or plugin fails with one line, not once per worker. SIGTERM and SIGINT stop the workers
gracefully; their log lines follow feedgen's format (`feedgen.logs`). Why granian and not gunicorn: see
docs/design.md.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

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
        'feedgen.serve.app:create_app',  # the name granian logs; each worker loads the app with `frozen`
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
        server.serve(target_loader=frozen(app_factory or (lambda: create_app(settings))), wrap_loader=False)
