"""feedgen.ingest.framing: the lean frame reader behaves exactly as `websockets`' own client protocol on the same bytes.

The reference is `websockets.client.ClientProtocol` in the OPEN state, with messages reassembled from its frames
as the stream module did before (`b''.join` of the fragments, text decoded). Frame sequences are drawn by
hypothesis (whole and fragmented messages, pings, pongs, closes, with faults injected: reserved bits, masking,
bad opcodes, oversized or fragmented control frames, stray continuations, bad close payloads, a size limit,
non-minimal length encodings, a stream cut short) and fed to both in the same arbitrary chunks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, ProtocolError
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.uri import parse_uri

from feedgen.ingest.framing import Receiver

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass(frozen=True)
class Raw:
    """One frame as sent on the wire by a (possibly misbehaving) server."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    """Reserved bits, already shifted into the first byte (0x10, 0x20, 0x40)."""
    length_bytes: int = 0
    """0: the shortest length encoding; 2 or 8: that extended length, even when shorter would do."""
    mask: bytes | None = None

    def encode(self) -> bytes:
        head = bytes([(0x80 if self.fin else 0) | self.rsv | self.opcode])
        masked = 0x80 if self.mask is not None else 0
        size = len(self.payload)
        length_bytes = self.length_bytes or (0 if size < 126 else 2 if size < 65536 else 8)
        if length_bytes == 0:
            head += bytes([masked | size])
        elif length_bytes == 2:
            head += bytes([masked | 126]) + struct.pack('!H', size)
        else:
            head += bytes([masked | 127]) + struct.pack('!Q', size)
        if self.mask is None:
            return head + self.payload
        return head + self.mask + bytes(byte ^ self.mask[i % 4] for i, byte in enumerate(self.payload))


def close_payload(code: int, reason: bytes = b'') -> bytes:
    return struct.pack('!H', code) + reason


@dataclass
class Outcome:
    """What a reader produced after each chunk, and how the connection ended."""

    steps: list[tuple[list[bytes | str], list[tuple[int, bytes, bool]], str]]
    """Per chunk: the messages completed, the frames sent back (unmasked), the state's name."""
    ended: tuple


def sent_frames(writes: list[bytes]) -> list[tuple[int, bytes, bool]]:
    """The frames a client wrote, unmasked (by a server-side `websockets` protocol): opcode, payload, fin."""
    server = Protocol(Side.SERVER, max_size=None)
    server.receive_data(b''.join(writes))
    assert server.parser_exc is None, 'the client sent a frame a server rejects (unmasked?)'
    return [(int(frame.opcode), bytes(frame.data), frame.fin) for frame in server.events_received()]


def ending(closed: ConnectionClosed) -> tuple:
    def code(close: object) -> tuple | None:
        return None if close is None else (close.code, close.reason)

    cause = closed.__cause__
    why = None if cause is None else (type(cause).__name__, None if isinstance(cause, EOFError) else str(cause))
    return type(closed).__name__, code(closed.rcvd), code(closed.sent), closed.rcvd_then_sent, why


def run_websockets(chunks: list[bytes], max_size: int | None) -> Outcome:
    """`websockets`' client protocol, fed one byte at a time so each message is taken as soon as it is whole.

    A text message that is not UTF-8 fails the connection with 1007 when it is taken, as `websockets`' own clients
    do; taking each message at once makes that happen before any later frame is read, as in `feedgen.ingest.framing`.
    """
    protocol = ClientProtocol(parse_uri('ws://relay.invalid/'), state=State.OPEN, max_size=max_size)
    fragments: list[bytes] = []
    text = False
    decode_error = None
    steps = []
    for chunk in chunks:
        messages: list[bytes | str] = []
        for byte in range(len(chunk)):
            protocol.receive_data(chunk[byte : byte + 1])
            for frame in protocol.events_received():
                if frame.opcode is Opcode.CONT:
                    fragments.append(frame.data)
                elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    text, fragments = frame.opcode is Opcode.TEXT, [frame.data]
                if frame.fin and frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    try:
                        messages.append(b''.join(fragments).decode() if text else b''.join(fragments))
                    except UnicodeDecodeError as error:
                        protocol.fail(CloseCode.INVALID_DATA, f'{error.reason} at position {error.start}')
                        decode_error = error
        writes = [data for data in protocol.data_to_send() if data]
        steps.append((messages, sent_frames(writes), protocol.state.name))
    protocol.receive_eof()
    closed = protocol.close_exc
    closed.__cause__ = decode_error or closed.__cause__
    return Outcome(steps, ending(closed))


def run_feedgen(chunks: list[bytes], max_size: int | None) -> Outcome:
    receiver = Receiver(max_size)
    steps = []
    for chunk in chunks:
        receiver.receive_data(chunk)
        messages = list(receiver.messages)
        receiver.messages.clear()
        steps.append((messages, sent_frames(receiver.data_to_send()), receiver.state.name))
    receiver.receive_eof()
    assert receiver.state is State.CLOSED
    assert receiver.data_to_send() == []
    return Outcome(steps, ending(receiver.close_exc))


payloads = st.binary(max_size=300)
control_payloads = st.binary(max_size=125)
close_payloads = st.one_of(
    st.just(b''),
    st.binary(min_size=1, max_size=1),
    st.builds(
        close_payload,
        st.sampled_from([1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1015, 2999, 3000, 4999, 5000]),
        st.sampled_from([b'', b'bye', 'é'.encode(), b'\xff\xfe']),
    ),
)


@st.composite
def message_frames(draw: st.DrawFn) -> list[Raw]:
    """A message: one frame, or fragments (a text message's UTF-8 split anywhere), maybe with a ping or pong between."""
    if draw(st.booleans()):
        opcode, data = TEXT, draw(st.text(max_size=100)).encode()
    else:
        opcode, data = BINARY, draw(payloads)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    frames = [Raw(opcode if i == 0 else CONT, piece, fin=i == len(pieces) - 1) for i, piece in enumerate(pieces)]
    if len(frames) > 1 and draw(st.booleans()):
        frames.insert(draw(st.integers(1, len(frames) - 1)), draw(pings()))
    return frames


def pings() -> st.SearchStrategy[Raw]:
    return st.builds(Raw, st.sampled_from([PING, PONG]), control_payloads)


def closes() -> st.SearchStrategy[Raw]:
    return st.builds(Raw, st.just(CLOSE), close_payloads)


FAULTS = ['rsv', 'mask', 'opcode', 'long_control', 'fragmented_control', 'no_fin', 'stray_cont', 'length']


def inject(frame: Raw, fault: str, opcode: int, length_bytes: int) -> Raw:
    """`frame` with one fault (or, for `length`, a legal but non-minimal length encoding)."""
    if fault == 'rsv':
        return replace(frame, rsv=0x40)
    if fault == 'mask':
        return replace(frame, mask=b'\x01\x02\x03\x04')
    if fault == 'opcode':
        return replace(frame, opcode=opcode)
    if fault == 'long_control':
        return Raw(PING, b'p' * 126)
    if fault == 'fragmented_control':
        return Raw(PING, frame.payload[:125], fin=False)
    if fault == 'no_fin':
        return replace(frame, fin=False)
    if fault == 'stray_cont':
        return replace(frame, opcode=CONT)
    return replace(frame, length_bytes=length_bytes)


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """The bytes a server sends after the handshake, and the client's message size limit."""
    groups = draw(st.lists(st.one_of(message_frames(), pings().map(lambda frame: [frame])), max_size=8))
    frames = [frame for group in groups for frame in group]
    if draw(st.booleans()):
        frames.insert(draw(st.integers(len(frames) // 2, len(frames))), draw(closes()))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if frames:
            index = draw(st.integers(0, len(frames) - 1))
            fault = draw(st.sampled_from(FAULTS))
            opcode = draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))
            frames[index] = inject(frames[index], fault, opcode, draw(st.sampled_from([2, 8])))
    data = b''.join(frame.encode() for frame in frames)
    if data and draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data) - 1))]
    max_size = draw(st.sampled_from([None, None, 2**20, 64, 200]))
    return data, max_size


@st.composite
def chunked(draw: st.DrawFn) -> tuple[list[bytes], int | None]:
    data, max_size = draw(streams())
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return [data[start:end] for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True)], max_size


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_the_same_messages_replies_and_ending_as_websockets(case: tuple[list[bytes], int | None]) -> None:
    chunks, max_size = case
    assert run_feedgen(chunks, max_size) == run_websockets(chunks, max_size)


@pytest.mark.parametrize('size', [0, 125, 126, 65535, 65536, 300_000])
@pytest.mark.parametrize('chunk', [1, 7, 4096, 1 << 20])
def test_every_length_encoding_at_any_read_size(size: int, chunk: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = Raw(BINARY, payload).encode() + Raw(TEXT, b'after').encode()
    if chunk == 1 and size > 1000:
        chunk = 997
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    outcome = run_feedgen(chunks, None)
    assert [message for messages, _, _ in outcome.steps for message in messages] == [payload, 'after']
    assert outcome == run_websockets(chunks, None)


def test_a_ping_is_answered_with_a_masked_pong_carrying_its_payload() -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(PING, b'are you there').encode())
    (written,) = receiver.data_to_send()
    assert written[1] & 0x80, 'a client must mask what it sends'
    assert sent_frames([written]) == [(PONG, b'are you there', True)]
    assert receiver.state is State.OPEN and not receiver.messages


def test_a_server_close_is_echoed_then_the_end_of_stream_is_a_normal_close() -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(BINARY, b'last').encode() + Raw(CLOSE, close_payload(1000, b'bye')).encode())
    assert list(receiver.messages) == [b'last']
    assert sent_frames(receiver.data_to_send()) == [(CLOSE, close_payload(1000, b'bye'), True)]
    assert receiver.state is State.CLOSING
    receiver.receive_data(Raw(BINARY, b'ignored after the close').encode())
    receiver.receive_eof()
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedOK)
    assert (closed.rcvd.code, closed.rcvd.reason, closed.sent.code, closed.rcvd_then_sent) == (1000, 'bye', 1000, True)
    assert list(receiver.messages) == [b'last']


def test_a_client_close_answered_by_the_server_is_normal() -> None:
    receiver = Receiver(None)
    receiver.send_close()
    assert sent_frames(receiver.data_to_send()) == [(CLOSE, close_payload(1000), True)]
    receiver.receive_data(Raw(CLOSE, close_payload(1000)).encode())
    assert receiver.data_to_send() == [], 'a close already sent is not sent again'
    receiver.receive_eof()
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedOK) and closed.rcvd_then_sent is False


def test_a_close_with_an_application_code_ends_with_an_error_carrying_it() -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(CLOSE, close_payload(4000, b'consumer too slow')).encode())
    receiver.receive_eof()
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedError)
    assert (closed.rcvd.code, closed.rcvd.reason) == (4000, 'consumer too slow')


@pytest.mark.parametrize(
    ('frame', 'reason'),
    [
        (Raw(BINARY, b'x', mask=b'abcd'), 'incorrect masking'),
        (Raw(BINARY, b'x', rsv=0x20), 'reserved bits must be 0'),
        (Raw(5, b'x'), 'invalid opcode'),
        (Raw(PING, b'x' * 126), 'control frame too long'),
        (Raw(PONG, b'x', fin=False), 'fragmented control frame'),
        (Raw(CONT, b'x'), 'unexpected continuation frame'),
        (Raw(CLOSE, b'\x03'), 'close frame too short'),
        (Raw(CLOSE, close_payload(1004)), 'invalid status code'),
    ],
)
def test_a_protocol_error_fails_the_connection_with_1002(frame: Raw, reason: str) -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(BINARY, b'before').encode() + frame.encode() + Raw(BINARY, b'never').encode())
    assert list(receiver.messages) == [b'before']
    assert sent_frames(receiver.data_to_send()) == [(CLOSE, close_payload(1002, reason.encode()), True)]
    receiver.receive_eof()
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedError) and closed.sent.code == 1002
    assert isinstance(closed.__cause__, ProtocolError) and str(closed.__cause__) == reason


def test_a_message_over_the_limit_fails_with_1009_as_soon_as_its_length_is_known() -> None:
    receiver = Receiver(100)
    receiver.receive_data(Raw(BINARY, b'a' * 60, fin=False).encode() + Raw(CONT, b'b' * 50).encode()[:2])
    (written,) = receiver.data_to_send()
    assert sent_frames([written])[0][:1] == (CLOSE,)
    assert sent_frames([written])[0][1][:2] == close_payload(1009)
    receiver.receive_eof()
    assert receiver.close_exc.sent.code == 1009


def test_invalid_utf8_in_a_text_message_fails_with_1007() -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(TEXT, b'\xff', fin=False).encode() + Raw(CONT, b'ok').encode())
    assert not receiver.messages
    assert receiver.state is State.CLOSING
    receiver.receive_eof()
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedError) and closed.sent.code == 1007


def test_a_stream_cut_mid_frame_is_an_abnormal_close_without_a_close_frame() -> None:
    receiver = Receiver(None)
    receiver.receive_data(Raw(BINARY, b'whole').encode() + Raw(BINARY, b'cut short').encode()[:5])
    receiver.receive_eof()
    assert list(receiver.messages) == [b'whole']
    assert receiver.data_to_send() == []
    closed = receiver.close_exc
    assert isinstance(closed, ConnectionClosedError) and closed.rcvd is None and closed.sent is None
    assert ending(closed) == run_websockets([Raw(BINARY, b'cut short').encode()[:5]], None).ended


def test_the_reference_frames_are_what_websockets_itself_sends() -> None:
    """The test's own frame encoder agrees with websockets' for legal frames, so the fuzzing above speaks RFC 6455."""
    for frame in [Raw(BINARY, b'x' * 70_000), Raw(TEXT, 'é'.encode()), Raw(PING, b''), Raw(CONT, b'abc', fin=False)]:
        assert frame.encode() == Frame(Opcode(frame.opcode), frame.payload, frame.fin).serialize(mask=False)
