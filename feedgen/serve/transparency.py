"""Transparency: the HTTP pages that say what each feed does and why a post is in it.

Owns four endpoints, as a Flask blueprint: `GET /algorithms` (every served feed with its algorithm,
parameters, plain-words ranking, source, version and live counts; HTML for people, JSON for programs),
`GET /algorithms/<rkey>/source` (the exact bundle of code and parameters the feed's version hashes),
`GET /explain?feed=&post=` (why a post has its place, from `Algorithm.explain`, for the reader a
service JWT names, verified as for skeletons; or which rule left it out, from `shared_exclusion` and
`Algorithm.why_not`), and `GET /receipts/<reqId>` (how a served page was made; a personalized page's receipt
only for its reader, with a service JWT scoped to `feedgen.serve.reader_data.READ_LXM`).
It only reads: feeds, the store's counters and receipts; errors are XRPC JSON errors.
"""

from __future__ import annotations

import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.exclusions import UNEXPLAINED, feed_exclusion, shared_exclusion
from feedgen.ranking.feed_catalog import algorithm_stamp, feed_info
from feedgen.ranking.languages import accepted_languages, add_content_language, reader_feed
from feedgen.serve.reader_data import READ_LXM
from feedgen.serve.receipts import RECEIPT_TTL_HOURS, get_receipt, request_counts
from feedgen.serve.xrpc import XrpcError, feed_viewer, find_feed, signed_in_reader
from feedgen.store.models import Post, hiding_self_labels

POSTS_COUNT_SECONDS = 30.0
"""How long a count of indexed posts is reused: counting a large table is not free."""
_POST_URI = re.compile(r'^at://did:[a-z]+:[a-zA-Z0-9._:%-]{1,2048}/app\.bsky\.feed\.post/[a-zA-Z0-9._:~-]{1,512}$')
_REQ_ID = re.compile(r'^[0-9a-f]{16}$')
REQUESTS_MEANING = 'skeleton requests answered, added up over every serving process, since the feed was first requested'

transparency = Blueprint('transparency', __name__, template_folder='templates')


def _context() -> dict[str, Any]:
    context: dict[str, Any] = current_app.extensions['feedgen']
    return context


def _posts_indexed() -> int:
    cache = _context().setdefault('posts_indexed', {'at': float('-inf'), 'count': 0})
    if time.monotonic() - cache['at'] > POSTS_COUNT_SECONDS:
        cache.update(at=time.monotonic(), count=Post.select().count())
    count: int = cache['count']
    return count


def catalog() -> dict[str, Any]:
    """The data of `/algorithms`: the service, live counts, and every served feed."""
    settings, feeds = _context()['settings'], _context()['feeds']
    counts = request_counts()
    return {
        'service': settings.service_did,
        'postsIndexed': _posts_indexed(),
        'requestsMeaning': REQUESTS_MEANING,
        'feeds': [
            feed_info(feed, settings.publisher_did) | {'requests': counts.get(rkey, {}).get('requests', 0)}
            for rkey, feed in feeds.items()
        ],
    }


def wants_json() -> bool:
    """True when the client asked for JSON: `?format=json`, or an `Accept` header preferring it to HTML.

    Raises:
        XrpcError: `format` is neither `json` nor `html`.
    """
    chosen = request.args.get('format')
    if chosen is not None:
        if chosen not in ('json', 'html'):
            raise XrpcError(400, 'InvalidRequest', f'format must be json or html, got {chosen[:20]!r}')
        return chosen == 'json'
    return request.accept_mimetypes.best_match(['text/html', 'application/json']) == 'application/json'


@transparency.get('/algorithms')
def algorithms() -> Response:
    data = catalog()
    response = jsonify(data) if wants_json() else Response(render_template('algorithms.html', **data))
    response.vary.add('Accept')
    return response


@transparency.get('/algorithms/<rkey>/source')
def source_bundle(rkey: str) -> Response:
    """The bytes whose SHA-256 starts with the feed's version: anyone can recompute it (docs/algorithms.md)."""
    feed = _context()['feeds'].get(rkey)
    if feed is None:
        raise XrpcError(404, 'UnknownFeed', 'no feed with this record key is served here; GET /algorithms lists them')
    response = Response(feed.source_bundle(), mimetype='application/json')
    response.headers['X-Feed-Version'] = feed.version
    return response


@transparency.get('/explain')
def explain() -> Response:
    settings, feeds = _context()['settings'], _context()['feeds']
    feed = find_feed(feeds, settings.publisher_did, request.args.get('feed'))
    post = request.args.get('post') or ''
    if not _POST_URI.match(post):
        raise XrpcError(400, 'InvalidRequest', 'post must be the at:// URI of an app.bsky.feed.post record')
    viewer = feed_viewer(feed, _context()['auth'], request.headers.get('Authorization'))
    feed_request = FeedRequest(limit=1, viewer=viewer, langs=accepted_languages(request.headers.get('Accept-Language')))
    feed = reader_feed(feed, feed_request)
    try:
        explanation = feed.algorithm.explain(post, feed_request)
    except NotImplementedError:
        raise XrpcError(501, 'MethodNotImplemented', f'algorithm {feed.algorithm.name} does not explain') from None
    body: dict[str, Any] = {
        'feed': feed.uri(settings.publisher_did),
        'post': post,
        'algorithm': algorithm_stamp(feed),
        'viewer': feed_request.viewer or 'anonymous',
        'inFeed': explanation is not None,
    }
    if explanation is None:
        row, exclusion = shared_exclusion(post)
        if exclusion is None and row is not None:
            exclusion = feed_exclusion(feed.algorithm, row, feed_request)
        exclusion = exclusion or UNEXPLAINED
        body['excludedBy'] = exclusion.as_dict()
        body['message'] = f'this post is not in the feed {feed.rkey}: {exclusion.message}'
        body.update(_self_labelled(post, getattr(feed.algorithm.params, 'allow_labels', ()), feed.rkey))
    else:
        body['explanation'] = explanation
    response = jsonify(body)
    add_content_language(response, feed)
    return response


def _self_labelled(post: str, allow_labels: tuple[str, ...], rkey: str) -> dict[str, Any]:
    """`selfLabels` and a `message` naming them when `post`'s own labels keep it out of the feed; else nothing."""
    labels = Post.select(Post.self_labels).where(Post.uri == post).scalar()
    hiding = hiding_self_labels(labels or '', allow_labels)
    if not hiding:
        return {}
    return {
        'selfLabels': hiding,
        'message': f'this post is not in the feed {rkey}: its author labels it {" and ".join(hiding)}, '
        'and the feed leaves out posts so labelled',
    }


@transparency.get('/receipts/<req_id>')
def receipt(req_id: str) -> Response:
    if not _REQ_ID.match(req_id):
        raise XrpcError(400, 'InvalidRequest', 'a reqId is 16 lower-case hex digits, as a skeleton response gives it')
    stored = get_receipt(req_id)
    if stored is None:
        raise XrpcError(
            404,
            'ReceiptNotFound',
            f'no receipt for {req_id}: receipts are kept for {RECEIPT_TTL_HOURS:g} hours, '
            'and FEEDGEN_RECEIPTS may keep only some of them (by default at most 50 a second per serving process)',
        )
    if stored.reader is not None:
        what = 'this receipt is of a personalized page: reading it'
        reader = signed_in_reader(_context()['auth'], READ_LXM, request.headers.get('Authorization'), what)
        if reader != stored.reader:
            message = f'the service JWT speaks for {reader}: only the reader of a personalized page reads its receipt'
            raise XrpcError(403, 'NotYourReceipt', message)
    return Response(stored.text, mimetype='application/json')
