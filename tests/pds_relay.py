"""A PDS seen as a relay, on loopback: what Bluesky's Jetstream needs of its upstream that a PDS does not serve.

Jetstream (tests/jetstream.sh) reads its relay's `com.atproto.sync.listHosts` roster, then each host's `listRepos`
and `getRepo`, and the relay's `subscribeRepos`. A PDS serves all but `listHosts`. This front answers `listHosts`
with one host, itself (Jetstream's loopback development set-up: a host named like the relay is read over plain
HTTP, where any other loopback host is refused), and passes every other request, websocket included, to the PDS.

Jetstream also resolves each DID at the PLC to check commit signatures, and reads only the current DID document
format (a `Multikey` verification method, as the PLC directory serves); the local PLC still serves the older
`EcdsaSecp256k1VerificationKey2019` one, so `PlcFront` serves the documents the PLC's own `/data` describes in the
current format.

A test that compares stores wants Jetstream to hold the events of its own session only, not the PDS's whole past
(other tests share the PDS): with `since`, the front shows a network that came up at that PDS seq, as a new relay
does: `listRepos` lists no repos (nothing to download first) and `subscribeRepos` starts at `since` at the earliest.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import ClientConnection, connect
from websockets.sync.server import Server, ServerConnection, serve

LIST_HOSTS = '/xrpc/com.atproto.sync.listHosts'
LIST_REPOS = '/xrpc/com.atproto.sync.listRepos'


class PdsRelay:
    """Serves the PDS at `pds` (`http://localhost:2583`) as a relay whose one host is itself."""

    def __init__(self, pds: str, since: int | None = None) -> None:
        self.pds = pds.rstrip('/')
        self.since = since
        self.port = 0
        self._server: Server | None = None
        self._http = httpx.Client(base_url=self.pds, timeout=30)
        self._upstreams: set[ClientConnection] = set()
        """The open PDS websockets, closed on exit so that no relaying thread outlives the front."""

    @property
    def host(self) -> str:
        return f'127.0.0.1:{self.port}'

    @property
    def url(self) -> str:
        return f'http://{self.host}'

    def __enter__(self) -> PdsRelay:
        self._server = serve(self._relay, '127.0.0.1', 0, process_request=self._request, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        for upstream in list(self._upstreams):
            upstream.close()
        if self._server is not None:
            self._server.shutdown()
        self._http.close()

    def _request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get('Upgrade', '').lower() == 'websocket':
            return None
        if urlparse(request.path).path == LIST_HOSTS:
            host = {'hostname': self.host, 'seq': 0, 'accountCount': 0, 'status': 'active'}
            return _response(200, json.dumps({'hosts': [host]}).encode(), 'application/json')
        if urlparse(request.path).path == LIST_REPOS and self.since is not None:
            return _response(200, json.dumps({'repos': []}).encode(), 'application/json')
        try:
            answer = self._http.get(request.path)
        except httpx.HTTPError as error:
            return _response(502, str(error).encode(), 'text/plain')
        return _response(answer.status_code, answer.content, answer.headers.get('content-type', 'text/plain'))

    def _relay(self, client: ServerConnection) -> None:
        """Passes the PDS's websocket (`subscribeRepos`) to the client, message by message."""
        assert client.request is not None
        url = urlparse(client.request.path)
        query = parse_qs(url.query)
        if self.since is not None:
            query['cursor'] = [str(max(int(query.get('cursor', ['0'])[0]), self.since))]
        upstream_url = f'ws{self.pds.removeprefix("http")}{url.path}?{urlencode(query, doseq=True)}'
        try:
            with connect(upstream_url, max_size=None, open_timeout=30) as upstream:
                self._upstreams.add(upstream)
                try:
                    for message in upstream:
                        client.send(message)
                finally:
                    self._upstreams.discard(upstream)
        except (ConnectionClosed, OSError, TimeoutError):
            pass
        client.close()


class PlcFront:
    """Serves the DID documents of the PLC at `plc` in the current format (a `Multikey` `#atproto` method)."""

    def __init__(self, plc: str) -> None:
        self._http = httpx.Client(base_url=plc.rstrip('/'), timeout=30)
        self.port = 0
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f'http://127.0.0.1:{self.port}'

    def __enter__(self) -> PlcFront:
        self._server = serve(_no_websocket, '127.0.0.1', 0, process_request=self._request)
        self.port = self._server.socket.getsockname()[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.shutdown()
        self._http.close()

    def _request(self, connection: ServerConnection, request: Request) -> Response:
        did = urlparse(request.path).path.strip('/')
        try:
            answer = self._http.get(f'/{did}/data')
        except httpx.HTTPError as error:
            return _response(502, str(error).encode(), 'text/plain')
        if answer.status_code != 200 or '/' in did:
            return _response(answer.status_code, answer.content, answer.headers.get('content-type', 'text/plain'))
        data = answer.json()
        document = {
            '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
            'id': did,
            'alsoKnownAs': data.get('alsoKnownAs', []),
            'verificationMethod': [
                {'id': f'{did}#{name}', 'type': 'Multikey', 'controller': did, 'publicKeyMultibase': key[8:]}
                for name, key in data.get('verificationMethods', {}).items()
            ],
            'service': [
                {'id': f'#{name}', 'type': service['type'], 'serviceEndpoint': service['endpoint']}
                for name, service in data.get('services', {}).items()
            ],
        }
        return _response(200, json.dumps(document).encode(), 'application/did+ld+json')


def _no_websocket(connection: ServerConnection) -> None:
    connection.close()


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers({'Content-Type': content_type, 'Content-Length': str(len(body)), 'Connection': 'close'})
    return Response(status, '', headers, body)
