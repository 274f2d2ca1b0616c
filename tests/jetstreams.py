"""A stand-in Jetstream v2 server for the tests: `network.bsky.jetstream.subscribeEvents` on loopback.

Bluesky's own server (tests/jetstream.sh, tests/jetstream_server.py) needs the local PDS and takes seconds to start;
this one runs offline on recorded sessions, for the tests that need a server that misbehaves on cue (refusals,
error frames) or exact control of what it holds. It speaks the same wire, read from the lexicon and the server's
encoder (github.com/bluesky-social/jetstream v0.2.4, internal/subscribe/encoder.go): `xrpc.v1.json` frames, one
commit event per record op with Jetstream's own `seq`, `#account`/`#identity`/`#sync` wrapping the upstream event,
inclusive `cursor` replay (a cursor >= 1e15 is a unix-microseconds time), the `collections` filter, dictionary zstd
compression with `getZstdDictionary`, and `CursorTooOld`/`UnknownZstdDictionary` refused before the upgrade with
HTTP 400. Its events come from real PDS firehose frames (a capture), translated by `from_firehose` with libipld,
independently of feedgen's decoder.
"""

from __future__ import annotations

import base64
import http
import json
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import libipld
import zstandard
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

NS = 'network.bsky.jetstream.subscribeEvents'
TIME_CURSOR = 10**15


def _json_value(value: Any) -> Any:
    """A DAG-CBOR value as JSON: bytes (links and byte strings alike) as `{"$bytes": ...}`."""
    if isinstance(value, bytes):
        return {'$bytes': base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {key: _json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    return value


def _wire_time(text: str) -> tuple[str, int]:
    """The upstream `time` in Jetstream's rendering (six fractional digits, Z) and as unix microseconds."""
    moment = datetime.fromisoformat(text.replace('Z', '+00:00'))
    micros = int(moment.timestamp() * 1_000_000)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ'), micros


def from_firehose(messages: Iterable[bytes]) -> list[dict]:
    """Jetstream payloads (without `seq`) for the firehose `messages`: one per record op, account, identity, sync."""
    payloads = []
    for message in messages:
        header, body = libipld.decode_dag_cbor_multi(message)
        kind = header.get('t')
        if kind not in ('#commit', '#account', '#identity', '#sync'):
            continue
        time, micros = _wire_time(body['time'])
        if kind == '#commit':
            blocks = libipld.decode_car(body['blocks'])[1] if body.get('blocks') else {}
            for op in body['ops']:
                collection, _, rkey = op['path'].partition('/')
                payload = {'$type': f'{NS}#commit', 'did': body['repo'], 'time': time, 'rev': body['rev']}
                payload |= {'operation': op['action'], 'collection': collection, 'rkey': rkey, '_us': micros}
                if op['action'] != 'delete' and op.get('cid') in blocks:
                    payload['record'] = _json_value(blocks[op['cid']])
                    payload['cid'] = libipld.encode_cid(op['cid'])
                payloads.append(payload)
        else:
            name = kind[1:]
            upstream = {'$type': f'com.atproto.sync.subscribeRepos{kind}'} | _json_value(body)
            payloads.append({'$type': f'{NS}{kind}', 'did': body['did'], 'time': time, name: upstream, '_us': micros})
    return payloads


def _train_dictionary() -> zstandard.ZstdCompressionDict:
    samples = [
        json.dumps(
            {'$type': 'message', 'payload': {'$type': f'{NS}#commit', 'seq': n, 'x': f'sample {n} ' * (n % 7)}}
        ).encode()
        for n in range(400)
    ]
    return zstandard.train_dictionary(2048, samples)


class StandInJetstream:
    """Serves `payloads` (and any appended later) with seqs from `first_seq`; `start`, `stop` and `start` again."""

    def __init__(
        self,
        payloads: Iterable[dict] = (),
        first_seq: int = 1000,
        floor: int = 0,
        compress: bool = True,
        close_when_done: bool = False,
    ) -> None:
        self.events: list[dict] = []
        self.compress = compress
        """False: no `getZstdDictionary` (404), so clients read uncompressed frames."""
        self.close_when_done = close_when_done
        """True: close each subscription normally (1000) once it has every event, like `CaptureRelay`."""
        self.bytes_sent = 0
        """Websocket payload bytes sent, all subscriptions together."""
        self.next_seq = first_seq
        self.floor = floor
        """Cursors below this seq are refused with `CursorTooOld`."""
        self.changed = threading.Condition()
        self.dictionary = _train_dictionary()
        self.connections: list[str] = []
        """The path and query of every accepted subscription."""
        self.send_error: str | None = None
        """An error frame (e.g. `ConsumerTooSlow`) the next subscription gets after its first event."""
        self.port = 0
        self._server: Server | None = None
        self._stopping = threading.Event()
        self.append(payloads)

    @property
    def url(self) -> str:
        return f'ws://127.0.0.1:{self.port}'

    def append(self, payloads: Iterable[dict]) -> None:
        with self.changed:
            for payload in payloads:
                self.events.append(payload | {'seq': self.next_seq})
                self.next_seq += 1
            self.changed.notify_all()

    def feed(self, payloads: list[dict], per_second: float) -> threading.Thread:
        """Appends `payloads` at about `per_second`, in a thread, like a live network; returns the thread."""

        def run() -> None:
            pause = threading.Event()
            for start in range(0, len(payloads), 10):
                self.append(payloads[start : start + 10])
                pause.wait(10 / per_second)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def start(self) -> StandInJetstream:
        self._stopping.clear()
        self._server = serve(self._serve, '127.0.0.1', self.port, process_request=self._process_request)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops like a restarting server: every subscriber's connection closes (1001, going away)."""
        self._stopping.set()
        with self.changed:
            self.changed.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StandInJetstream:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlparse(request.path)
        if url.path == '/xrpc/network.bsky.jetstream.getZstdDictionary' and self.compress:
            body = self.dictionary.as_bytes()
            headers = Headers({'Content-Type': 'application/octet-stream', 'Content-Length': str(len(body))})
            return Response(200, 'OK', headers, body)
        if url.path != f'/xrpc/{NS}':
            return connection.respond(http.HTTPStatus.NOT_FOUND, 'not found\n')
        params = parse_qs(url.query)
        if 'zstdDictionary' in params and int(params['zstdDictionary'][0]) != self.dictionary.dict_id():
            return self._refuse('UnknownZstdDictionary', f'current dictionary {self.dictionary.dict_id()}')
        cursor = int(params['cursor'][0]) if 'cursor' in params else None
        if cursor is not None and cursor < TIME_CURSOR and cursor < self.floor:
            return self._refuse(
                'CursorTooOld', f'subscribe: cursor too old: cursor {cursor} below lookback floor {self.floor}'
            )
        return None

    @staticmethod
    def _refuse(error: str, message: str) -> Response:
        body = json.dumps({'error': error, 'message': message}).encode()
        headers = Headers({'Content-Type': 'application/json', 'Content-Length': str(len(body))})
        return Response(400, 'Bad Request', headers, body)

    def _start_index(self, cursor: int | None) -> int:
        with self.changed:
            if cursor is None:
                return len(self.events)
            key = '_us' if cursor >= TIME_CURSOR else 'seq'
            return next((i for i, event in enumerate(self.events) if event[key] >= cursor), len(self.events))

    def _serve(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        self.connections.append(connection.request.path)
        params = parse_qs(urlparse(connection.request.path).query)
        collections = set(params.get('collections', []))
        compressor = zstandard.ZstdCompressor(dict_data=self.dictionary) if 'zstdDictionary' in params else None
        position = self._start_index(int(params['cursor'][0]) if 'cursor' in params else None)
        error, self.send_error = self.send_error, None
        try:
            while not self._stopping.is_set():
                if self.close_when_done and position >= len(self.events):
                    connection.close(1000)
                    return
                with self.changed:
                    self.changed.wait_for(lambda p=position: len(self.events) > p or self._stopping.is_set(), 1.0)
                    batch = self.events[position:]
                position += len(batch)
                for event in batch:
                    if event['$type'] == f'{NS}#commit' and collections and event['collection'] not in collections:
                        continue
                    payload = {key: value for key, value in event.items() if key != '_us'}
                    frame = json.dumps({'$type': 'message', 'payload': payload}).encode()
                    data = compressor.compress(frame) if compressor else frame
                    self.bytes_sent += len(data)
                    connection.send(data if compressor else frame.decode())
                    if error:
                        connection.send(json.dumps({'$type': 'error', 'error': error, 'message': 'too slow'}))
                        connection.close()
                        return
        except ConnectionClosed:
            return
        connection.close(1001)


def bridge(server: StandInJetstream, subscribe_url: str, stop: threading.Event) -> threading.Thread:
    """Feeds `server` from a live firehose (`subscribe_url`, from its first event) until `stop` is set, like
    Jetstream does from its relay; returns the thread."""

    def run() -> None:
        with connect(f'{subscribe_url}?cursor=0', max_size=None, open_timeout=30) as firehose:
            while not stop.is_set():
                try:
                    message = firehose.recv(timeout=0.5)
                except TimeoutError:
                    continue
                if isinstance(message, bytes):
                    server.append(from_firehose([message]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread
