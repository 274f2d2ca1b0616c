"""Limits: how large a request the feed generator accepts, and refusing larger or undecodable ones before any view.

Owns the largest query string, header and body a request may carry, and that the query string is UTF-8 (werkzeug
would raise a `UnicodeDecodeError` from inside a view). An oversized request is refused with a
werkzeug HTTP error (414, 431, 413) that the server's error handler answers as an XRPC JSON body. The HTTP
server's own buffer (`feedgen.serve.server`) is larger, as a backstop: what these limits refuse is refused by the
app, in JSON; only a request head too large for the server to buffer at all gets its bare 431. It never reads the
store.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge, RequestHeaderFieldsTooLarge, RequestURITooLarge

MAX_QUERY_BYTES = 4096
"""A feed URI, a cursor and a limit take a few hundred bytes; twice the longest real query is plenty."""
MAX_HEADER_BYTES = 4096
"""Per header (name and value); a service JWT in `Authorization` is under 1 KB."""
MAX_HEADERS = 64
_UNPREFIXED = frozenset({'CONTENT_TYPE', 'CONTENT_LENGTH'})
"""The two headers WSGI names without `HTTP_`."""
MAX_BODY_BYTES = 16 * 1024
"""Every endpoint is a GET: a body is never read, so anything but a small one is refused."""


def check_request() -> None:
    """Refuses the current request if its query string, a header or its body is over the limits, or its query
    string is not UTF-8.

    Raises:
        RequestURITooLarge: the query string is longer than `MAX_QUERY_BYTES` (414).
        RequestHeaderFieldsTooLarge: a header is longer than `MAX_HEADER_BYTES`, or there are more than
            `MAX_HEADERS` (431).
        RequestEntityTooLarge: the declared body is longer than `MAX_BODY_BYTES` (413).
        BadRequest: the query string is not percent-encoded UTF-8 (400).
    """
    environ = request.environ  # read as the server gave it: werkzeug's header objects cost more than the checks
    query = len(environ.get('QUERY_STRING', ''))
    if query > MAX_QUERY_BYTES:
        raise RequestURITooLarge(f'the query string is {query} bytes; at most {MAX_QUERY_BYTES} are accepted')
    headers = [(key, value) for key, value in environ.items() if key.startswith('HTTP_') or key in _UNPREFIXED]
    if len(headers) > MAX_HEADERS:
        raise RequestHeaderFieldsTooLarge(f'{len(headers)} headers; at most {MAX_HEADERS} are accepted')
    for key, value in headers:
        name = key.removeprefix('HTTP_')
        if len(name) + len(value) > MAX_HEADER_BYTES:
            name = name.replace('_', '-').title()
            raise RequestHeaderFieldsTooLarge(
                f'the {name[:40]} header is {len(name) + len(value)} bytes; at most {MAX_HEADER_BYTES} are accepted'
            )
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge(f'a body of {request.content_length} bytes; at most {MAX_BODY_BYTES} are accepted')
    try:
        request.args  # noqa: B018 (parsing is the check)
    except UnicodeDecodeError:
        raise BadRequest('the query string is not UTF-8') from None


def register(app: Flask) -> None:
    """Makes `app` refuse oversized and undecodable requests before its views (and caps bodies werkzeug reads)."""
    app.config['MAX_CONTENT_LENGTH'] = MAX_BODY_BYTES
    app.before_request(check_request)
