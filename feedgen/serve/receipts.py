"""Receipts: how each served page was made, and how many pages each feed served.

Owns stamping every skeleton response with a `reqId` and the `algorithm` `{name, version}` that ranked
it, the receipt of that request (feed, params, viewer, languages, the algorithm's `Page.trace`, the items
with their contexts), the per-feed request counters, and pruning receipts older than a day.

A receipt names its reader only when the page depended on them (`receipt_reader`: a personalized feed, or one that
weighs readers' feedback): such a receipt is stored with its reader, and only their own service JWT reads it. Any
other receipt is public and names no reader: `anonymous` for an anonymous request, `withheld` for a signed-in one.

Writes are off the request path: after the response has been sent (`call_on_close`) the request's receipt is
built as zlib-compressed JSON around the response's own bytes (when `FEEDGEN_RECEIPTS` samples it) and joins
its process's `RequestLog`, which a background thread writes every 0.2 s in one transaction, with one counter
upsert per feed. Reading a receipt or the
counters first writes what this process still holds; another process's requests show within 0.2 s, and a
process writes what it holds when it exits. Counters live in the store, so they add up every serving process
and survive restarts. It never ranks anything and never touches the indexed records.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import secrets
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

import peewee
from flask import Response, current_app

from feedgen.ranking.algorithm import FeedRequest, Page
from feedgen.ranking.feed_catalog import algorithm_stamp, effective_params
from feedgen.ranking.languages import add_content_language
from feedgen.ranking.plugins import Feed
from feedgen.serve.jsonio import dumps_bytes
from feedgen.settings import ReceiptPolicy
from feedgen.store.batches import Batches
from feedgen.store.models import FeedStat, Receipt
from feedgen.store.statements import insert_ignore

RECEIPT_TTL_HOURS = 24.0
PRUNE_CHUNK = 5000
"""The most rows one prune transaction deletes."""
log = logging.getLogger(__name__)


def new_req_id() -> str:
    """A fresh random request id: 16 hex digits."""
    return secrets.token_hex(8)


ANONYMOUS, WITHHELD = 'anonymous', 'withheld'
"""What a public receipt says in place of a reader: the request had none, or the page did not depend on them."""


class StoredReceipt(NamedTuple):
    """A receipt as `get_receipt` finds it: its JSON text, and the reader it belongs to (None: it is public)."""

    text: str
    reader: str | None


def receipt_reader(feed: Feed, request: FeedRequest) -> str | None:
    """The reader a page's receipt belongs to: its viewer when the page depended on them, else None (public)."""
    algorithm = feed.algorithm
    return request.viewer if algorithm.personalized or algorithm.accepts_interactions else None


def build_receipt(req_id: str, feed: Feed, publisher_did: str, request: FeedRequest, page: Page) -> dict[str, Any]:
    """How one page was made, as JSON-able data; the receipt is this, then the response's `items` and `cursor`."""
    reader = receipt_reader(feed, request)
    return {
        'reqId': req_id,
        'time': datetime.now(UTC).isoformat(timespec='milliseconds').replace('+00:00', 'Z'),
        'feed': feed.uri(publisher_did),
        'algorithm': algorithm_stamp(feed),
        'params': effective_params(feed),
        'viewer': reader or (ANONYMOUS if request.viewer is None else WITHHELD),
        'request': {'limit': request.limit, 'cursor': request.cursor, 'langs': list(request.langs)},
        'trace': page.trace,
    }


def skeleton_response(
    body: dict[str, Any],
    feed: Feed,
    request: FeedRequest,
    page: Page,
    publisher_did: str,
    db: peewee.Database,
    keep_receipt: bool = True,
) -> Response:
    """The JSON response for a skeleton `body`, stamped with `reqId` and `algorithm`; records it once sent.

    Args:
        keep_receipt: whether this request's receipt is stored (`ReceiptSampler.keep`); every request is counted.
    """
    req_id = new_req_id()
    data = dumps_bytes(body | {'algorithm': algorithm_stamp(feed), 'reqId': req_id})
    response = current_app.response_class(data, mimetype='application/json')
    add_content_language(response, feed)
    receipt = None
    if keep_receipt:
        receipt = partial(_receipt_payload, req_id, feed, publisher_did, request, page, data)
    reader = receipt_reader(feed, request)
    response.call_on_close(partial(record_request, db, feed.rkey, req_id, receipt, reader))
    return response


def _receipt_payload(
    req_id: str, feed: Feed, publisher_did: str, request: FeedRequest, page: Page, response: bytes
) -> bytes:
    """A stored receipt: `build_receipt`'s JSON with the response as it was sent (its items and cursor), compressed.

    The response's bytes are kept, not encoded a second time; `get_receipt` gives the items and cursor their place.
    """
    receipt = dumps_bytes(build_receipt(req_id, feed, publisher_did, request, page))
    return zlib.compress(receipt[:-1] + b',"response":' + response + b'}', 1)


class ReceiptSampler:
    """Decides, request by request, whether a receipt is kept, by a `ReceiptPolicy` (`FEEDGEN_RECEIPTS`).

    A rate is a token bucket per serving process: up to `per_second` receipts a second (and bursts of as many), so
    every request of a process serving fewer gets one, and a busy one stores a bounded number: a receipt is a
    sizeable share of a cheap request's CPU and a kilobyte of store for a day (docs/design.md, "Serving").
    """

    def __init__(self, policy: ReceiptPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._tokens = policy.per_second or 0.0
        self._at = clock()
        self._lock = threading.Lock()  # a server process's request threads share one bucket

    def keep(self) -> bool:
        """Whether the request being answered keeps its receipt."""
        policy = self.policy
        if policy.share < 1.0 and (policy.share <= 0.0 or random.random() >= policy.share):
            return False
        if policy.per_second is None:
            return True
        with self._lock:
            now = self.clock()
            self._tokens = min(policy.per_second, self._tokens + (now - self._at) * policy.per_second)
            self._at = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True


class _Served(NamedTuple):
    """A served request waiting to be written: its feed, id, compressed receipt (None: not kept), time and reader."""

    rkey: str
    req_id: str
    payload: bytes | None
    at: int
    reader: str | None


class RequestLog:
    """The requests this process served and has not written yet; a background thread writes them in batches.

    One transaction every `flush_seconds` (all receipts, one counter upsert per feed) instead of one per request:
    a write per request serializes every serving process on SQLite's write lock, and on ingest's batches.
    """

    def __init__(self, db: peewee.Database, flush_seconds: float = 0.2) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self._pending: list[_Served] = []
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, rkey: str, req_id: str, receipt: partial[bytes] | None, reader: str | None = None) -> None:
        # The receipt is built and compressed here, in the thread that served the request (its response is sent):
        # built by the background thread, the CPU work would hold the GIL for tens of ms at a time and make every
        # request thread wait for it at each row it reads.
        payload = None if receipt is None else receipt()
        with self._lock:
            self._pending.append(_Served(rkey, req_id, payload, int(time.time() * 1000), reader))
            if self._thread is None or self._pid != os.getpid():  # started lazily: the server forks workers
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name='feedgen-request-log', daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()

    def flush(self) -> None:
        """Writes every pending request now. A failure is logged, never raised: the responses are long sent."""
        with self._writing:
            with self._lock:
                pending, self._pending = self._pending, []
            if not pending:
                return
            try:
                self._write(pending)
            except peewee.PeeweeException:
                log.exception('could not record %d requests', len(pending))

    def _write(self, pending: list[_Served]) -> None:
        receipts = [(s.req_id, s.rkey, s.at, s.reader, s.payload) for s in pending if s.payload is not None]
        counts: dict[str, tuple[int, int]] = {}
        for rkey, _, _, now, _ in pending:
            requests, since = counts.get(rkey, (0, now))
            counts[rkey] = (requests + 1, min(since, now))
        self.db.connect(reuse_if_open=True)
        with self.db.atomic():
            if receipts:  # one prepared statement for all: a peewee insert cost 16 us a receipt, this 3.5
                insert_ignore(self.db, Receipt, ('req_id', 'feed', 'created_at', 'viewer', 'payload'), receipts)
            for rkey, (requests, since) in counts.items():
                FeedStat.insert(rkey=rkey, requests=requests, since=since).on_conflict(
                    conflict_target=[FeedStat.rkey], update={FeedStat.requests: FeedStat.requests + requests}
                ).execute()


_logs: dict[int, RequestLog] = {}


def record_request(
    db: peewee.Database, rkey: str, req_id: str, receipt: partial[bytes] | None, reader: str | None = None
) -> None:
    """Counts one served request of feed `rkey` and keeps its receipt, of `reader` (None: public): written within
    `RequestLog.flush_seconds`.

    Runs after the response was sent, so a failure is logged, never answered.
    """
    request_log = _logs.get(id(db))
    if request_log is None:
        request_log = _logs.setdefault(id(db), RequestLog(db))
    request_log.add(rkey, req_id, receipt, reader)


def flush_requests() -> None:
    """Writes the requests this process served and has not written yet (before reading receipts or counters)."""
    for request_log in list(_logs.values()):
        request_log.flush()


_ITEM_KEYS = ('post', 'feedContext', 'reason')
"""What a receipt shows of each item: `reason` only when the item has one."""


def get_receipt(req_id: str, now: float | None = None) -> StoredReceipt | None:
    """The stored receipt of `req_id` and its reader, or None when there is none younger than a day."""
    flush_requests()
    cutoff = _cutoff(RECEIPT_TTL_HOURS, now)
    query = Receipt.select(Receipt.payload, Receipt.viewer)
    row = query.where(Receipt.req_id == req_id, Receipt.created_at >= cutoff).tuples().first()
    if row is None:
        return None
    receipt = json.loads(zlib.decompress(bytes(row[0])))
    response = receipt.pop('response')
    items = [{key: item.get(key) for key in _ITEM_KEYS if key in item or key != 'reason'} for item in response['feed']]
    return StoredReceipt(json.dumps(receipt | {'items': items, 'cursor': response.get('cursor')}), row[1])


def request_counts() -> dict[str, dict[str, int]]:
    """Skeleton requests served per feed record key by every serving process: `{rkey: {requests, since}}`."""
    flush_requests()
    return {rkey: {'requests': n, 'since': since} for rkey, n, since in FeedStat.select().tuples()}


def prune_receipts(db: peewee.Database, max_age_hours: float = RECEIPT_TTL_HOURS, now: float | None = None) -> int:
    """Deletes receipts older than `max_age_hours`, in short transactions (`Batches`); returns how many."""
    cutoff = _cutoff(max_age_hours, now)

    def delete(size: int) -> int:
        old = Receipt.select(Receipt.req_id).where(Receipt.created_at < cutoff).limit(size)
        deleted: int = Receipt.delete().where(Receipt.req_id.in_(old)).execute()
        return deleted

    return Batches(db, PRUNE_CHUNK).run(delete)


def _cutoff(hours: float, now: float | None) -> int:
    return int(((time.time() if now is None else now) - hours * 3600) * 1000)
