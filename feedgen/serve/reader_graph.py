"""Reader graph: what a verified request does to its reader's follow sync, and what the reader is told of it.

Owns calling `ReaderGraphs.seen` for each verified reader (waiting up to `FEEDGEN_GRAPH_WAIT_SECONDS` only on a
personalized feed, whose page depends on the follows, with the request's turn given to the process's other
requests meanwhile) and the note a page of a personalized feed carries while the reader's follows are not all
known: appended to each item's `feedContext`, and, since the lexicon has no place for the reason of an empty page,
in the `Feedgen-Reader-Graph` response header and the page's receipt (`trace`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

from flask import Response

from feedgen.ingest.graph_sync import LOADING, UNAVAILABLE, ReaderGraphs
from feedgen.ranking.algorithm import Item, Page
from feedgen.serve.turns import Turns

NOTES = {
    LOADING: 'your follows are still loading from your PDS',
    UNAVAILABLE: 'your follows could not be read from your PDS yet; retrying',
}
"""What an item's `feedContext` adds while the reader's follows are loading, or after a failed read."""
HEADER = 'Feedgen-Reader-Graph'


def reader_seen(graphs: ReaderGraphs | None, viewer: str | None, wait: float, turns: Turns | None = None) -> str | None:
    """Notes a verified `viewer`'s request; returns their graph's state (`synced`, `loading`, `unavailable`), or
    None when the request is anonymous or no sync is configured. While it waits for the follows, the request's turn
    goes to the process's other requests."""
    if graphs is None or viewer is None:
        return None
    state = graphs.seen(viewer)
    if state != LOADING or wait <= 0:
        return state
    with turns.away() if turns else nullcontext():
        return graphs.seen(viewer, wait)


def noted_page(page: Page, state: str | None) -> Page:
    """`page` with the note of `state` in each item's context and in its trace, when the follows are not all known."""
    note = NOTES.get(state or '')
    if note is None:
        return page
    items = [Item(item.post, f'{item.context}; {note}' if item.context else note, item.reason) for item in page.items]
    return replace(page, items=items, trace=page.trace | {'reader_graph': state})


def note_header(response: Response, state: str | None) -> Response:
    """Adds the `Feedgen-Reader-Graph` header when the reader's follows are not all known."""
    if state in NOTES:
        response.headers[HEADER] = state
    return response
