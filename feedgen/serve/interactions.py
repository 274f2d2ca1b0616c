"""Interactions: the `app.bsky.feed.sendInteractions` endpoint, where readers' apps send feedback on feed items.

Owns a Flask blueprint answering `POST /xrpc/app.bsky.feed.sendInteractions`: it checks the reader's service
JWT (scoped to that method), validates the body with the atproto SDK's lexicon model, and keeps the feedback
feeds use (`requestLess`, `requestMore`, `interactionSeen`) as one `Interaction` row per reader, kind and post,
the latest winning, in one short write transaction of the serving process. Other events (clickthroughs, likes
in the app...) are accepted and not kept. A verified reader is noted for the sync of their follows
(`feedgen.serve.reader_graph`), without waiting for it. Also the job that forgets feedback after
`FEEDBACK_DAYS`. What the feedback does to rankings is `feedgen.ranking.feedback`'s; this module never reads posts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import peewee
import pydantic
from atproto import AtUri, models
from atproto_core.exceptions import InvalidAtUriError
from flask import Blueprint, Response, current_app, jsonify, request

from feedgen.ranking.feedback import DAY_MS, FEEDBACK_DAYS, LESS, MORE, SEEN
from feedgen.serve.reader_graph import reader_seen
from feedgen.serve.xrpc import XrpcError, signed_in_reader
from feedgen.store.batches import Batches
from feedgen.store.models import Interaction, write_transaction

SEND_INTERACTIONS_LXM = 'app.bsky.feed.sendInteractions'
MAX_INTERACTIONS = 1000
"""Interactions one request may carry."""
KEPT_EVENTS = {f'app.bsky.feed.defs#{name}': name for name in (LESS, MORE, SEEN)}
POST_COLLECTION = 'app.bsky.feed.post'
PRUNE_CHUNK = 5000
"""The most rows one prune transaction deletes."""
_INSERT_CHUNK = 100
log = logging.getLogger(__name__)

interactions = Blueprint('interactions', __name__)


def viewer_did() -> str:
    """The DID of the reader sending feedback, from the service JWT of the current request.

    Raises:
        XrpcError: there is no token (401 AuthRequired).
        AuthError: the token is not valid for this service and method (answered 401 by the server).
    """
    auth = current_app.extensions['feedgen']['auth']
    return signed_in_reader(auth, SEND_INTERACTIONS_LXM, request.headers.get('Authorization'), 'sendInteractions')


def parse_interactions(body: Any) -> list[models.AppBskyFeedDefs.Interaction]:
    """The interactions of a sendInteractions request body.

    Raises:
        XrpcError: the body does not fit the lexicon, or holds more than `MAX_INTERACTIONS` (400 InvalidRequest).
    """
    if not isinstance(body, dict):
        raise XrpcError(400, 'InvalidRequest', 'the body must be a JSON object: {"interactions": [...]}')
    try:
        data = models.AppBskyFeedSendInteractions.Data.model_validate(body)
    except pydantic.ValidationError as error:
        problem = error.errors()[-1]
        where = '.'.join(str(p) for p in problem['loc'] if not (isinstance(p, str) and (p == 'str' or '[' in p)))
        raise XrpcError(400, 'InvalidRequest', f'{where}: {problem["msg"]}') from None
    if len(data.interactions) > MAX_INTERACTIONS:
        raise XrpcError(400, 'InvalidRequest', f'at most {MAX_INTERACTIONS} interactions per request')
    return data.interactions


def feedback_rows(viewer: str, items: list[models.AppBskyFeedDefs.Interaction], now_ms: int) -> list[dict[str, Any]]:
    """The `Interaction` rows to keep from `items`: kept events about posts, each (event, post) once."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        event = KEPT_EVENTS.get(item.event or '')
        author = _post_author(item.item) if event else None
        if event and author and item.item:
            rows[event, item.item] = {
                'viewer': viewer,
                'event': event,
                'post': item.item,
                'author': author,
                'feed_context': item.feed_context,
                'at': now_ms,
            }
    return list(rows.values())


def _post_author(uri: str | None) -> str | None:
    """The author DID of the post at `uri`, or None when `uri` is not the at:// URI of a post."""
    try:
        parsed = AtUri.from_str(uri or '')
    except InvalidAtUriError:
        return None
    return parsed.host if parsed.host.startswith('did:') and parsed.collection == POST_COLLECTION else None


def record_feedback(db: peewee.Database, rows: list[dict[str, Any]]) -> None:
    """Stores `rows`, replacing the earlier row of the same reader, event and post."""
    with write_transaction(db):
        for start in range(0, len(rows), _INSERT_CHUNK):
            Interaction.insert_many(rows[start : start + _INSERT_CHUNK]).on_conflict(
                conflict_target=[Interaction.viewer, Interaction.event, Interaction.post],
                preserve=[Interaction.author, Interaction.feed_context, Interaction.at],
            ).execute()


@interactions.post('/xrpc/app.bsky.feed.sendInteractions')
def send_interactions() -> Response:
    viewer = viewer_did()
    reader_seen(current_app.extensions['feedgen'].get('graphs'), viewer, wait=0.0)
    items = parse_interactions(request.get_json(silent=True))
    rows = feedback_rows(viewer, items, int(time.time() * 1000))
    if rows:
        record_feedback(current_app.extensions['feedgen']['db'], rows)
    log.debug('sendInteractions from %s: %d interactions, %d kept', viewer, len(items), len(rows))
    return jsonify({})


def prune_interactions(db: peewee.Database, now: float | None = None) -> int:
    """Deletes feedback older than `FEEDBACK_DAYS`, in short transactions (`Batches`); returns how many rows."""
    cutoff = int((time.time() if now is None else now) * 1000) - FEEDBACK_DAYS * DAY_MS
    key = peewee.Tuple(Interaction.viewer, Interaction.event, Interaction.post)

    def delete(size: int) -> int:
        old = Interaction.select(Interaction.viewer, Interaction.event, Interaction.post)
        deleted: int = Interaction.delete().where(key.in_(old.where(Interaction.at < cutoff).limit(size))).execute()
        return deleted

    return Batches(db, PRUNE_CHUNK).run(delete)
