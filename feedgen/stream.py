"""Stream: a blocking websocket client that reads in the caller's thread, for the firehose's one long download.

Owns the socket of one websocket connection: connecting (TCP, TLS for `wss://`), the opening handshake, and
reading whole messages with a timeout. The protocol itself (handshake, framing, masking, closing, answering
pings, the size limit) is the `websockets` library's Sans-I/O `ClientProtocol`; this module only moves bytes
between it and the socket. Unlike `websockets.sync.client`, which reads on a background thread and hands every
message over through a lock and a condition, it does no hand-off per message: at tens of thousands of small
messages a second that hand-off, and the GIL contention with the thread decoding them, cost about a quarter of
ingest's CPU (bench/ingest). It raises the exceptions `websockets.sync.client` raises (`ConnectionClosedOK`,
`ConnectionClosedError`, `InvalidHandshake`, `TimeoutError`, `OSError`) so callers treat both alike. It never
decodes messages and sends no keepalive pings (the firehose notices a dead connection by its silence).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

USER_AGENT = 'feedgen'
_READ_BYTES = 262_144


class Connection:
    """One open websocket connection; `recv` returns whole messages (`bytes`, or `str` for text messages)."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol
        self._messages: deque[bytes | str] = deque()
        self._fragments: list[bytes] = []
        self._text = False

    def recv(self, timeout: float | None = None) -> bytes | str:
        """The next message, waiting at most `timeout` seconds.

        Raises:
            TimeoutError: no whole message arrived in time.
            ConnectionClosed: the connection is closed (`ConnectionClosedOK` after a normal close).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages:
            if self.protocol.state is State.CLOSED:
                raise self.protocol.close_exc
            if self.protocol.state is State.CLOSING:
                self._finish_closing(deadline)
                continue
            self._read(None if deadline is None else deadline - time.monotonic())
        return self._messages.popleft()

    def close(self, timeout: float) -> None:
        """Closes normally (code 1000), waiting up to `timeout` seconds for the relay's close, then the socket."""
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
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
            if self.protocol.state is not State.CLOSED:
                self.protocol.receive_eof()
            raise self.protocol.close_exc from error
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Frame):
                self._take(event)
        self._send()

    def _take(self, frame: Frame) -> None:
        if frame.opcode is Opcode.TEXT or frame.opcode is Opcode.BINARY:
            self._text = frame.opcode is Opcode.TEXT
            self._fragments = [frame.data]
        elif frame.opcode is Opcode.CONT:
            self._fragments.append(frame.data)
        else:
            return
        if frame.fin:
            data = b''.join(self._fragments) if len(self._fragments) > 1 else bytes(self._fragments[0])
            self._messages.append(data.decode() if self._text else data)
            self._fragments = []

    def _send(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)
            elif self.protocol.close_expected():
                self.sock.shutdown(socket.SHUT_WR)

    def _finish_closing(self, deadline: float | None) -> None:
        """Reads until the relay closes the TCP connection (or the deadline), so `close_exc` is known."""
        while self.protocol.state is not State.CLOSED:
            try:
                self._read(None if deadline is None else deadline - time.monotonic())
            except (TimeoutError, OSError, ConnectionClosed):
                if self.protocol.state is not State.CLOSED:
                    self.protocol.receive_eof()


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
        connection = Connection(sock, protocol)
        connection._send()
        _handshake(connection, deadline)
    except BaseException:
        sock.close()
        raise
    try:
        yield connection
    finally:
        connection.close(close_timeout)


def _handshake(connection: Connection, deadline: float) -> None:
    protocol = connection.protocol
    while True:
        connection.sock.settimeout(max(0.0, deadline - time.monotonic()) or 1e-3)
        data = connection.sock.recv(_READ_BYTES)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        events = protocol.events_received()
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        if any(isinstance(event, Response) for event in events):
            for event in events:
                if isinstance(event, Frame):
                    connection._take(event)
            return
        if not data:
            raise ConnectionError('connection closed during the websocket handshake')
