"""Tests for feedgen.ingest.relay: replaying recorded frames over a loopback subscribeRepos websocket."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libipld
import pytest
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from feedgen.ingest.capture import read_capture
from feedgen.ingest.relay import CaptureRelay, frame_seq, serve_capture

DATA = Path(__file__).parent / 'data'
SMALL = DATA / 'pds-session-5acct.atfh'
LARGE = DATA / 'pds-session-20acct.atfh'


@pytest.fixture(scope='module')
def frames() -> list[bytes]:
    return list(read_capture(SMALL))


def receive_all(client: ClientConnection, timeout: float = 10) -> list[bytes]:
    """Receives binary messages until the server closes the connection normally."""
    received = []
    with pytest.raises(ConnectionClosedOK):
        while True:
            message = client.recv(timeout=timeout)
            assert isinstance(message, bytes)
            received.append(message)
    return received


def error_frame(name: str) -> bytes:
    return libipld.encode_dag_cbor({'op': -1}) + libipld.encode_dag_cbor({'error': name, 'message': 'test'})


def test_frame_seq_reads_the_body(frames: list[bytes]) -> None:
    assert [frame_seq(message) for message in frames] == list(range(1, len(frames) + 1))
    assert frame_seq(error_frame('FutureCursor')) is None


def test_replays_every_frame_byte_identical_then_closes(frames: list[bytes]) -> None:
    with CaptureRelay(frames) as relay, connect(relay.subscribe_url) as client:
        assert receive_all(client) == frames
        assert client.close_code == 1000
    assert relay.connections == 1


def test_urls_and_port() -> None:
    with CaptureRelay([]) as relay:
        assert relay.port > 0
        assert relay.url == f'ws://127.0.0.1:{relay.port}'
        assert relay.subscribe_url == f'ws://127.0.0.1:{relay.port}/xrpc/com.atproto.sync.subscribeRepos'
    with pytest.raises(RuntimeError):
        _ = relay.port


@pytest.mark.parametrize('cursor', [0, 1, 100, 157, 158, 10_000])
def test_cursor_sends_only_later_seqs(frames: list[bytes], cursor: int) -> None:
    with CaptureRelay(frames) as relay, connect(f'{relay.subscribe_url}?cursor={cursor}') as client:
        received = receive_all(client)
    assert received == [message for message in frames if frame_seq(message) > cursor]
    assert [frame_seq(message) for message in received] == list(range(cursor + 1, len(frames) + 1))


def test_frames_without_seq_are_sent_in_place(frames: list[bytes]) -> None:
    error = error_frame('ConsumerTooSlow')
    mixed = [*frames[:3], error, *frames[3:6]]
    with CaptureRelay(mixed) as relay, connect(f'{relay.subscribe_url}?cursor=2') as client:
        assert receive_all(client) == [frames[2], error, *frames[3:6]]


def test_records_monotonic_send_time_of_each_seq(frames: list[bytes]) -> None:
    before = time.monotonic()
    with CaptureRelay(frames) as relay, connect(relay.subscribe_url) as client:
        receive_all(client)
        sent_at = dict(relay.sent_at)
    assert sorted(sent_at) == list(range(1, len(frames) + 1))
    times = [sent_at[seq] for seq in sorted(sent_at)]
    assert times == sorted(times)
    assert before <= times[0] <= times[-1] <= time.monotonic()


def test_send_time_is_the_first_send(frames: list[bytes]) -> None:
    with CaptureRelay(frames[:5]) as relay:
        with connect(relay.subscribe_url) as client:
            receive_all(client)
        first = dict(relay.sent_at)
        with connect(relay.subscribe_url) as client:
            receive_all(client)
        assert relay.sent_at == first
        assert relay.connections == 2


def test_keeps_connection_open_when_not_closing(frames: list[bytes]) -> None:
    relay = CaptureRelay(frames[:10], close_when_done=False).start()
    try:
        with connect(relay.subscribe_url) as client:
            assert [client.recv(timeout=5) for _ in range(10)] == frames[:10]
            with pytest.raises(TimeoutError):
                client.recv(timeout=0.3)
            relay.stop()
            with pytest.raises(ConnectionClosedOK):
                client.recv(timeout=5)
            assert client.close_code == 1001
    finally:
        relay.stop()


def test_rejects_other_paths_and_bad_cursors(frames: list[bytes]) -> None:
    with CaptureRelay(frames) as relay:
        with pytest.raises(InvalidStatus) as not_found:
            connect(relay.url + '/xrpc/com.atproto.sync.subscribeLabels')
        assert not_found.value.response.status_code == 404
        with pytest.raises(InvalidStatus) as bad_cursor:
            connect(relay.subscribe_url + '?cursor=-1')
        assert bad_cursor.value.response.status_code == 400
        assert relay.connections == 0


def test_rate_paces_the_replay() -> None:
    frames = list(read_capture(LARGE))
    rate = 2_000
    started = time.monotonic()
    with CaptureRelay(frames, rate=rate) as relay, connect(relay.subscribe_url) as client:
        assert receive_all(client) == frames
        sent_at = dict(relay.sent_at)
    elapsed = time.monotonic() - started
    expected = (len(frames) - 1) / rate
    assert elapsed >= 0.95 * expected
    # Pacing follows elapsed time: by the halfway frame about half the time has passed.
    half = len(frames) // 2
    assert sent_at[half + 1] - sent_at[1] >= 0.95 * half / rate


def test_rejects_non_positive_rate(frames: list[bytes]) -> None:
    with pytest.raises(ValueError, match='rate'):
        CaptureRelay(frames, rate=0)


def test_frames_for_is_the_per_connection_hook(frames: list[bytes]) -> None:
    class RestartingRelay(CaptureRelay):
        """Second and later connections see the stream restart from seq 1, as after a relay reset."""

        def frames_for(self, cursor: int | None) -> Iterator[tuple[int | None, bytes]]:
            return super().frames_for(None if self.connections > 1 else cursor)

    with RestartingRelay(frames[:8]) as relay:
        with connect(relay.subscribe_url + '?cursor=5') as client:
            assert receive_all(client) == frames[5:8]
        with connect(relay.subscribe_url + '?cursor=5') as client:
            assert receive_all(client) == frames[:8]


def test_serve_capture_until_interrupted() -> None:
    # Ctrl-C raises KeyboardInterrupt, as in an interactive shell (a shell's background job inherits it ignored);
    # conftest puts the session's handler back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    received: list[bytes] = []

    def consume_then_interrupt(relay: CaptureRelay) -> None:
        def run() -> None:
            try:
                with connect(relay.subscribe_url + '?cursor=150') as client:
                    received.extend(client.recv(timeout=5) for _ in range(8))
            finally:  # a failed read fails the assertion below, never hangs the relay
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

        threading.Thread(target=run).start()

    serve_capture(SMALL, port=0, on_ready=consume_then_interrupt)
    assert received == list(read_capture(SMALL))[150:]
