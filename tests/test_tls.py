"""The firehose's websocket client over `wss://`, against real TLS servers on loopback.

Production relays are `wss://`; these tests run the client's own code path (`ssl.create_default_context()`, so the
system's trust store, which `SSL_CERT_FILE` points at a test CA here) against servers whose certificates `trustme`
issues: verification on, a wrong hostname refused, frames split across TLS records, the 8 MiB message limit.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import trustme
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode
from websockets.sync.server import ServerConnection, serve
from websockets.utils import accept_key

from feedgen.ingest.firehose import MAX_MESSAGE_BYTES
from feedgen.ingest.websocket import connect


@pytest.fixture(scope='module')
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the test CA, as a machine whose trust store holds it would (and nothing else)."""
    bundle = tmp_path / 'ca.pem'
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv('SSL_CERT_FILE', str(bundle))
    monkeypatch.delenv('SSL_CERT_DIR', raising=False)


def _server_context(ca: trustme.CA, hostname: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(context)
    return context


@contextmanager
def tls_server(context: ssl.SSLContext, handler: Callable[[ServerConnection], None]) -> Iterator[int]:
    """A `websockets` server over TLS on loopback; yields its port."""
    with serve(handler, '127.0.0.1', 0, ssl=context, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.socket.getsockname()[1]
        finally:
            server.shutdown()
            thread.join(5)


@contextmanager
def raw_tls_server(context: ssl.SSLContext, pieces: list[bytes]) -> Iterator[int]:
    """A TLS server for one connection that accepts the upgrade, then writes `pieces` one TLS record each."""
    listener = socket.create_server(('127.0.0.1', 0))

    def answer() -> None:
        client, _ = listener.accept()
        with context.wrap_socket(client, server_side=True) as tls:
            tls.settimeout(5)
            request = b''
            while b'\r\n\r\n' not in request:
                request += tls.recv(4096)
            key = next(line.split(b':', 1)[1].strip() for line in request.split(b'\r\n')
                       if line.lower().startswith(b'sec-websocket-key:'))  # fmt: skip
            tls.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n'
                        b'Sec-WebSocket-Accept: ' + accept_key(key.decode()).encode() + b'\r\n\r\n')  # fmt: skip
            for piece in pieces:
                tls.sendall(piece)  # each write is its own TLS record
            with suppress(OSError):
                tls.recv(4096)  # the client's close

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with listener:
        yield listener.getsockname()[1]
    thread.join(5)


def _binary_frame(payload: bytes) -> bytes:
    """An unmasked, final binary frame (server to client) with a 64-bit length."""
    return bytes([0x82, 127]) + struct.pack('>Q', len(payload)) + payload


@pytest.mark.usefixtures('trusted')
def test_a_verified_server_delivers_messages_byte_for_byte(ca: trustme.CA) -> None:
    messages = [b'\xa2' + bytes(range(256)) * 40, b'small', b'x' * 100_000]

    def send_all(connection: ServerConnection) -> None:
        for message in messages:
            connection.send(message)
        connection.recv()

    with (
        tls_server(_server_context(ca, 'localhost'), send_all) as port,
        connect(f'wss://localhost:{port}/xrpc/com.atproto.sync.subscribeRepos', MAX_MESSAGE_BYTES, 5, 2) as stream,
    ):
        assert [stream.recv(timeout=5) for _ in messages] == messages


def test_a_certificate_from_an_untrusted_authority_is_refused(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('SSL_CERT_FILE', raising=False)
    with (
        tls_server(_server_context(ca, 'localhost'), lambda connection: None) as port,
        pytest.raises(ssl.SSLCertVerificationError, match='certificate verify failed'),
        connect(f'wss://localhost:{port}/', MAX_MESSAGE_BYTES, 5, 2),
    ):
        pass


@pytest.mark.usefixtures('trusted')
def test_a_certificate_for_another_hostname_is_refused(ca: trustme.CA) -> None:
    with (
        tls_server(_server_context(ca, 'relay.example.test'), lambda connection: None) as port,
        pytest.raises(ssl.SSLCertVerificationError, match='Hostname mismatch'),
        connect(f'wss://localhost:{port}/', MAX_MESSAGE_BYTES, 5, 2),
    ):
        pass


@pytest.mark.usefixtures('trusted')
def test_frames_split_across_tls_records_arrive_whole(ca: trustme.CA) -> None:
    first, second = b'\x01' * 70_000, b'second'
    frames = _binary_frame(first) + _binary_frame(second)
    # Cut inside the first header, inside its length, inside the payload, and across the two frames.
    cuts = [1, 5, 10, 9_000, 40_000, len(_binary_frame(first)) + 1, len(frames)]
    pieces = [frames[start:end] for start, end in zip([0, *cuts], cuts, strict=False)]
    with (
        raw_tls_server(_server_context(ca, 'localhost'), pieces) as port,
        connect(f'wss://localhost:{port}/', MAX_MESSAGE_BYTES, 5, 2) as stream,
    ):
        assert stream.recv(timeout=5) == first
        assert stream.recv(timeout=5) == second


@pytest.mark.usefixtures('trusted')
def test_the_8_mib_limit_holds_over_tls(ca: trustme.CA) -> None:
    at_limit, over = b'a' * MAX_MESSAGE_BYTES, b'b' * (MAX_MESSAGE_BYTES + 1)

    def send_both(connection: ServerConnection) -> None:
        connection.send(at_limit)
        connection.send(over)
        with suppress(ConnectionClosedError):
            connection.recv()

    with (
        tls_server(_server_context(ca, 'localhost'), send_both) as port,
        connect(f'wss://localhost:{port}/', MAX_MESSAGE_BYTES, 5, 2) as stream,
    ):
        assert stream.recv(timeout=10) == at_limit
        with pytest.raises(ConnectionClosedError) as closed:
            stream.recv(timeout=10)
    assert closed.value.sent is not None
    assert closed.value.sent.code == CloseCode.MESSAGE_TOO_BIG
