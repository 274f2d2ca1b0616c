"""App: the Flask app a Bluesky AppView calls, assembled from its parts.

Owns `create_app(settings)`: the objects every request shares (settings, feeds, the store, service auth, the
reader-graph syncs, the receipt sampler, the process's `Turns`, in `app.extensions['feedgen']`), requests run in
turns, the request limits and metrics, the
blueprints (`feed_endpoints`, `transparency`, `interactions`, `reader_data`), and the rule that every error is
answered as an XRPC JSON body. Importing this module does nothing.
"""

from __future__ import annotations

import logging

import peewee
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from feedgen.ingest.graph_sync import ReaderGraphs
from feedgen.ranking.plugins import Feed, discover_algorithms, load_feeds
from feedgen.serve import limits, metrics
from feedgen.serve.auth import AuthError, ServiceAuth, StandInAuth, did_resolver
from feedgen.serve.feed_endpoints import feed_endpoints
from feedgen.serve.interactions import interactions
from feedgen.serve.jsonio import OrjsonProvider
from feedgen.serve.reader_data import reader_endpoints
from feedgen.serve.receipts import ReceiptSampler
from feedgen.serve.transparency import transparency
from feedgen.serve.turns import Turns
from feedgen.serve.xrpc import XrpcError, xrpc_error_response
from feedgen.settings import Settings
from feedgen.store.models import SERVING_PRAGMAS, open_database

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    feeds: dict[str, Feed] | None = None,
    db: peewee.Database | None = None,
    auth: ServiceAuth | None = None,
    graphs: ReaderGraphs | None = None,
) -> Flask:
    """Builds the feed generator's WSGI app.

    Args:
        settings: configuration (service DID, publisher DID, database, feeds config).
        feeds: the feeds to serve, by record key; default: discovered plugins and `settings.feeds_config`.
        db: an open store; default: `open_database(settings.database, SERVING_PRAGMAS)`.
        auth: verifies viewers' service JWTs; default: resolving issuers at `settings.plc_url` (and reading a request
            without one as `settings.dev_viewer` when that is set).
        graphs: reads each verified reader's follows from their PDS once; default: one sharing the default `auth`'s
            DID resolver (none when `auth` is given: a test's `auth` has no resolver to share).
    """
    app = Flask('feedgen')
    app.json = OrjsonProvider(app)
    db = db or open_database(settings.database, SERVING_PRAGMAS)
    if feeds is None:
        feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    if auth is None:
        resolver = did_resolver(settings.plc_url)
        auth = ServiceAuth(settings.service_did, resolver)
        if settings.dev_viewer:
            log.warning('FEEDGEN_DEV_VIEWER: a request without a service JWT reads as %s', settings.dev_viewer)
            auth = StandInAuth(settings.service_did, resolver, settings.dev_viewer)
        graphs = graphs or ReaderGraphs(db, resolver, settings.graph_max_follows, settings.graph_retry_seconds)
    receipts, turns = ReceiptSampler(settings.receipts), Turns()
    app.extensions['feedgen'] = {
        'settings': settings, 'feeds': feeds, 'db': db, 'auth': auth, 'graphs': graphs, 'receipts': receipts,
        'turns': turns,
    }  # fmt: skip
    app.wsgi_app = turns.wrap(app.wsgi_app)  # type: ignore[method-assign,assignment]  # Flask's documented middleware hook
    limits.register(app)
    metrics.register(app)

    @app.before_request
    def connect() -> None:
        db.connect(reuse_if_open=True)

    register_error_handlers(app)
    for blueprint in (feed_endpoints, transparency, interactions, reader_endpoints):
        app.register_blueprint(blueprint)
    return app


def register_error_handlers(app: Flask) -> None:
    """Every error becomes an XRPC JSON body (`{"error", "message"}`), never an HTML page; a 500 is logged."""

    @app.errorhandler(XrpcError)
    def xrpc_error(error: XrpcError) -> tuple[Response, int]:
        return xrpc_error_response(error.status, error.error, error.message)

    @app.errorhandler(AuthError)
    def auth_error(error: AuthError) -> tuple[Response, int]:
        return xrpc_error_response(401, error.error, error.message)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        code = error.code or 500
        name = {404: 'NotFound', 405: 'MethodNotAllowed', 413: 'PayloadTooLarge', 431: 'RequestHeaderFieldsTooLarge'}
        return xrpc_error_response(code, name.get(code, 'InvalidRequest'), error.description or error.name)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> tuple[Response, int]:
        log.exception('unhandled error serving %s', request.path)
        return xrpc_error_response(500, 'InternalServerError', 'internal error; the server log has the details')
