"""XRPC: the error type and the request checks every HTTP endpoint of feedgen shares.

Owns `XrpcError` (answered as `{"error": ..., "message": ...}`), finding the served feed a request names,
the viewer rule (a personalized feed needs a verified viewer) and `signed_in_reader`, the reader an endpoint of
their own (feedback, their data) needs, by a token scoped to that endpoint's method. Blueprints and the server
import it; it imports none of them.
"""

from __future__ import annotations

from flask import Response, jsonify

from feedgen.ranking.plugins import Feed
from feedgen.serve.auth import ServiceAuth

GENERATOR_COLLECTION = 'app.bsky.feed.generator'


class XrpcError(Exception):
    """An error answered as an XRPC JSON body `{"error": ..., "message": ...}`."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def xrpc_error_response(status: int, error: str, message: str) -> tuple[Response, int]:
    return jsonify({'error': error, 'message': message}), status


def find_feed(feeds: dict[str, Feed], publisher_did: str, uri: str | None) -> Feed:
    """The served feed whose URI is `uri`.

    Raises:
        XrpcError: `feed` is missing (InvalidRequest) or not a feed of this publisher (UnknownFeed).
    """
    if not uri:
        raise XrpcError(400, 'InvalidRequest', 'the feed parameter is required')
    prefix = f'at://{publisher_did}/{GENERATOR_COLLECTION}/'
    feed = feeds.get(uri[len(prefix) :]) if uri.startswith(prefix) else None
    if feed is None:
        raise XrpcError(400, 'UnknownFeed', f'this service does not serve the feed {uri[:300]}')
    return feed


def feed_viewer(feed: Feed, auth: ServiceAuth, authorization: str | None) -> str | None:
    """The verified viewer DID of a request for `feed`, or None when anonymous.

    Raises:
        AuthError: the service JWT is present but invalid (401, saying which check failed).
        XrpcError: the feed is personalized and the request is anonymous (401 AuthRequired).
    """
    viewer = auth.viewer(authorization)
    if viewer is None and feed.algorithm.personalized:
        raise XrpcError(401, 'AuthRequired', f'the feed {feed.rkey} is personalized: it needs a signed-in viewer')
    return viewer


def signed_in_reader(auth: ServiceAuth, lxm: str, authorization: str | None, what: str) -> str:
    """The DID of the reader whose service JWT, scoped to the method `lxm`, the request carries.

    Raises:
        XrpcError: there is no token (401 AuthRequired, saying `what` needs one and for which `lxm`).
        AuthError: the token is not valid for this service and `lxm` (401, saying which check failed).
    """
    viewer = ServiceAuth(auth.service_did, auth.keys, lxm=lxm).viewer(authorization)
    if viewer is None:
        raise XrpcError(401, 'AuthRequired', f'{what} needs the service JWT of a signed-in reader (lxm {lxm})')
    return viewer
