"""Labelers for the tests: signed labels, a stand-in `subscribeLabels` server, a tampering proxy in front of a real
one, and a DID resolver that points a labeler's DID at either.

The wire is Ozone's (../shared/atnet README, "Labeler: Ozone"): each message is a DAG-CBOR header
`{op: 1, t: '#labels'}` and a body `{seq, labels}`; a `cursor` replays the frames after it; without one, only new
frames come. A label is signed over the DAG-CBOR of its fields without `sig`.
"""

from __future__ import annotations

import http
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import libipld
from atproto_core.did_doc import DidDocument
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from tests.jwts import SigningKey

NOW = '2026-12-06T12:00:00.000Z'
PATH = '/xrpc/com.atproto.label.subscribeLabels'


def signed_label(key: SigningKey, src: str, uri: str, val: str, **fields: Any) -> dict[str, Any]:
    """A label `{ver, src, uri, val, cts, ...fields}` with its `sig` by `key`."""
    label = {'ver': 1, 'src': src, 'uri': uri, 'val': val, 'cts': NOW} | fields
    return label | {'sig': key.sign(libipld.encode_dag_cbor(label))}


def labels_frame(seq: int, *labels: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor({'op': 1, 't': '#labels'}) + libipld.encode_dag_cbor(
        {'seq': seq, 'labels': list(labels)}
    )


def did_document(did: str, endpoint: str, key: SigningKey) -> DidDocument:
    """A labeler's DID document: `#atproto_labeler` at `endpoint`, `#atproto_label` the public `key`."""
    return DidDocument.from_dict(
        {
            'id': did,
            'verificationMethod': [
                {
                    'id': f'{did}#atproto_label',
                    'type': 'Multikey',
                    'controller': did,
                    'publicKeyMultibase': key.multikey,
                }
            ],
            'service': [{'id': '#atproto_labeler', 'type': 'AtprotoLabeler', 'serviceEndpoint': endpoint}],
        }
    )


class StaticResolver:
    """Resolves DIDs to the documents it holds (`documents` may be changed: a key rotation); counts refreshes."""

    def __init__(self, documents: dict[str, DidDocument]) -> None:
        self.documents = documents
        self.refreshes = 0

    def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None:
        self.refreshes += force_refresh
        return self.documents.get(did)


class Redirecting:
    """Resolves through `resolver`, then names `endpoint` as the labeler's service: a stand-in in front of it."""

    def __init__(self, resolver: Any, endpoint: str) -> None:
        self.resolver = resolver
        self.endpoint = endpoint

    def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None:
        document: DidDocument | None = self.resolver.resolve(did, force_refresh=force_refresh)
        if document is None:
            return None
        data = document.model_dump(by_alias=True)
        data['service'] = [{'id': '#atproto_labeler', 'type': 'AtprotoLabeler', 'serviceEndpoint': self.endpoint}]
        return DidDocument.from_dict(data)


class _Server:
    """A websocket server on loopback that keeps its port across `stop` and `start` (a restarting labeler)."""

    def __init__(self) -> None:
        self.port = 0
        self.connections: list[str] = []
        """The path and query of every accepted subscription."""
        self._server: Server | None = None
        self.stopping = threading.Event()

    @property
    def endpoint(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def start(self) -> _Server:
        self.stopping.clear()
        self._server = serve(self._accept, '127.0.0.1', self.port, process_request=self._check)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stops like a restarting labeler: every subscriber's connection closes."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlparse(request.path).path != PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, 'not found\n')
        return None

    def _accept(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        self.connections.append(connection.request.path)
        query = parse_qs(urlparse(connection.request.path).query)
        try:
            self.serve(connection, int(query['cursor'][0]) if 'cursor' in query else None, connection.request.path)
        except ConnectionClosed:
            return

    def serve(self, connection: ServerConnection, cursor: int | None, path: str) -> None:
        raise NotImplementedError


class StandInLabeler(_Server):
    """Serves `frames` (`(seq, message)`, appended at any time) after each subscriber's cursor."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[tuple[int, bytes]] = []
        self.changed = threading.Condition()

    def append(self, seq: int, *labels: dict[str, Any]) -> None:
        with self.changed:
            self.frames.append((seq, labels_frame(seq, *labels)))
            self.changed.notify_all()

    def serve(self, connection: ServerConnection, cursor: int | None, path: str) -> None:
        with self.changed:
            position = len(self.frames) if cursor is None else sum(seq <= cursor for seq, _ in self.frames)
        while not self.stopping.is_set():
            with self.changed:
                self.changed.wait_for(lambda p=position: len(self.frames) > p or self.stopping.is_set(), 0.5)
                batch = self.frames[position:]
            position += len(batch)
            for _, message in batch:
                connection.send(message)
        connection.close(1001)


class TamperingProxy(_Server):
    """Forwards `upstream`'s frames (a labeler's endpoint) with the same query, passing each label through
    `tamper` (which may alter it and leave its `sig` as it was)."""

    def __init__(self, upstream: str, tamper: Callable[[dict[str, Any]], dict[str, Any]] = lambda label: label):
        super().__init__()
        self.upstream = upstream.replace('http://', 'ws://', 1)
        self.tamper = tamper

    def serve(self, connection: ServerConnection, cursor: int | None, path: str) -> None:
        with connect(self.upstream + path, max_size=None, open_timeout=10) as upstream:
            while not self.stopping.is_set():
                try:
                    message = upstream.recv(timeout=0.5)
                except TimeoutError:
                    continue
                assert isinstance(message, bytes)
                header, body = libipld.decode_dag_cbor_multi(message)
                if header.get('t') == '#labels':
                    body['labels'] = [self.tamper(label) for label in body['labels']]
                    message = libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)
                connection.send(message)
        connection.close(1001)
