"""Stream: a blocking websocket client that reads in the caller's thread, for the firehose's one long download.

Owns the socket of one websocket connection: connecting (TCP, TLS for `wss://`), the opening handshake, and
reading whole messages with a timeout. The opening handshake is the `websockets` library's Sans-I/O
`ClientProtocol`; everything after it (frames, pings, closing, the size limit) is `feedgen.ingest.framing`; this
module only moves bytes between them and the socket. Unlike `websockets.sync.client`, which reads on a background
thread and hands every message over through a lock and a condition, it reads in the caller's thread, with no
hand-off per message: at tens of thousands of small messages a second that hand-off is a large share of ingest's
CPU (docs/design.md, "Ingest"). It raises the exceptions `websockets.sync.client` raises (`ConnectionClosedOK`,
`ConnectionClosedError`, `InvalidHandshake`, `TimeoutError`, `OSError`) so callers treat both alike. It never
decodes messages. A caller that found no message in time asks `keep_alive` whether the server is quiet or dead:
a server silent for half the stall timeout is pinged, and one that sent nothing, not even the pong, for the whole
of it raises `Stalled` (Bluesky's own consumer, indigo's `HandleRepoStream`, pings every 30 s and gives a
connection a minute after each pong).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from feedgen.ingest.framing import Receiver

USER_AGENT = 'feedgen'
_READ_BYTES = 262_144


class Connection:
    """One open websocket connection; `recv` returns whole messages (`bytes`, or `str` for text messages).

    Attributes:
        heard_at: When bytes last came from the server (`time.monotonic()`): a message, a pong or any frame.
    """

    def __init__(self, sock: socket.socket, receiver: Receiver) -> None:
        self.sock = sock
        self.receiver = receiver
        self.heard_at = self._pinged_at = time.monotonic()

    def recv(self, timeout: float | None = None) -> bytes | str:
        """The next message, waiting at most `timeout` seconds.

        Raises:
            TimeoutError: no whole message arrived in time.
            ConnectionClosed: the connection is closed (`ConnectionClosedOK` after a normal close).
        """
        messages = self.receiver.messages
        if messages:
            return messages.popleft()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not messages:
            if self.receiver.state is State.CLOSED:
                raise self.receiver.close_exc
            if self.receiver.state is State.CLOSING:
                self._finish_closing(deadline)
                continue
            self._read(None if deadline is None else deadline - time.monotonic())
        return messages.popleft()

    def keep_alive(self, stall_seconds: float) -> None:
        """Pings a server silent for half of `stall_seconds` (once each half); its pong moves `heard_at`.

        Raises:
            Stalled: nothing came from the server, not even a pong, for `stall_seconds`.
        """
        now = time.monotonic()
        silent = now - self.heard_at
        if silent > stall_seconds:
            raise Stalled(stall_seconds)
        if silent >= stall_seconds / 2 and now - self._pinged_at >= stall_seconds / 2:
            self.receiver.send_ping()
            self._send()
            self._pinged_at = now

    def close(self, timeout: float) -> None:
        """Closes normally (code 1000), waiting up to `timeout` seconds for the relay's close, then the socket."""
        try:
            if self.receiver.state is State.OPEN:
                self.receiver.send_close()
                self._send()
            self._finish_closing(time.monotonic() + timeout)
        except OSError:
            pass
        finally:
            self.sock.close()

    def _read(self, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            raise TimeoutError('no message in time')
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(_READ_BYTES)
        except TimeoutError:
            raise
        except OSError as error:  # reset or cut: the connection is over, as websockets reports it
            self.receiver.receive_eof()
            raise self.receiver.close_exc from error
        if data:
            self.heard_at = time.monotonic()
            self.take(data)
        else:
            self.receiver.receive_eof()
            self._send()

    def take(self, data: bytes) -> None:
        """Hands bytes received from the server to the receiver and writes its replies (pongs, a close) at once."""
        self.receiver.receive_data(data)
        self._send()

    def _send(self) -> None:
        for data in self.receiver.data_to_send():
            self.sock.sendall(data)

    def _finish_closing(self, deadline: float | None) -> None:
        """Reads until the relay closes the TCP connection (or the deadline), so `close_exc` is known."""
        while self.receiver.state is not State.CLOSED:
            try:
                self._read(None if deadline is None else deadline - time.monotonic())
            except (TimeoutError, OSError, ConnectionClosed):
                self.receiver.receive_eof()


class Stalled(TimeoutError):
    """The server sent nothing, not even a pong to a keepalive ping, for the stall timeout: the connection is dead."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f'stalled (nothing for {seconds:g}s, not even a pong)')


@contextmanager
def connect(url: str, max_size: int, open_timeout: float, close_timeout: float) -> Iterator[Connection]:
    """Opens a websocket connection to `url` (`ws://` or `wss://`); closes it when the block ends.

    Raises:
        InvalidURI: `url` is not a websocket URL.
        InvalidHandshake: the server refused the upgrade (for example `InvalidStatus` for a 404).
        TimeoutError: connecting and the handshake took longer than `open_timeout`.
        OSError: the connection failed.
    """
    uri = parse_uri(url)
    deadline = time.monotonic() + open_timeout
    sock = socket.create_connection((uri.host, uri.port), timeout=open_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if uri.secure:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
        protocol = ClientProtocol(uri, max_size=max_size)
        request = protocol.connect()
        request.headers['User-Agent'] = USER_AGENT
        protocol.send_request(request)
        for data in protocol.data_to_send():
            sock.sendall(data)
        connection = Connection(sock, Receiver(max_size))
        connection.take(_handshake(sock, protocol, deadline))
    except BaseException:
        sock.close()
        raise
    try:
        yield connection
    finally:
        connection.close(close_timeout)


def _handshake(sock: socket.socket, protocol: ClientProtocol, deadline: float) -> bytes:
    """Reads the server's answer to the upgrade request into `protocol`; returns the bytes received after it.

    Only the response's head goes to `protocol` at first, so the frames that follow an accepted upgrade in the same
    read are left to `feedgen.ingest.framing`; a refusal's body goes to `protocol` too, so it can raise the refusal.
    """
    received = b''
    while (head_end := received.find(b'\r\n\r\n')) < 0:
        data = _recv(sock, deadline)
        if not data:
            _refused(sock, protocol, deadline, received)
        received += data
    protocol.receive_data(received[: head_end + 4])
    accepted = any(isinstance(event, Response) for event in protocol.events_received())
    if accepted and protocol.handshake_exc is None:
        return received[head_end + 4 :]
    _refused(sock, protocol, deadline, received[head_end + 4 :])


def _refused(sock: socket.socket, protocol: ClientProtocol, deadline: float, data: bytes) -> NoReturn:
    """Feeds `data` and the rest of a refused (or cut) upgrade to `protocol` until it raises why."""
    while protocol.handshake_exc is None:
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
            if protocol.handshake_exc is None:
                raise ConnectionError('connection closed during the websocket handshake')
        if protocol.handshake_exc is None:
            data = _recv(sock, deadline)
    raise protocol.handshake_exc


def _recv(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.0, deadline - time.monotonic()) or 1e-3)
    return sock.recv(_READ_BYTES)
