"""A fake PDS on loopback for reader-graph tests: listRecords of follow records, a did:web document, and misbehaviour
on demand (slow, hanging, garbage, redirecting, erring, or a huge repository made up page by page)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

FOLLOW = 'app.bsky.graph.follow'
HANG_BOUND_SECONDS = 30.0
"""A hanging answer is released after this at the latest, so no test thread outlives its test for long."""


def follow_uri(author: str, n: int) -> str:
    return f'at://{author}/{FOLLOW}/3kfollow{n:07d}'


def follow_value(subject: str) -> dict[str, Any]:
    return {'$type': FOLLOW, 'subject': subject, 'createdAt': '2026-01-01T00:00:00.000Z'}


@dataclass
class FakePds:
    """What the server answers; change the fields while it runs."""

    follows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """did -> its follow records `(uri, subject)`, newest first."""
    made_up: dict[str, int] = field(default_factory=dict)
    """did -> a number of follow records made up on the fly (`follow_uri(did, n)` follows `did:plc:subject<n>`)."""
    mode: str = 'ok'
    """`ok`, `slow` (each answer after `delay` s), `hang` (until `release` is set), `garbage`, `redirect`, or
    `error` (HTTP 400 with `error_name`)."""
    delay: float = 0.0
    error_name: str = 'RepoNotFound'
    release: threading.Event = field(default_factory=threading.Event)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """did:web host -> its DID document, served at `/.well-known/did.json`."""
    on_page: Callable[[str, int], None] | None = None
    """Called with the DID and the page number (from 0) before each listRecords page is answered."""
    pages: list[tuple[str, int]] = field(default_factory=list)
    """Every listRecords request answered: the DID and page number."""
    url: str = ''

    def records(self, did: str) -> list[tuple[str, str]]:
        if did in self.made_up:
            return [(follow_uri(did, n), f'did:plc:subject{n}') for n in range(self.made_up[did])]
        return self.follows.get(did, [])


def _handler(pds: FakePds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {'Content-Type': 'application/json'}).items():
                self.send_header(name, value)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            if url.path == '/.well-known/did.json':
                document = pds.documents.get(self.headers.get('Host', ''))
                self.answer(200 if document else 404, json.dumps(document or {}).encode())
                return
            if url.path != '/xrpc/com.atproto.repo.listRecords':
                self.answer(404, b'{"error": "MethodNotImplemented"}')
                return
            did = query.get('repo', '')
            start = int(query.get('cursor', '0'))
            limit = int(query.get('limit', '50'))
            page = start // 100
            pds.pages.append((did, page))
            if pds.on_page is not None:
                pds.on_page(did, page)
            if pds.mode == 'slow':
                time.sleep(pds.delay)
            elif pds.mode == 'hang':
                pds.release.wait(HANG_BOUND_SECONDS)
            if pds.mode == 'garbage':
                self.answer(200, b'<html>not json</html>')
            elif pds.mode == 'redirect':
                self.answer(302, b'', {'Location': 'http://127.0.0.1:9/elsewhere'})
            elif pds.mode == 'error':
                self.answer(400, json.dumps({'error': pds.error_name, 'message': 'no'}).encode())
            else:
                records = pds.records(did)[start : start + limit]
                body: dict[str, Any] = {
                    'records': [{'uri': uri, 'cid': 'bafy', 'value': follow_value(subject)} for uri, subject in records]
                }
                if start + limit < len(pds.records(did)):
                    body['cursor'] = str(start + limit)
                self.answer(200, json.dumps(body).encode())

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up on a slow answer (the sync's timeout) is expected here, not an error."""


@contextmanager
def running_pds(pds: FakePds | None = None, port: int = 0) -> Iterator[FakePds]:
    """Serves `pds` on 127.0.0.1 (`port`, or a free one) until the block ends."""
    pds = pds or FakePds()
    server = _Server(('127.0.0.1', port), _handler(pds))
    pds.url = f'http://127.0.0.1:{server.server_address[1]}'
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield pds
    finally:
        pds.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def web_did(pds: FakePds) -> str:
    """The did:web of the fake server's own host (`did:web:localhost%3A<port>`)."""
    return 'did:web:' + quote(pds.url.replace('http://127.0.0.1', 'localhost').removeprefix('http://'), safe='.')


def document(did: str, pds_url: str, signing_key_multibase: str | None = None) -> dict[str, Any]:
    """An atproto DID document naming `pds_url` as the `#atproto_pds` service (and a signing key, when given)."""
    methods = []
    if signing_key_multibase:
        methods.append(
            {'id': f'{did}#atproto', 'type': 'Multikey', 'controller': did, 'publicKeyMultibase': signing_key_multibase}
        )
    return {
        '@context': ['https://www.w3.org/ns/did/v1'],
        'id': did,
        'alsoKnownAs': [],
        'verificationMethod': methods,
        'service': [{'id': '#atproto_pds', 'type': 'AtprotoPersonalDataServer', 'serviceEndpoint': pds_url}],
    }
