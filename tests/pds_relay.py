"""A PDS seen as a relay, on loopback: what Bluesky's Jetstream needs of its upstream that a PDS does not serve.

Jetstream (tests/jetstream.sh) reads its relay's `com.atproto.sync.listHosts` roster, then each host's `listRepos`
and `getRepo`, and the relay's `subscribeRepos`. A PDS serves all but `listHosts`. This front answers `listHosts`
with one host, itself (Jetstream's loopback development set-up: a host named like the relay is read over plain
HTTP, where any other loopback host is refused), and passes every other request, websocket included, to the PDS.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlparse

import httpx
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

LIST_HOSTS = '/xrpc/com.atproto.sync.listHosts'


class PdsRelay:
    """Serves the PDS at `pds` (`http://localhost:2583`) as a relay whose one host is itself."""

    def __init__(self, pds: str) -> None:
        self.pds = pds.rstrip('/')
        self.port = 0
        self._server: Server | None = None
        self._http = httpx.Client(base_url=self.pds, timeout=30)

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
        if self._server is not None:
            self._server.shutdown()
        self._http.close()

    def _request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get('Upgrade', '').lower() == 'websocket':
            return None
        if urlparse(request.path).path == LIST_HOSTS:
            host = {'hostname': self.host, 'seq': 0, 'accountCount': 0, 'status': 'active'}
            return _response(200, json.dumps({'hosts': [host]}).encode(), 'application/json')
        try:
            answer = self._http.get(request.path)
        except httpx.HTTPError as error:
            return _response(502, str(error).encode(), 'text/plain')
        return _response(answer.status_code, answer.content, answer.headers.get('content-type', 'text/plain'))

    def _relay(self, client: ServerConnection) -> None:
        """Passes the PDS's websocket (`subscribeRepos`) to the client, message by message."""
        assert client.request is not None
        upstream_url = 'ws' + self.pds.removeprefix('http') + client.request.path
        try:
            with connect(upstream_url, max_size=None, open_timeout=30) as upstream:
                for message in upstream:
                    client.send(message)
        except (ConnectionClosed, OSError, TimeoutError):
            pass
        client.close()


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers({'Content-Type': content_type, 'Content-Length': str(len(body)), 'Connection': 'close'})
    return Response(status, '', headers, body)
