"""Feed endpoints: what a Bluesky AppView calls on a feed generator, as one blueprint.

Owns `getFeedSkeleton` (parsing and checking its parameters, the reader's bounded wait for their follows, wrapping
each algorithm's cursor with its feed's record key so a cursor from another feed is refused),
`describeFeedGenerator`, the did:web document and `_health`. It reads the store only through algorithms and the
ingest state; it writes through `feedgen.serve.receipts` and, for a verified reader seen the first time, the sync
of their follows (`feedgen.serve.reader_graph`). The app's objects come from `current_app.extensions['feedgen']`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from feedgen.ingest.backfill import backfill_progress
from feedgen.ranking.algorithm import MAX_LIMIT, FeedRequest, InvalidCursor
from feedgen.ranking.feed_catalog import algorithm_stamp
from feedgen.ranking.languages import accepted_languages, reader_feed
from feedgen.ranking.plugins import Feed
from feedgen.serve.reader_graph import note_header, noted_page, reader_seen
from feedgen.serve.receipts import skeleton_response
from feedgen.serve.skeleton import skeleton_item
from feedgen.serve.xrpc import XrpcError, feed_viewer, find_feed
from feedgen.store.models import BackfillState, IngestState

DEFAULT_LIMIT = 50
CURSOR_SEPARATOR = ':'

feed_endpoints = Blueprint('feed_endpoints', __name__)


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


@feed_endpoints.get('/.well-known/did.json')
def did_document() -> Any:
    settings = current_app.extensions['feedgen']['settings']
    if not settings.service_did.startswith('did:web:'):
        raise XrpcError(404, 'NotFound', f'{settings.service_did} is not a did:web; its document lives in PLC')
    service = {'id': '#bsky_fg', 'type': 'BskyFeedGenerator', 'serviceEndpoint': settings.service_endpoint}
    return jsonify({'@context': ['https://www.w3.org/ns/did/v1'], 'id': settings.service_did, 'service': [service]})


@feed_endpoints.get('/xrpc/app.bsky.feed.describeFeedGenerator')
def describe_feed_generator() -> Any:
    state = current_app.extensions['feedgen']
    publisher = state['settings'].publisher_did
    return jsonify(
        {
            'did': state['settings'].service_did,
            'feeds': [
                {'uri': feed.uri(publisher), 'algorithm': algorithm_stamp(feed)}
                | ({'acceptsInteractions': True} if feed.algorithm.accepts_interactions else {})
                for feed in state['feeds'].values()
            ],
        }
    )


@feed_endpoints.get('/xrpc/app.bsky.feed.getFeedSkeleton')
def get_feed_skeleton() -> Any:
    state = current_app.extensions['feedgen']
    settings = state['settings']
    feed = find_feed(state['feeds'], settings.publisher_did, request.args.get('feed'))
    viewer = feed_viewer(feed, state['auth'], request.headers.get('Authorization'))
    feed_request = FeedRequest(
        viewer=viewer,
        limit=parse_limit(request.args.get('limit')),
        cursor=unwrap_cursor(feed, request.args.get('cursor')),
        langs=accepted_languages(request.headers.get('Accept-Language')),
    )
    personalized = feed.algorithm.personalized
    wait = settings.graph_wait_seconds if personalized and feed_request.cursor is None else 0.0
    graph = reader_seen(state['graphs'], viewer, wait, state['turns'])  # a first page waits for the follows
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
    keep = state['receipts'].keep()
    current_app.extensions['feedgen_metrics'].count_receipt(feed.rkey, keep)
    response = skeleton_response(body, feed, feed_request, page, settings.publisher_did, state['db'], keep)
    return note_header(response, graph) if personalized else response


@feed_endpoints.get('/xrpc/_health')
def health() -> Any:
    """`status` is `backfilling` while a history backfill runs (`feedgen.ingest.backfill`), `ok` otherwise."""
    states = [{'firehose': s.firehose, 'cursor': s.cursor, 'time': s.time} for s in IngestState.select()]
    backfills = {row.firehose: backfill_progress(row) for row in BackfillState.select()}
    running = any(progress['state'] == 'backfilling' for progress in backfills.values())
    service = current_app.extensions['feedgen']['settings'].service_did
    body = {'status': 'backfilling' if running else 'ok', 'service': service, 'ingest': states}
    return jsonify(body | ({'backfill': backfills} if backfills else {}))
