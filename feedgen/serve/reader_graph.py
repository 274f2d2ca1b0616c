"""Reader graph: what a verified request does to its reader's follow sync, and what the reader is told of it.

Owns calling `ReaderGraphs.seen` for each verified reader (waiting up to `FEEDGEN_GRAPH_WAIT_SECONDS` only on a
personalized feed, whose page depends on the follows) and the note a page of a personalized feed carries while the
reader's follows are not all known: appended to each item's `feedContext`, and, since the lexicon has no place for
the reason of an empty page, in the `Feedgen-Reader-Graph` response header and the page's receipt (`trace`).
A request that may wait is served by a worker thread, never on the worker's loop (`may_wait`).
"""

from __future__ import annotations

from dataclasses import replace

from atproto_server.auth.jwt import get_jwt_payload
from atproto_server.exceptions import TokenDecodeError
from flask import Response

from feedgen.ingest.graph_sync import LOADING, UNAVAILABLE, ReaderGraphs
from feedgen.ranking.algorithm import Item, Page

NOTES = {
    LOADING: 'your follows are still loading from your PDS',
    UNAVAILABLE: 'your follows could not be read from your PDS yet; retrying',
}
"""What an item's `feedContext` adds while the reader's follows are loading, or after a failed read."""
HEADER = 'Feedgen-Reader-Graph'


def reader_seen(graphs: ReaderGraphs | None, viewer: str | None, wait: float) -> str | None:
    """Notes a verified `viewer`'s request; returns their graph's state (`synced`, `loading`, `unavailable`), or
    None when the request is anonymous or no sync is configured."""
    if graphs is None or viewer is None:
        return None
    return graphs.seen(viewer, wait)


def may_wait(graphs: ReaderGraphs, authorization: str | None) -> bool:
    """Whether a request with this `Authorization` header may wait for its reader's follows: its token's issuer is
    not known here to be synced. The token is read unverified, only to choose the thread that serves it (the worker
    serves a request that cannot wait on its loop, `feedgen.serve.workers`); the server verifies it."""
    scheme, _, token = (authorization or '').partition(' ')
    if scheme.lower() != 'bearer':
        return False
    try:
        issuer = get_jwt_payload(token.strip()).iss
    except (TokenDecodeError, ValueError):
        return False
    return isinstance(issuer, str) and not graphs.known(issuer)


def noted_page(page: Page, state: str | None) -> Page:
    """`page` with the note of `state` in each item's context and in its trace, when the follows are not all known."""
    note = NOTES.get(state or '')
    if note is None:
        return page
    items = [Item(item.post, f'{item.context}; {note}' if item.context else note) for item in page.items]
    return replace(page, items=items, trace=page.trace | {'reader_graph': state})


def note_header(response: Response, state: str | None) -> Response:
    """Adds the `Feedgen-Reader-Graph` header when the reader's follows are not all known."""
    if state in NOTES:
        response.headers[HEADER] = state
    return response
