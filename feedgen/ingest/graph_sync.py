"""Graph sync: a reader's follows read from their own repository the first time the service sees them.

Owns when a sync runs, where, and how long a request waits for it. The serving process calls `ReaderGraphs.seen`
for each verified reader (a service JWT that passed every check). The first time, it claims the reader's sync in the
store (`feedgen.store.reader_graphs.claim`: one claim across every serving process) and runs it on a small thread
pool of this process: resolve the reader's PDS, page their follow records (`feedgen.ingest.repo_follows`), write
each group of pages as the firehose would have. A request may wait for its reader's sync up to a bound; past it,
the sync goes on in the background and the request answers with what is known.

Every outcome is written to the store: `synced` (also `truncated` when the reader follows more than
`max_follows`: the newest ones are kept), or `failed` with a reason, retried on a later request of that reader
after a backoff that doubles with each failure (`retry_seconds`, at most `MAX_RETRY_SECONDS`). A claim lapses after
`LEASE_SECONDS`, so a sync whose process died is run again. Readers known to be synced are remembered in memory
(at most `MAX_REMEMBERED`, each for `REMEMBER_SECONDS`), so their requests cost nothing here; a reader who erased
their data (`feedgen.store.reader_data`) is forgotten at once by the process that erased it (`forget`), and by the
others when they next look in the store, so their next personalized page syncs their follows again. Algorithms
never see any of this: they read `Follow` rows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import httpx
import peewee

from feedgen.ingest.repo_follows import (
    PAGE_TIMEOUT_SECONDS,
    DocumentResolver,
    FetchError,
    follow_pages,
    pds_endpoint,
)
from feedgen.store import reader_graphs
from feedgen.store.reader_graphs import FAILED, SYNCED, TRUNCATED

SYNC_SECONDS = 120.0
"""The most one sync spends reading a repository (1,000 pages of 100 follows at 0.1 s each)."""
LEASE_SECONDS = SYNC_SECONDS + 60.0
"""How long a claim holds: the read, plus time to write it."""
MAX_RETRY_SECONDS = 6 * 3600.0
WORKERS = 4
"""Syncs one serving process runs at once."""
MAX_QUEUED = 1000
"""Syncs one serving process holds waiting for a worker; past that a reader is claimed on a later request."""
WRITE_ROWS = 1000
"""Follows written per transaction: short enough never to hold the ingest writer up for long."""
MAX_REMEMBERED = 100_000
"""Synced readers a serving process remembers (about 100 bytes each)."""
REMEMBER_SECONDS = 10.0
"""How long a serving process trusts its memory that a reader is synced before looking in the store again: how
long another process may take to see that the reader erased their graph."""
log = logging.getLogger(__name__)

LOADING, UNAVAILABLE = 'loading', 'unavailable'


class ReaderGraphs:
    """Syncs readers' follows from their repositories, once per reader, on a bounded pool of this process.

    Args:
        db: the store (each pool thread opens its own connection to it).
        resolver: finds a reader's DID document (the resolver service auth uses).
        max_follows: the most follow records read for one reader.
        retry_seconds: the wait before the first retry after a failure; it doubles with each failure.
        client: the HTTP client the syncs share (tests pass one with a short timeout or a mock transport).
    """

    def __init__(
        self,
        db: peewee.Database,
        resolver: DocumentResolver,
        max_follows: int = 100_000,
        retry_seconds: float = 60.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.resolver = resolver
        self.max_follows = max_follows
        self.retry_seconds = retry_seconds
        self.clock = clock
        self.client = client or httpx.Client(
            timeout=PAGE_TIMEOUT_SECONDS,
            follow_redirects=False,
            headers={'User-Agent': 'feedgen (reader graph sync)'},
            limits=httpx.Limits(max_connections=WORKERS * 2, max_keepalive_connections=WORKERS),
        )
        self._synced: OrderedDict[str, float] = OrderedDict()
        """Synced readers, with when this process learnt it (`time.monotonic`), the oldest first."""
        self._running: dict[str, Future[str]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def seen(self, did: str, wait: float = 0.0) -> str:
        """Notes a verified request of reader `did`; starts their sync if it is due; waits up to `wait` seconds for a
        sync of theirs running in this process. Returns `synced`, `loading` (a sync runs or is due) or
        `unavailable` (the last sync failed; a later request retries after the backoff)."""
        remembered = self._synced.get(did)
        if remembered is not None and time.monotonic() - remembered < REMEMBER_SECONDS:
            return SYNCED
        future = self._running.get(did) or self._start(did)
        if future is not None:
            try:
                return future.result(timeout=wait) if wait > 0 or future.done() else LOADING
            except FutureTimeout:
                return LOADING
        row = reader_graphs.state_of(did)
        if row is not None and row.state == SYNCED:
            self._remember(did)
            return SYNCED
        return UNAVAILABLE if row is not None and row.state == FAILED else LOADING

    def _start(self, did: str) -> Future[str] | None:
        """Claims and queues `did`'s sync; None when it is not due, or runs elsewhere, or the queue is full."""
        row = reader_graphs.state_of(did)
        now_ms = int(self.clock() * 1000)
        not_due = row is not None and (row.state == SYNCED or row.next_at > now_ms)
        if not_due or len(self._running) >= MAX_QUEUED:
            return None
        if not reader_graphs.claim(self.db, did, now_ms, int(LEASE_SECONDS * 1000)):
            return self._running.get(did)  # another request of this process may have claimed it a moment ago
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix='feedgen-graph')
            future = self._pool.submit(self._sync, did)
            self._running[did] = future
        future.add_done_callback(lambda _: self._running.pop(did, None))
        return future

    def _sync(self, did: str) -> str:
        """Reads and writes `did`'s follows; records the outcome; returns `synced` or `unavailable`."""
        self.db.connect(reuse_if_open=True)
        started = time.monotonic()
        read = 0
        try:
            try:
                pds = pds_endpoint(self.resolver, did)
                pending: list[tuple[str, str]] = []
                for page in follow_pages(self.client, pds, did, self.max_follows, started + SYNC_SECONDS):
                    read += len(page.follows) + page.skipped
                    pending.extend(page.follows)
                    if len(pending) >= WRITE_ROWS:
                        reader_graphs.store_follows(self.db, did, pending, int(self.clock() * 1000))
                        pending = []
                if pending:
                    reader_graphs.store_follows(self.db, did, pending, int(self.clock() * 1000))
            except FetchError as error:
                return self._failed(did, error.reason, str(error), read)
            except peewee.DatabaseError as error:
                return self._failed(did, 'store', str(error), read)
            now_ms = int(self.clock() * 1000)
            reason = TRUNCATED if read >= self.max_follows else ''
            reader_graphs.finish(self.db, did, SYNCED, reason, read, 0, now_ms)
            self._remember(did)
            log.info('reader graph of %s synced: %d follow records %s', did, read, reason or 'in full')
            return SYNCED
        except Exception:
            log.exception('reader graph sync of %s failed', did)
            return self._failed(did, 'internal', 'unexpected error (logged)', read)

    def _failed(self, did: str, reason: str, message: str, read: int) -> str:
        row = reader_graphs.state_of(did)
        attempts = row.attempts if row is not None else 1
        delay = min(MAX_RETRY_SECONDS, self.retry_seconds * 2 ** max(0, attempts - 1))
        now_ms = int(self.clock() * 1000)
        try:
            reader_graphs.finish(self.db, did, FAILED, reason, read, now_ms + int(delay * 1000), now_ms)
        except peewee.DatabaseError:
            log.exception('could not record the failed graph sync of %s (its claim lapses)', did)
        log.warning('reader graph of %s not synced: %s; retry after %.0f s', did, message, delay)
        return UNAVAILABLE

    def _remember(self, did: str) -> None:
        with self._lock:
            self._synced.pop(did, None)
            self._synced[did] = time.monotonic()
            while len(self._synced) > MAX_REMEMBERED:
                self._synced.popitem(last=False)

    def forget(self, did: str) -> None:
        """Forgets that `did` is synced (they erased their graph): their next request looks in the store."""
        with self._lock:
            self._synced.pop(did, None)

    def wait_idle(self, timeout: float) -> None:
        """Waits up to `timeout` seconds for the syncs of this process to end (tests, a clean shutdown)."""
        deadline = time.monotonic() + timeout
        for future in list(self._running.values()):
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                return
