"""Framing: the client side of an open websocket connection, turning the server's bytes into whole messages.

Owns everything RFC 6455 asks of a client after the opening handshake, without extensions: splitting what
the server sends into frames (7, 16 and 64-bit lengths), reassembling fragmented messages, decoding text
messages, answering pings with pongs, sending pings, the closing handshake, the message size limit, and failing the
connection on a protocol error (a masked frame from the server, reserved bits, a bad opcode, a control frame
over 125 bytes or fragmented, a continuation out of place). It is Sans-I/O: bytes go in, messages and the
bytes to send back come out; it never touches a socket (`feedgen.ingest.websocket` does) and never decodes a message's
content. The opening handshake stays `websockets`' (`ClientProtocol`), and so do the close codes, the frames
this side sends (`Frame.serialize`, masked as a client's must be), the close payloads (`Close`) and the
exceptions: a connection ends with `ConnectionClosedOK` or `ConnectionClosedError` exactly when, and with
the codes with which, `websockets`' own `Protocol` would end it (tests/test_framing.py checks both on arbitrary
frame sequences split at arbitrary byte boundaries).

It exists because a relay sends tens of thousands of small unmasked binary frames a second, and `websockets`'
generic reading of frames is a large share of ingest's time (docs/design.md, "Ingest"): here a whole binary frame
is two byte reads, a length and a slice, and only the rare frames (fragments, text, control frames) take a slower
path.
"""

from __future__ import annotations

import struct
from collections import deque

from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    PayloadTooBig,
    ProtocolError,
)
from websockets.frames import OK_CLOSE_CODES, Close, CloseCode, Frame, Opcode
from websockets.protocol import State

_CONT, _TEXT, _BINARY = Opcode.CONT.value, Opcode.TEXT.value, Opcode.BINARY.value
_CLOSE, _PING = Opcode.CLOSE.value, Opcode.PING.value
_OPCODES = frozenset(opcode.value for opcode in Opcode)
_LENGTH_16 = struct.Struct('!H')
_LENGTH_64 = struct.Struct('!Q')
_MAX_CONTROL_PAYLOAD = 125


class Receiver:
    """The receiving side of one open client connection: feed it the server's bytes, take `messages`.

    Attributes:
        messages: Whole messages received and not yet taken, oldest first (`bytes`, or `str` for text).
        state: `State.OPEN`, `State.CLOSING` once a close frame was sent (then frames are no longer read), or
            `State.CLOSED` once the server's end of the stream was received.
        max_size: The largest message accepted, in bytes (None: no limit); a larger one fails the connection
            with code 1009.
    """

    def __init__(self, max_size: int | None) -> None:
        self.max_size = max_size
        self.messages: deque[bytes | str] = deque()
        self.state = State.OPEN
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.parser_exc: Exception | None = None
        """Why the connection failed, if it did (the cause of `close_exc`)."""
        self._buffer = b''
        self._discarding = False
        self._fragments: list[bytes] = []
        self._fragments_size: int | None = None
        """The size so far of the fragmented message being received, None between messages."""
        self._text = False
        self._writes: list[bytes] = []

    def receive_data(self, data: bytes) -> None:
        """Takes bytes received from the server: whole messages go to `messages`, replies to `data_to_send()`."""
        if self._discarding:
            return
        buffer = self._buffer + data if self._buffer else data
        try:
            self._buffer = buffer[self._parse(buffer) :]
        except ProtocolError as error:
            self._fail(CloseCode.PROTOCOL_ERROR, str(error), error)
        except PayloadTooBig as error:
            self._fail(CloseCode.MESSAGE_TOO_BIG, str(error), error)
        except UnicodeDecodeError as error:
            self._fail(CloseCode.INVALID_DATA, f'{error.reason} at position {error.start}', error)

    def receive_eof(self) -> None:
        """Takes the end of the server's stream: the connection is closed (abnormally unless it was closing)."""
        if self.state is State.CLOSED:
            return
        if not self._discarding:
            self._fail(CloseCode.ABNORMAL_CLOSURE, 'unexpected end of stream', EOFError('unexpected end of stream'))
        self.state = State.CLOSED

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE) -> None:
        """Starts the closing handshake: a close frame with `code` goes to `data_to_send()`."""
        if self.state is not State.OPEN:
            raise InvalidState(f'connection is {self.state.name.lower()}')
        self._send_close(Close(code, ''), Close(code, '').serialize())

    def send_ping(self, payload: bytes = b'') -> None:
        """Asks the server for a pong (a keepalive): a ping frame goes to `data_to_send()`."""
        if self.state is State.OPEN:
            self._writes.append(Frame(Opcode.PING, payload).serialize(mask=True))

    def data_to_send(self) -> list[bytes]:
        """The frames to write to the server since the last call (pings, pongs and close frames), in order."""
        writes, self._writes = self._writes, []
        return writes

    @property
    def close_exc(self) -> ConnectionClosed:
        """Once CLOSED: `ConnectionClosedOK` after a normal closing handshake, else `ConnectionClosedError`."""
        if self.state is not State.CLOSED:
            raise AssertionError('the connection is not closed yet')
        rcvd, sent = self.close_rcvd, self.close_sent
        normal = rcvd is not None and sent is not None and rcvd.code in OK_CLOSE_CODES and sent.code in OK_CLOSE_CODES
        closed = (ConnectionClosedOK if normal else ConnectionClosedError)(rcvd, sent, self.close_rcvd_then_sent)
        closed.__cause__ = self.parser_exc
        return closed

    def _parse(self, data: bytes) -> int:
        """Takes every whole frame at the start of `data`; returns where the first incomplete one starts."""
        position, end = 0, len(data)
        messages = self.messages
        while end - position >= 2 and not self._discarding:
            head, length = data[position], data[position + 1]
            opcode = head & 0x0F
            if opcode not in _OPCODES:
                raise ProtocolError('invalid opcode')
            if length & 0x80:
                raise ProtocolError('incorrect masking')
            start = position + 2
            if length == 126:
                if end - start < 2:
                    break
                (length,) = _LENGTH_16.unpack_from(data, start)
                start += 2
            elif length == 127:
                if end - start < 8:
                    break
                (length,) = _LENGTH_64.unpack_from(data, start)
                start += 8
            if self.max_size is not None:
                self._check_size(length, self.max_size)
            stop = start + length
            if stop > end:
                break
            position = stop
            if head == 0x82 and self._fragments_size is None:  # the relay's usual frame: whole, binary, no flags
                messages.append(data[start:stop])
            else:
                self._frame(head, opcode, data[start:stop])
        return position

    def _check_size(self, length: int, max_size: int) -> None:
        room = max_size if self._fragments_size is None else max_size - self._fragments_size
        if length > room:
            raise PayloadTooBig(length, room, self._fragments_size)

    def _frame(self, head: int, opcode: int, payload: bytes) -> None:
        """Any frame but a whole binary message outside a fragmented one."""
        if head & 0x70:
            raise ProtocolError('reserved bits must be 0')
        fin = head & 0x80
        if opcode >= _CLOSE:
            if len(payload) > _MAX_CONTROL_PAYLOAD:
                raise ProtocolError('control frame too long')
            if not fin:
                raise ProtocolError('fragmented control frame')
            if opcode == _PING:
                self._writes.append(Frame(Opcode.PONG, payload).serialize(mask=True))
            elif opcode == _CLOSE:
                self._receive_close(payload)
            return
        if opcode == _CONT:
            if self._fragments_size is None:
                raise ProtocolError('unexpected continuation frame')
            self._fragments.append(payload)
            self._fragments_size += len(payload)
        else:
            if self._fragments_size is not None:
                raise ProtocolError('expected a continuation frame')
            self._text = opcode == _TEXT
            self._fragments, self._fragments_size = [payload], len(payload)
        if fin:
            message = b''.join(self._fragments)
            self._fragments, self._fragments_size = [], None
            self.messages.append(message.decode() if self._text else message)

    def _receive_close(self, payload: bytes) -> None:
        self.close_rcvd = Close.parse(payload)
        if self.state is State.CLOSING:
            self.close_rcvd_then_sent = False
        if self._fragments_size is not None:
            raise ProtocolError('incomplete fragmented message')
        if self.state is State.OPEN:  # echo the payload, as websockets does (an empty one has no code to echo)
            self._send_close(self.close_rcvd, payload)
            self.close_rcvd_then_sent = True
        self._discarding = True

    def _send_close(self, close: Close, payload: bytes) -> None:
        self._writes.append(Frame(Opcode.CLOSE, payload).serialize(mask=True))
        self.close_sent = close
        self.state = State.CLOSING

    def _fail(self, code: int, reason: str, error: Exception) -> None:
        """Fails the connection: a close frame with `code` (none for 1006), then every later byte is ignored."""
        if self.state is State.OPEN and code != CloseCode.ABNORMAL_CLOSURE:
            close = Close(code, reason)
            self._send_close(close, close.serialize())
            if self.close_rcvd is not None:
                self.close_rcvd_then_sent = True
        self.parser_exc = error
        self._discarding = True
        self._buffer = b''
