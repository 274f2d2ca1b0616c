"""Firehose: the websocket connection to a relay's `com.atproto.sync.subscribeRepos`.

Owns connecting with `?cursor=` (the indexer's saved cursor), reading messages into the ingest pipeline, noticing
stalls (nothing for `stall_seconds`, handshake included, not even the pong to a keepalive ping: a quiet source such
as a small PDS stays connected while it answers pings), and reconnecting with exponential backoff and full jitter
after any drop or error frame, logging each in one line. The backoff starts over only
once a connection delivers an event, so a relay that answers every connection with an error frame is retried
ever more slowly (up to `Backoff.cap`), never in a tight loop. A `FutureCursor` error frame means the relay's
sequence is behind the saved cursor (it was reset): the pipeline takes the relay's new sequence and the next
connection asks for none. During a history backfill (`feedgen.ingest.backfill`) a connection without a saved cursor
asks for the source's whole window (`cursor=0`); the backfill ends when the source goes quiet or closes the stream.
It never decodes frames or writes the store.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidURI

from feedgen.ingest.backfill import IDLE_SECONDS as BACKFILL_IDLE_SECONDS
from feedgen.ingest.events import ErrorFrame, Info
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.websocket import Stalled, connect

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a commit is capped well below this by relays


@dataclass
class Backoff:
    """Exponential backoff with full jitter: 0..min(cap, base * 2**attempt) seconds."""

    base: float = 0.5
    cap: float = 60.0
    attempt: int = 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class StreamEnded(Exception):
    """The relay closed the stream normally (used by `--once`)."""


class Firehose:
    """Subscribes to `url` and feeds every message to `pipeline` until `stop` is set."""

    text_messages = False
    """Whether text websocket messages are events (Jetstream's JSON) rather than skipped (a firehose's are CBOR)."""
    backfill_from_start = True
    """Whether a backfill asks for the source's whole window (`cursor=0`), so that its first event shows how far back
    the source holds, rather than for the events from the horizon on (Jetstream's time cursor)."""

    def __init__(
        self,
        url: str,
        pipeline: Pipeline,
        stop: threading.Event | None = None,
        stall_seconds: float = 60.0,
        backoff: Backoff | None = None,
        progress_seconds: float = 30.0,
    ) -> None:
        self.url = url
        self.pipeline = pipeline
        self.stop = stop or threading.Event()
        self.stall_seconds = stall_seconds
        self.backoff = backoff or Backoff()
        self.progress_seconds = progress_seconds
        self.connections = 0
        self._last_progress = time.monotonic()
        self._frames_at_progress = 0

    def connect_url(self) -> str:
        cursor = self.pipeline.indexer.cursor
        if cursor is None and self.pipeline.backfill is not None:
            cursor = 0
        return self.url if cursor is None else f'{self.url}?cursor={cursor}'

    def run(self, once: bool = False) -> None:
        """Consumes the firehose until `stop` is set (or, with `once`, until the relay ends the stream)."""
        while not self.stop.is_set():
            try:
                self._consume()
            except StreamEnded:
                if self.pipeline.backfill is not None:
                    self.pipeline.backfill.finish('the source closed the stream')
                self.pipeline.flush()
                if once:
                    log.info('relay closed the stream; cursor %s', self.pipeline.indexer.cursor)
                    return
                self._note('closed by relay')
            except RelayError as error:
                if error.frame.error == 'FutureCursor':
                    self.pipeline.restart_sequence(f'the relay answered FutureCursor to cursor {error.cursor}')
                self._note(str(error))
            except Stalled as error:
                self._note(str(error))
            except ConnectionClosed as error:
                self._note(f'connection dropped ({error})')
            except (OSError, InvalidHandshake, TimeoutError) as error:
                self._note(f'cannot connect ({type(error).__name__}: {error})')
            except InvalidURI as error:
                raise ValueError(f'invalid firehose URL {self.url}: {error}') from None
        self.pipeline.flush()

    def _note(self, what: str) -> None:
        """Logs why the stream ended in one line, counts it, and waits out the backoff (unless stopping)."""
        self.pipeline.flush()
        kind = what.split(' (', 1)[0]
        self.pipeline.stats.reconnects[kind] += 1
        delay = self.backoff.next_delay()
        log.warning(
            'firehose %s: %s; cursor %s; reconnecting in %.1fs (attempt %d)',
            self.url,
            what,
            self.pipeline.indexer.cursor,
            delay,
            self.backoff.attempt,
        )
        self.stop.wait(delay)

    def _consume(self) -> None:
        url = self.connect_url()
        with connect(url, max_size=MAX_MESSAGE_BYTES, open_timeout=self.stall_seconds, close_timeout=2) as socket:
            self.connections += 1
            self.pipeline.connected(from_start=self.backfill_from_start)
            log.info('connected to %s', url)
            last_message = time.monotonic()
            while not self.stop.is_set():
                try:
                    message = socket.recv(timeout=self.pipeline.batch_seconds)
                except TimeoutError:
                    now = time.monotonic()
                    backfill = self.pipeline.backfill
                    if backfill is not None and now - last_message >= BACKFILL_IDLE_SECONDS:
                        backfill.finish(f'the source sent nothing for {BACKFILL_IDLE_SECONDS:g} s')
                    if self.pipeline.due():
                        self.pipeline.flush()
                    socket.keep_alive(self.stall_seconds)
                    continue
                except ConnectionClosedOK:
                    raise StreamEnded from None
                last_message = time.monotonic()
                if isinstance(message, str) and not self.text_messages:
                    self.pipeline.stats.skipped['text_message'] += 1
                    continue
                notice = self.pipeline.feed(message)
                if isinstance(notice, ErrorFrame):
                    raise RelayError(notice, self.pipeline.indexer.cursor)
                if isinstance(notice, Info):
                    if notice.name == 'OutdatedCursor' and self.pipeline.backfill is not None:
                        self.pipeline.backfill.holds_less(f'it answered OutdatedCursor: {notice.message}')
                    else:
                        log.warning('relay info %s: %s', notice.name, notice.message)
                else:
                    self.backoff.reset()
                if self.pipeline.due():
                    self.pipeline.flush()
                self._progress()

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < self.progress_seconds:
            return
        stats = self.pipeline.stats
        rate = (stats.frames - self._frames_at_progress) / (now - self._last_progress)
        log.info(
            'ingest: %.0f frames/s, %d frames, cursor %s, last event %s, skipped %s',
            rate,
            stats.frames,
            self.pipeline.indexer.cursor,
            stats.last_event_time,
            dict(stats.skipped),
        )
        self._last_progress, self._frames_at_progress = now, stats.frames


class RelayError(ConnectionError):
    """The relay sent an error frame; the stream is over and ingest reconnects."""

    def __init__(self, frame: ErrorFrame, cursor: int | None) -> None:
        super().__init__(f'error frame ({frame.error}: {frame.message})')
        self.frame = frame
        self.cursor = cursor
        """The cursor the connection had asked for."""
