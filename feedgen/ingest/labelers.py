"""Labelers: one subscription to each configured labeler's `com.atproto.label.subscribeLabels`, beside ingest.

Owns finding a labeler (its DID document, through the configured PLC for did:plc: the `#atproto_labeler` service
endpoint and the `#atproto_label` key), reading its stream from the saved cursor (the whole history, `cursor=0`, the
first time), checking every label (`feedgen.ingest.label_frames`: its fields, its source, its signature against the
labeler's key, the key re-resolved at most once per `REFRESH_SECONDS` when a signature fails, for keys rotate) and
storing the ones that pass with the cursor that covers them (`feedgen.store.labels`, one transaction per batch). A
label that fails is dropped and counted by reason. A dropped or stalled connection (nothing for `STALL_SECONDS`, not
even a pong: a quiet labeler stays connected), an unreachable labeler or an unresolvable DID is logged in one line
and retried with exponential backoff; each labeler runs on its own daemon thread, so one that is down never holds up
the firehose, the other labelers or serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import httpx
import peewee
from atproto_core.did_doc import DidDocument
from atproto_core.exceptions import AtProtocolError
from atproto_crypto.did import get_did_key
from atproto_identity.resolver import IdResolver
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from feedgen.ingest.events import ErrorFrame, Info
from feedgen.ingest.fields import FrameError
from feedgen.ingest.firehose import Backoff
from feedgen.ingest.label_frames import LabelError, LabelsFrame, decode_labels_frame, parse_label, signed
from feedgen.ingest.websocket import Stalled, connect
from feedgen.store.labels import TOTALS, LabelState, forget_labelers, labeler_cursor, store_labels

log = logging.getLogger(__name__)
LABELER_SERVICE = ('#atproto_labeler', 'AtprotoLabeler')
LABEL_KEY = '#atproto_label'
RESOLVE_TIMEOUT_SECONDS = 10.0
REFRESH_SECONDS = 60.0
"""After a signature fails, the labeler's key is resolved afresh at most this often."""
STALL_SECONDS = 60.0
"""A labeler may be quiet for hours; a connection is opened again only after this long without a byte from it, not
even the pong to the keepalive ping sent after half of it (a dead connection is noticed, a quiet one kept)."""
BATCH_LABELS = 500
BATCH_SECONDS = 0.25
"""Labels are stored when this many wait, or the oldest waited this long, or the stream pauses."""
MAX_MESSAGE_BYTES = 1024 * 1024


class Resolver(Protocol):
    """Finds a DID's document (the SDK's `DidResolver`, or a fake in tests)."""

    def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None: ...


class LabelerUnavailable(Exception):
    """The labeler cannot be read now: its DID does not resolve, or names no endpoint or key."""


@dataclass(frozen=True)
class Labeler:
    """Where a labeler's stream is, and the key its labels are signed with."""

    did: str
    url: str
    """The `subscribeLabels` websocket URL."""
    key: str
    """The `did:key` of its `#atproto_label` verification method."""


def resolve_labeler(resolver: Resolver, did: str, force_refresh: bool = False) -> Labeler:
    """The labeler `did` as its DID document describes it.

    Raises:
        LabelerUnavailable: the document cannot be fetched, or names no http(s) `#atproto_labeler` or no key.
    """
    try:
        document = resolver.resolve(did, force_refresh=force_refresh)
    except (AtProtocolError, httpx.HTTPError, ValueError) as error:
        raise LabelerUnavailable(f'{did} does not resolve: {error or type(error).__name__}') from None
    if document is None:
        raise LabelerUnavailable(f'{did} has no DID document')
    endpoint = document.get_service_endpoint(*LABELER_SERVICE)
    if not endpoint or not endpoint.startswith(('http://', 'https://')):
        raise LabelerUnavailable(f'{did} names no http(s) {LABELER_SERVICE[0]} service')
    key = next(
        (
            get_did_key(method.type, method.public_key_multibase)
            for method in document.verification_method or ()
            if method.id in (LABEL_KEY, did + LABEL_KEY) and method.public_key_multibase
        ),
        None,
    )
    if not key:
        raise LabelerUnavailable(f'{did} has no {LABEL_KEY} verification method')
    url = 'ws' + endpoint.rstrip('/')[len('http') :] + '/xrpc/com.atproto.label.subscribeLabels'
    return Labeler(did, url, key)


@dataclass
class _Batch:
    """Labels checked and not yet stored, the cursor that covers them, and the counters' increase."""

    labels: list[LabelState] = field(default_factory=list)
    cursor: int | None = None
    counts: dict[str, Counter[str]] = field(default_factory=lambda: {name: Counter() for name in TOTALS})
    started: float = 0.0

    def __bool__(self) -> bool:
        return self.cursor is not None or any(self.counts.values())


class LabelSubscription:
    """Reads labeler `did`'s stream into the store until `stop` is set (run it on its own thread)."""

    def __init__(
        self,
        did: str,
        db: peewee.Database,
        resolver: Resolver,
        stop: threading.Event | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.did = did
        self.db = db
        self.resolver = resolver
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.labeler: Labeler | None = None
        self.cursor: int | None = None
        self._batch = _Batch()
        self._refreshed_at = float('-inf')

    def run(self) -> None:
        self.db.connect(reuse_if_open=True)
        self.cursor = labeler_cursor(self.did)
        while not self.stop.is_set():
            try:
                if self.labeler is None:
                    self.labeler = resolve_labeler(self.resolver, self.did)
                self._consume(self.labeler)
            except LabelerUnavailable as error:
                self._retry(str(error))
            except ConnectionClosed as error:
                self._retry(f'connection dropped ({error})')
            except Stalled as error:
                self._retry(str(error))
            except (OSError, InvalidHandshake, TimeoutError) as error:
                self._retry(f'cannot connect ({type(error).__name__}: {error})')
            except InvalidURI as error:
                self.labeler = None
                self._retry(f'invalid endpoint ({error})')
            except peewee.DatabaseError as error:
                self._retry(f'store error ({error})')
            except Exception:  # a bug must not end the subscription for good
                log.exception('labeler %s: unexpected error', self.did)
                self._retry('unexpected error (logged)')
        self._retry_flush()

    def _retry(self, why: str) -> None:
        self._retry_flush()
        delay = self.backoff.next_delay()
        log.warning('labeler %s: %s; cursor %s; retrying in %.1fs', self.did, why, self.cursor, delay)
        self.stop.wait(delay)

    def _retry_flush(self) -> None:
        """Stores the pending batch before a new connection; if the store fails, drops it: the next connection asks
        again from the stored cursor, so those labels come again, neither lost nor counted twice."""
        try:
            self._flush()
        except peewee.DatabaseError as error:
            log.warning('labeler %s: pending labels not stored (%s); they are read again', self.did, error)
            self._batch = _Batch()

    def _consume(self, labeler: Labeler) -> None:
        url = f'{labeler.url}?cursor={self.cursor or 0}'
        with connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=RESOLVE_TIMEOUT_SECONDS, close_timeout=2) as socket:
            log.info('connected to labeler %s at %s', self.did, url)
            while not self.stop.is_set():
                try:
                    message = socket.recv(timeout=BATCH_SECONDS)
                except TimeoutError:
                    self._flush()
                    socket.keep_alive(STALL_SECONDS)
                    continue
                self.take(message)
                if len(self._batch.labels) >= BATCH_LABELS or time.monotonic() - self._batch.started > BATCH_SECONDS:
                    self._flush()

    def take(self, message: bytes | str) -> None:
        """Checks the labels of one stream message into the pending batch.

        Raises:
            ConnectionError: the labeler sent an error frame (the stream is over).
        """
        try:
            frame = decode_labels_frame(message)
        except FrameError as error:
            self._count('rejected', error.reason)
            return
        if isinstance(frame, ErrorFrame):
            if frame.error == 'FutureCursor':  # the labeler lost its sequence: read it again from the start
                self._flush()
                self.cursor = 0
            raise ConnectionError(f'error frame ({frame.error}: {frame.message})')
        if isinstance(frame, Info):
            log.warning('labeler %s info %s: %s', self.did, frame.name, frame.message)
            return
        self._check(frame)
        self.backoff.reset()

    def _check(self, frame: LabelsFrame) -> None:
        batch = self._batch
        if not batch:
            batch.started = time.monotonic()
        for raw in frame.labels:
            try:
                label = parse_label(raw, self.did, frame.seq)
            except LabelError as error:
                self._count('rejected', error.reason)
                log.debug('labeler %s: label rejected: %s', self.did, error)
                continue
            batch.counts['received'][label.val] += 1
            if not self._signed(raw):
                self._count('rejected', 'bad_signature')
                log.warning('labeler %s: label %s on %s has a bad signature; dropped', self.did, label.val, label.uri)
                continue
            batch.labels.append(label)
            batch.counts['negated' if label.neg else 'applied'][label.val] += 1
        batch.cursor = frame.seq

    def _signed(self, raw: dict[str, object]) -> bool:
        assert self.labeler is not None  # set before connecting
        if signed(raw, self.labeler.key):
            return True
        if time.monotonic() - self._refreshed_at < REFRESH_SECONDS:
            return False
        self._refreshed_at = time.monotonic()
        try:
            self.labeler = resolve_labeler(self.resolver, self.did, force_refresh=True)
        except LabelerUnavailable as error:
            log.warning('labeler %s: key not re-resolved: %s', self.did, error)
            return False
        return signed(raw, self.labeler.key)

    def _count(self, name: str, key: str) -> None:
        if not self._batch:
            self._batch.started = time.monotonic()
        self._batch.counts[name][key] += 1

    def _flush(self) -> None:
        """Stores the pending batch with its cursor; the cursor moves only once the labels it covers are stored."""
        batch = self._batch
        if not batch:
            return
        store_labels(self.db, self.did, batch.cursor, batch.labels, batch.counts)
        if batch.cursor is not None:
            self.cursor = batch.cursor
        self._batch = _Batch()


def start_labelers(
    dids: tuple[str, ...], db: peewee.Database, plc_url: str, stop: threading.Event
) -> list[threading.Thread]:
    """Starts one `LabelSubscription` thread per labeler DID (they end when `stop` is set), after deleting what the
    store holds of labelers no longer among `dids`."""
    if forgotten := forget_labelers(db, dids):
        log.info('deleted %d labels of labelers no longer subscribed to', forgotten)
    resolver = IdResolver(plc_url=plc_url, timeout=RESOLVE_TIMEOUT_SECONDS).did
    threads = []
    for did in dids:
        subscription = LabelSubscription(did, db, resolver, stop)
        thread = threading.Thread(target=subscription.run, name=f'labeler-{did}', daemon=True)
        thread.start()
        threads.append(thread)
    return threads
