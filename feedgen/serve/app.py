"""Server: the Flask app that answers a Bluesky AppView (XRPC feed endpoints and the DID document).

Owns HTTP: routing, parsing and validating query parameters, XRPC error bodies, and wrapping each
algorithm's cursor with its feed's record key (so a cursor from another feed is refused). It reads the
store only through algorithms; its writes are `feedgen.serve.receipts`'s (receipts, request counters) and, for
each verified reader seen the first time, the sync of their follows (`feedgen.serve.reader_graph`).
`create_app(settings)` builds an app; importing this module does nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import peewee
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from feedgen.ingest.backfill import backfill_progress
from feedgen.ingest.graph_sync import ReaderGraphs
from feedgen.ranking.algorithm import MAX_LIMIT, FeedRequest, InvalidCursor
from feedgen.ranking.feed_catalog import algorithm_stamp
from feedgen.ranking.languages import accepted_languages, reader_feed
from feedgen.ranking.plugins import Feed, discover_algorithms, load_feeds
from feedgen.serve import limits, metrics
from feedgen.serve.auth import AuthError, ServiceAuth, did_resolver
from feedgen.serve.interactions import interactions
from feedgen.serve.jsonio import OrjsonProvider
from feedgen.serve.reader_graph import note_header, noted_page, reader_seen
from feedgen.serve.receipts import ReceiptSampler, skeleton_response
from feedgen.serve.skeleton import skeleton_item
from feedgen.serve.transparency import transparency
from feedgen.serve.xrpc import XrpcError, feed_viewer, find_feed, xrpc_error_response
from feedgen.settings import Settings
from feedgen.store.models import BackfillState, IngestState, open_database

DEFAULT_LIMIT = 50
CURSOR_SEPARATOR = ':'
log = logging.getLogger(__name__)


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == '':
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise XrpcError(400, 'InvalidRequest', f'limit must be an integer from 1 to {MAX_LIMIT}') from None
    if not 1 <= limit <= MAX_LIMIT:
        raise XrpcError(400, 'InvalidRequest', f'limit must be from 1 to {MAX_LIMIT}, got {limit}')
    return limit


def unwrap_cursor(feed: Feed, cursor: str | None) -> str | None:
    """The algorithm's own cursor inside a served cursor, checking it belongs to `feed`."""
    if cursor is None or cursor == '':
        return None
    prefix = feed.rkey + CURSOR_SEPARATOR
    if not cursor.startswith(prefix):
        raise XrpcError(400, 'InvalidRequest', 'the cursor does not belong to this feed')
    return cursor[len(prefix) :]


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
        db: an open store; default: `open_database(settings.database)`.
        auth: verifies viewers' service JWTs; default: resolving issuers at `settings.plc_url`.
        graphs: reads each verified reader's follows from their PDS once; default: one sharing the default `auth`'s
            DID resolver (none when `auth` is given: a test's `auth` has no resolver to share).
    """
    app = Flask('feedgen')
    app.json = OrjsonProvider(app)
    db = db or open_database(settings.database)
    if feeds is None:
        feeds = load_feeds(discover_algorithms(settings.plugins_dir), settings.feeds_config)
    if auth is None:
        resolver = did_resolver(settings.plc_url)
        auth = ServiceAuth(settings.service_did, resolver)
        graphs = graphs or ReaderGraphs(db, resolver, settings.graph_max_follows, settings.graph_retry_seconds)
    app.extensions['feedgen'] = {'settings': settings, 'feeds': feeds, 'db': db, 'auth': auth, 'graphs': graphs}
    limits.register(app)
    metrics.register(app)
    receipts = ReceiptSampler(settings.receipts)
    request_metrics = app.extensions['feedgen_metrics']

    @app.before_request
    def connect() -> None:
        db.connect(reuse_if_open=True)

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

    @app.get('/.well-known/did.json')
    def did_document() -> Any:
        if not settings.service_did.startswith('did:web:'):
            raise XrpcError(404, 'NotFound', f'{settings.service_did} is not a did:web; its document lives in PLC')
        return jsonify(
            {
                '@context': ['https://www.w3.org/ns/did/v1'],
                'id': settings.service_did,
                'service': [
                    {'id': '#bsky_fg', 'type': 'BskyFeedGenerator', 'serviceEndpoint': settings.service_endpoint}
                ],
            }
        )

    @app.get('/xrpc/app.bsky.feed.describeFeedGenerator')
    def describe_feed_generator() -> Any:
        return jsonify(
            {
                'did': settings.service_did,
                'feeds': [
                    {'uri': feed.uri(settings.publisher_did), 'algorithm': algorithm_stamp(feed)}
                    | ({'acceptsInteractions': True} if feed.algorithm.accepts_interactions else {})
                    for feed in feeds.values()
                ],
            }
        )

    @app.get('/xrpc/app.bsky.feed.getFeedSkeleton')
    def get_feed_skeleton() -> Any:
        feed = find_feed(feeds, settings.publisher_did, request.args.get('feed'))
        viewer = feed_viewer(feed, auth, request.headers.get('Authorization'))
        feed_request = FeedRequest(
            viewer=viewer,
            limit=parse_limit(request.args.get('limit')),
            cursor=unwrap_cursor(feed, request.args.get('cursor')),
            langs=accepted_languages(request.headers.get('Accept-Language')),
        )
        personalized = feed.algorithm.personalized
        wait = settings.graph_wait_seconds if personalized and feed_request.cursor is None else 0.0
        graph = reader_seen(graphs, viewer, wait)  # a reader's first page waits a moment for their follows
        feed = reader_feed(feed, feed_request)
        try:
            page = feed.page(feed_request)
        except InvalidCursor as error:
            raise XrpcError(400, 'InvalidRequest', f'bad cursor: {error}') from None
        if personalized:
            page = noted_page(page, graph)
        body: dict[str, Any] = {'feed': [skeleton_item(item) for item in page.items]}
        if page.cursor is not None:
            body['cursor'] = feed.rkey + CURSOR_SEPARATOR + page.cursor
        keep = receipts.keep()
        request_metrics.count_receipt(feed.rkey, keep)
        response = skeleton_response(body, feed, feed_request, page, settings.publisher_did, db, keep)
        return note_header(response, graph) if personalized else response

    @app.get('/xrpc/_health')
    def health() -> Any:
        """`status` is `backfilling` while a history backfill runs (`feedgen.ingest.backfill`), `ok` otherwise."""
        states = [{'firehose': s.firehose, 'cursor': s.cursor, 'time': s.time} for s in IngestState.select()]
        backfills = {row.firehose: backfill_progress(row) for row in BackfillState.select()}
        running = any(progress['state'] == 'backfilling' for progress in backfills.values())
        body = {'status': 'backfilling' if running else 'ok', 'service': settings.service_did, 'ingest': states}
        return jsonify(body | ({'backfill': backfills} if backfills else {}))

    app.register_blueprint(transparency)
    app.register_blueprint(interactions)
    return app
