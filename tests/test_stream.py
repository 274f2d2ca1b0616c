"""feedgen.ingest.websocket: the blocking websocket client the firehose reads with, against real websockets servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.sync.server import ServerConnection, serve
from websockets.utils import accept_key

from feedgen.ingest.capture import read_capture
from feedgen.ingest.relay import CaptureRelay
from feedgen.ingest.websocket import connect
from tests.conftest import CAPTURE_5


@contextmanager
def server(handler: Callable[[ServerConnection], None]) -> Iterator[str]:
    with serve(handler, '127.0.0.1', 0) as websocket_server:
        thread = threading.Thread(target=websocket_server.serve_forever, daemon=True)
        thread.start()
        yield f'ws://127.0.0.1:{websocket_server.socket.getsockname()[1]}/'
        websocket_server.shutdown()
        thread.join()


@contextmanager
def raw_server(after_response: bytes, then: Callable[[socket.socket], None] | None = None) -> Iterator[str]:
    """A server for one connection that accepts the upgrade and sends `after_response` in the same write.

    `then` runs next with the client's socket (reads time out after 5 s); the server then waits for the client's close.
    """
    listener = socket.create_server(('127.0.0.1', 0))

    def answer() -> None:
        client, _ = listener.accept()
        with client:
            client.settimeout(5)
            request = b''
            while b'\r\n\r\n' not in request:
                request += client.recv(4096)
            key = next(line.split(b':', 1)[1].strip() for line in request.split(b'\r\n')
                       if line.lower().startswith(b'sec-websocket-key:'))  # fmt: skip
            response = (b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                        b'Sec-WebSocket-Accept: ' + accept_key(key.decode()).encode() + b'\r\n\r\n')  # fmt: skip
            client.sendall(response + after_response)
            if then is not None:
                then(client)
            client.recv(4096)  # the client's close

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with listener:
        yield f'ws://127.0.0.1:{listener.getsockname()[1]}/'
    thread.join(5)


def test_every_frame_of_a_capture_arrives_byte_for_byte_then_the_close_is_normal() -> None:
    frames = list(read_capture(CAPTURE_5))
    with CaptureRelay(frames) as relay, connect(relay.subscribe_url, 2**20, 5, 2) as stream:
        received = [stream.recv(timeout=5) for _ in frames]
        with pytest.raises(ConnectionClosedOK):
            stream.recv(timeout=5)
    assert received == frames


def test_text_fragmented_and_binary_messages_are_whole() -> None:
    def handler(connection: ServerConnection) -> None:
        connection.send('héllo')
        connection.send([b'ab', b'cd', b'ef'])
        connection.send(b'\x00\x01')
        connection.close()

    with server(handler) as url, connect(url, 2**20, 5, 2) as stream:
        assert [stream.recv(5), stream.recv(5), stream.recv(5)] == ['héllo', b'abcdef', b'\x00\x01']


def test_an_idle_connection_times_out_and_still_delivers_later_messages() -> None:
    release = threading.Event()

    def handler(connection: ServerConnection) -> None:
        release.wait(10)
        connection.send(b'late')
        connection.recv()

    with server(handler) as url, connect(url, 2**20, 5, 2) as stream:
        with pytest.raises(TimeoutError):
            stream.recv(timeout=0.2)
        release.set()
        assert stream.recv(timeout=5) == b'late'


def test_a_message_over_the_size_limit_closes_the_connection_with_an_error() -> None:
    with (
        server(lambda connection: connection.send(b'x' * 2048)) as url,
        connect(url, 1024, 5, 2) as stream,
        pytest.raises(ConnectionClosedError),
    ):
        stream.recv(timeout=5)


def test_a_refused_upgrade_is_an_invalid_handshake() -> None:
    with CaptureRelay([]) as relay, pytest.raises(InvalidStatus), connect(relay.url + '/not/the/endpoint', 2**20, 5, 2):
        pass


def test_a_cut_connection_is_closed_with_an_error() -> None:
    def handler(connection: ServerConnection) -> None:
        connection.send(b'one')
        connection.socket.close()

    with server(handler) as url, connect(url, 2**20, 5, 2) as stream:
        assert stream.recv(timeout=5) == b'one'
        with pytest.raises(ConnectionClosedError):
            stream.recv(timeout=5)


def test_pings_are_answered_and_a_going_away_close_is_normal() -> None:
    answered = []

    def handler(connection: ServerConnection) -> None:
        answered.append(connection.ping(b'still there?').wait(5))
        connection.send(b'after the pong')
        connection.close(1001, 'restarting')

    with server(handler) as url, connect(url, 2**20, 5, 2) as stream:
        assert stream.recv(timeout=5) == b'after the pong'
        with pytest.raises(ConnectionClosedOK) as closed:
            stream.recv(timeout=5)
    assert answered == [True]
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, 'restarting')


def test_a_close_with_an_error_code_is_a_closed_error_carrying_it() -> None:
    with (
        server(lambda connection: connection.close(4000, 'consumer too slow')) as url,
        connect(url, 2**20, 5, 2) as stream,
        pytest.raises(ConnectionClosedError) as closed,
    ):
        stream.recv(timeout=5)
    assert closed.value.rcvd.code == 4000


def test_frames_sent_with_the_handshake_response_in_one_write_are_delivered() -> None:
    """The upgrade response and the first frames can arrive in one read: the frames must not be lost."""
    frames = [
        Frame(Opcode.BINARY, b'first'),
        Frame(Opcode.TEXT, b'second'),
        Frame(Opcode.BINARY, b'x' * 70_000),
    ]
    sent_with_response = b''.join(frame.serialize(mask=False) for frame in frames)
    with raw_server(sent_with_response) as url, connect(url, 2**20, 5, 2) as stream:
        assert [stream.recv(5), stream.recv(5), stream.recv(5)] == [b'first', 'second', b'x' * 70_000]


def test_a_ping_sent_with_the_handshake_response_is_answered_before_anything_is_read() -> None:
    """The server sends nothing more until the pong arrives, so the message after it proves the pong went first."""
    pongs = []

    def wait_for_the_pong(client: socket.socket) -> None:
        pongs.append(client.recv(4096))
        client.sendall(Frame(Opcode.BINARY, b'after the pong').serialize(mask=False))

    ping = Frame(Opcode.PING, b'there?').serialize(mask=False)
    with raw_server(ping, then=wait_for_the_pong) as url, connect(url, 2**20, 5, 2) as stream:
        assert stream.recv(5) == b'after the pong'
    head, length, mask, payload = pongs[0][0], pongs[0][1], pongs[0][2:6], pongs[0][6:]
    assert (head, length) == (0x80 | Opcode.PONG.value, 0x80 | len(b'there?'))
    assert bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)) == b'there?'
