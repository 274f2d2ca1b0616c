"""A loopback relay that replays recorded frames over `com.atproto.sync.subscribeRepos`.

Owns a websocket server (the `websockets` asyncio server, run on its own event loop in a background
thread) that sends a fixed list of raw frames, as recorded in an ATFH capture, to every client that
connects: byte for byte, optionally paced, and noting when each seq went out so a benchmark can measure
frame-to-feed delay. It is test and benchmark tooling: it never decodes more of a frame than its `seq`,
never validates frames, and never listens anywhere but the host it is given (127.0.0.1 by default).

Every connection gets its own replay, produced by `CaptureRelay.frames_for(cursor)`: that generator is
the seam for fault injection. `FaultyRelay` uses it (and the connection itself) to misbehave on purpose, one
scripted `Fault` per connection: cut the connection mid-stream, stall, send an error frame, or restart with a
lower sequence, answering `FutureCursor` to a cursor beyond its sequence as a real relay does.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import libipld
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from feedgen.ingest.capture import read_capture

__all__ = ['SUBSCRIBE_REPOS_PATH', 'CaptureRelay', 'Fault', 'FaultyRelay', 'error_frame', 'frame_seq', 'serve_capture']

SUBSCRIBE_REPOS_PATH = '/xrpc/com.atproto.sync.subscribeRepos'

# Paced replays send whatever is due, then sleep at least this long: at 2,000 events/s that is bursts of
# about 10 frames, so pacing follows elapsed time instead of paying a sleep's overhead per frame.
_PACING_TICK = 0.005
# Unpaced replays yield to the event loop after this many frames, so stop() and other clients get a turn.
_UNPACED_BURST = 256
# How often `CaptureRelay.wait` wakes, so that a signal's handler runs.
_WAIT_TICK = 0.2

logger = logging.getLogger(__name__)


def frame_seq(message: bytes) -> int | None:
    """Returns the `seq` in the body of a raw `subscribeRepos` frame.

    Args:
        message: One websocket message: a DAG-CBOR header followed by a DAG-CBOR body.

    Returns:
        The body's `seq`, or None for frames without one (error frames).
    """
    _header, body = libipld.decode_dag_cbor_multi(message)
    seq = body.get('seq') if isinstance(body, dict) else None
    return seq if isinstance(seq, int) else None


class CaptureRelay:
    """Serves `frames` on `ws://host:port/xrpc/com.atproto.sync.subscribeRepos` until stopped.

    A client's `?cursor=N` gets only the frames whose seq is greater than N (frames without a seq are
    always sent, in their place). **Without a cursor a client gets every frame**: a real relay would
    start at the live tip instead, but replaying everything is what tests of a consumer want.

    Use it as a context manager, or call `start()` and `stop()`:

        with CaptureRelay(frames) as relay:
            consume(relay.subscribe_url)

    Attributes:
        frames: The raw frames, sent in this order.
        host: Interface to listen on.
        rate: Frames per second per connection, or None for as fast as the client reads.
        close_when_done: True: close each connection normally (code 1000) after its last frame.
            False: keep it open and idle, like a live firehose with nothing new, until the client
            leaves or the relay stops.
        hold: When given, each connection sends its first frame only once it is set (a benchmark measures from
            the moment the client is ready).
        connections: How many websocket connections have been accepted so far.
        sent_at: seq -> `time.monotonic()` just after the frame with that seq was first sent, on any
            connection. Written by the relay's thread; take a copy (`dict(relay.sent_at)`) to iterate.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        host: str = '127.0.0.1',
        port: int = 0,
        rate: float | None = None,
        close_when_done: bool = True,
        hold: threading.Event | None = None,
    ) -> None:
        """Prepares the relay; nothing listens until `start()`.

        Args:
            frames: Raw frames, e.g. `list(read_capture(path))`.
            host: Interface to listen on.
            port: TCP port; 0 picks a free one (read it back from `port`).
            rate: Frames per second per connection; None sends as fast as possible.
            close_when_done: Whether to close each connection after its last frame.
            hold: An event each connection waits for before its first frame (None: no wait).

        Raises:
            ValueError: If `rate` is not positive.
        """
        if rate is not None and rate <= 0:
            raise ValueError(f'rate must be positive, got {rate}')
        self.frames = frames
        self.host = host
        self.rate = rate
        self.close_when_done = close_when_done
        self.hold = hold
        self.connections = 0
        self.sent_at: dict[int, float] = {}
        self._seqs = [frame_seq(message) for message in frames]
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None

    @property
    def port(self) -> int:
        """The TCP port the relay listens on.

        Raises:
            RuntimeError: If the relay is not running.
        """
        if self._port is None:
            raise RuntimeError('relay is not running')
        return self._port

    @property
    def url(self) -> str:
        """Base websocket URL, `ws://host:port`, without any path.

        Append `SUBSCRIBE_REPOS_PATH` for the endpoint (that is `subscribe_url`); the atproto SDK's
        `FirehoseSubscribeReposClient(base_uri=...)` wants `f'{relay.url}/xrpc'`.
        """
        return f'ws://{self.host}:{self.port}'

    @property
    def subscribe_url(self) -> str:
        """Full endpoint URL, `ws://host:port/xrpc/com.atproto.sync.subscribeRepos`."""
        return self.url + SUBSCRIBE_REPOS_PATH

    def start(self) -> CaptureRelay:
        """Starts listening in a background thread and returns once the port is bound.

        Returns:
            The relay itself.

        Raises:
            RuntimeError: If the relay is already running.
            OSError: If the port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError('relay is already running')
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name='capture-relay', daemon=True)
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            error, self._startup_error = self._startup_error, None
            self._thread.join()
            self._thread = None
            raise error
        return self

    def stop(self) -> None:
        """Closes every connection (code 1001, going away) and the listening socket; idempotent."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None
        self._loop = None
        self._stopping = None
        self._port = None

    def wait(self) -> None:
        """Blocks until the relay stops (from another thread, or by a signal such as Ctrl-C).

        The wait wakes every `_WAIT_TICK` seconds: a signal that lands just before a blocking join would otherwise
        have its handler (Ctrl-C's `KeyboardInterrupt`) wait for the join to end, that is, for ever.
        """
        thread = self._thread
        while thread is not None and thread.is_alive():
            thread.join(_WAIT_TICK)

    def __enter__(self) -> CaptureRelay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def frames_for(self, cursor: int | None) -> Iterator[tuple[int | None, bytes]]:
        """Yields what one connection is sent, in order: the hook for fault injection.

        Args:
            cursor: The client's `cursor` query parameter, or None when it gave none.

        Yields:
            `(seq, message)` pairs; seq is None for frames without one. The connection's replay ends
            when the generator does.
        """
        for seq, message in zip(self._seqs, self.frames, strict=True):
            if cursor is None or seq is None or seq > cursor:
                yield seq, message

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as error:  # reported to start(), which re-raises it in the caller's thread
            if ready.is_set():
                raise
            self._startup_error = error
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve(
            self._handle,
            self.host,
            self._requested_port,
            process_request=self._check_request,
            compression=None,
            max_size=None,
        ) as server:
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            await self._stopping.wait()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != SUBSCRIBE_REPOS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f'no such endpoint: {url.path}\n')
        try:
            _cursor(request.path)
        except ValueError as error:
            return connection.respond(HTTPStatus.BAD_REQUEST, f'{error}\n')
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        await self._replay_and_end(connection, _cursor(connection.request.path) if connection.request else None)

    async def _replay_and_end(self, connection: ServerConnection, cursor: int | None) -> None:
        self.connections += 1
        try:
            while self.hold is not None and not self.hold.is_set():
                await asyncio.sleep(_PACING_TICK)
            await self._replay(connection, self.frames_for(cursor))
            if self.close_when_done:
                await connection.close()
            else:
                await connection.wait_closed()
        except ConnectionClosed:
            logger.debug('client left during replay')

    async def _replay(self, connection: ServerConnection, frames: Iterator[tuple[int | None, bytes]]) -> None:
        started = time.monotonic()
        for count, (seq, message) in enumerate(frames):
            if self.rate is not None:
                ahead = started + count / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(max(ahead, _PACING_TICK))
            elif count % _UNPACED_BURST == _UNPACED_BURST - 1:
                await asyncio.sleep(0)
            await connection.send(message)
            if seq is not None:
                self.sent_at.setdefault(seq, time.monotonic())


def error_frame(error: str, message: str = '') -> bytes:
    """An error frame (`op: -1`), e.g. `FutureCursor` or `ConsumerTooSlow`; a relay closes the stream after one."""
    return libipld.encode_dag_cbor({'op': -1}) + libipld.encode_dag_cbor({'error': error, 'message': message})


def with_seq(message: bytes, seq: int) -> bytes:
    """The frame `message` renumbered to `seq` (the rest of it unchanged)."""
    header, body = libipld.decode_dag_cbor_multi(message)
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body | {'seq': seq})


@dataclass(frozen=True)
class Fault:
    """How one connection to a `FaultyRelay` misbehaves.

    Attributes:
        kind: `drop`: the TCP connection is cut (no close frame); `stall`: the relay hangs (no more frames, no
            pongs to pings, no close) until the client gives up; `idle`: no more frames, but the connection stays
            alive (pings answered) until the client leaves; `error`: an error frame named `error`, then a normal
            close; `restart`: the relay lost its sequence (see `FaultyRelay`).
        after: Frames sent on the connection before a `drop`, `stall`, `idle` or `error`.
        error: The error frame's name, for `error`.
        honour_cursor: For `restart`: True answers the client's cursor from the new sequence (`FutureCursor`
            when it is beyond it, as a relay does); False ignores it and sends the new sequence from its start.
    """

    kind: Literal['drop', 'stall', 'idle', 'error', 'restart']
    after: int = 0
    error: str = 'ConsumerTooSlow'
    honour_cursor: bool = True


class FaultyRelay(CaptureRelay):
    """A `CaptureRelay` whose connections misbehave as scripted: the Nth connection gets `faults[N-1]`.

    Connections after the script behave. Like a real relay, any connection whose cursor is beyond the last seq
    gets a `FutureCursor` error frame and is closed. A `restart` fault makes the relay forget its sequence: the
    frames the client has not had yet (those after its cursor) become the relay's whole history, numbered from 1.

    Attributes:
        faults: The faults not yet played, in order.
        restarts: How many `restart` faults have been played.
    """

    def __init__(self, frames: Sequence[bytes], faults: Sequence[Fault] = (), **options: Any) -> None:
        """Prepares the relay; `options` are `CaptureRelay`'s (host, port, rate, close_when_done)."""
        super().__init__(frames, **options)
        self.faults = list(faults)
        self.restarts = 0

    async def _handle(self, connection: ServerConnection) -> None:
        cursor = _cursor(connection.request.path) if connection.request else None
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None and fault.kind == 'restart':
            self._restart(cursor)
            if not fault.honour_cursor:
                cursor = None
        last = max((seq for seq in self._seqs if seq is not None), default=0)
        try:
            if cursor is not None and cursor > last:
                self.connections += 1
                await connection.send(error_frame('FutureCursor', f'cursor {cursor} is beyond the last seq {last}'))
                await connection.close()
            elif fault is None or fault.kind == 'restart':
                await self._replay_and_end(connection, cursor)
            else:
                await self._misbehave(connection, cursor, fault)
        except ConnectionClosed:
            logger.debug('client left during a faulty replay')

    async def _misbehave(self, connection: ServerConnection, cursor: int | None, fault: Fault) -> None:
        self.connections += 1
        await self._replay(connection, itertools.islice(self.frames_for(cursor), fault.after))
        if fault.kind == 'drop':
            connection.transport.abort()
        elif fault.kind == 'stall':
            await self._hang(connection)
        elif fault.kind == 'idle':
            await connection.wait_closed()
        else:
            await connection.send(error_frame(fault.error, 'injected by FaultyRelay'))
            await connection.close()

    async def _hang(self, connection: ServerConnection) -> None:
        """Reads nothing more (so pings go unanswered) until the client connects again, then cuts the connection."""
        connection.transport.pause_reading()
        connections = self.connections
        while self.connections == connections and connection.state is not State.CLOSED:
            await asyncio.sleep(0.05)
        connection.transport.abort()

    def _restart(self, cursor: int | None) -> None:
        after = cursor or 0
        remaining = [message for seq, message in zip(self._seqs, self.frames, strict=True) if seq and seq > after]
        self.frames = [with_seq(message, seq) for seq, message in enumerate(remaining, start=1)]
        self._seqs = list(range(1, len(self.frames) + 1))
        self.restarts += 1


def _cursor(path: str) -> int | None:
    """Returns the integer `cursor` query parameter of a request path, or None when absent.

    Raises:
        ValueError: If the cursor is not a non-negative integer.
    """
    values = parse_qs(urlsplit(path).query).get('cursor')
    if not values:
        return None
    value = values[-1]
    if not value.isdigit():
        raise ValueError(f'cursor must be a non-negative integer, got {value!r}')
    return int(value)


def serve_capture(
    path: str | Path,
    host: str = '127.0.0.1',
    port: int = 0,
    rate: float | None = None,
    close_when_done: bool = False,
    on_ready: Callable[[CaptureRelay], None] | None = None,
) -> None:
    """Replays the ATFH capture at `path` to every client until interrupted (Ctrl-C).

    Args:
        path: An ATFH capture file.
        host: Interface to listen on.
        port: TCP port; 0 picks a free one (`on_ready` can report it).
        rate: Frames per second per connection; None sends as fast as possible.
        close_when_done: Whether to close each connection after its last frame.
        on_ready: Called with the running relay once it listens, e.g. to print `relay.subscribe_url`.
    """
    frames = list(read_capture(path))
    with CaptureRelay(frames, host=host, port=port, rate=rate, close_when_done=close_when_done) as relay:
        logger.info('replaying %d frames from %s at %s', len(frames), path, relay.subscribe_url)
        if on_ready is not None:
            on_ready(relay)
        try:
            relay.wait()
        except KeyboardInterrupt:
            logger.info('interrupted; stopping relay')
