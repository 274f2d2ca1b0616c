"""Repo follows: a reader's `app.bsky.graph.follow` records, read from their own repository on their PDS.

Owns finding a reader's PDS (the `#atproto_pds` endpoint of their DID document, from the resolver service auth
uses: did:plc through the PLC directory, did:web through its host) and paging `com.atproto.repo.listRecords`
there, every wait and size bounded: `PAGE_TIMEOUT_SECONDS` per request, `MAX_PAGE_BYTES` per answer, a deadline
for the whole read, and at most `max_follows` records. Redirects are not followed. Each record is checked like a
firehose record (`feedgen.ingest.records`); one that fails is skipped and counted. Anything else that goes wrong
raises `FetchError` with a short reason. It never touches the store: `feedgen.ingest.graph_sync` writes the pages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from atproto_core.did_doc import DidDocument
from atproto_core.exceptions import AtProtocolError

from feedgen.ingest.records import FOLLOW, RecordError, parse_subject_record

PAGE_SIZE = 100
"""Records a listRecords page asks for: the most the lexicon allows."""
PAGE_TIMEOUT_SECONDS = 5.0
"""Connect, and each read of an answer's bytes."""
MAX_PAGE_BYTES = 1_000_000
"""A page of 100 follows is about 30 KB; a bigger answer is not a listRecords page."""
UNAVAILABLE_REPO_ERRORS = frozenset({'RepoNotFound', 'RepoTakendown', 'RepoDeactivated', 'RepoSuspended'})


class FetchError(Exception):
    """The follows could not be read; `reason` is a short label (metrics, status), the message says more."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f'{reason}: {message}')
        self.reason = reason


class DocumentResolver(Protocol):
    """Finds a DID's document (`feedgen.serve.auth.did_resolver` does, with its cache)."""

    def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None: ...


def pds_endpoint(resolver: DocumentResolver, did: str) -> str:
    """The `#atproto_pds` service endpoint of `did`.

    Raises:
        FetchError: `did_unresolved` (no document, or it could not be fetched) or `no_pds` (none named, or not http).
    """
    try:
        document = resolver.resolve(did)
    except (AtProtocolError, httpx.HTTPError, ValueError) as error:
        raise FetchError('did_unresolved', f'{did}: {error or type(error).__name__}') from None
    if document is None:
        raise FetchError('did_unresolved', f'{did} has no DID document')
    endpoint = document.get_pds_endpoint()
    if not endpoint or not endpoint.startswith(('http://', 'https://')):
        raise FetchError('no_pds', f'{did} names no http(s) #atproto_pds service')
    return endpoint.rstrip('/')


@dataclass
class FollowPage:
    """One listRecords page: the follows `(uri, subject)` kept, and how many records were skipped as invalid."""

    follows: list[tuple[str, str]]
    skipped: int = 0


def follow_pages(client: httpx.Client, pds: str, did: str, max_follows: int, deadline: float) -> Iterator[FollowPage]:
    """Pages of `did`'s follows read from `pds`, newest first, until the last page or `max_follows` records.

    Args:
        deadline: `time.monotonic()` after which reading stops with `FetchError('timeout')`.

    Raises:
        FetchError: the PDS is down (`pds_down`), slow (`timeout`), redirects (`redirect`), says the repository is
            gone (`repo_unavailable`), fails otherwise (`pds_error`), or answers what is not a page (`bad_answer`).
    """
    prefix = f'at://{did}/{FOLLOW}/'
    cursor: str | None = None
    read = 0
    while read < max_follows:
        params = {'repo': did, 'collection': FOLLOW, 'limit': str(min(PAGE_SIZE, max_follows - read))}
        if cursor:
            params['cursor'] = cursor
        body = _get_json(client, f'{pds}/xrpc/com.atproto.repo.listRecords', params, deadline)
        records = body.get('records')
        if not isinstance(records, list) or len(records) > PAGE_SIZE:
            raise FetchError('bad_answer', 'listRecords answered without a list of at most 100 records')
        page = FollowPage([])
        for record in records:
            follow = _follow(record, prefix)
            if follow is None:
                page.skipped += 1
            else:
                page.follows.append(follow)
        read += len(records)
        yield page
        next_cursor = body.get('cursor')
        if not records or not isinstance(next_cursor, str) or not next_cursor:
            return
        if next_cursor == cursor:
            raise FetchError('bad_answer', 'listRecords answered the same cursor twice')
        cursor = next_cursor


def _follow(record: Any, prefix: str) -> tuple[str, str] | None:
    """`(uri, subject)` of a listRecords entry when it is a valid follow record of the reader's repository."""
    if not isinstance(record, dict):
        return None
    uri = record.get('uri')
    if not isinstance(uri, str) or not uri.startswith(prefix) or '/' in uri[len(prefix) :] or len(uri) == len(prefix):
        return None
    try:
        return uri, parse_subject_record(FOLLOW, record.get('value')).subject
    except RecordError:
        return None


def _get_json(client: httpx.Client, url: str, params: dict[str, str], deadline: float) -> dict[str, Any]:
    """GETs `url` and returns its JSON object, reading at most `MAX_PAGE_BYTES` and stopping at `deadline`."""
    try:
        with client.stream('GET', url, params=params) as response:
            if response.is_redirect:
                raise FetchError('redirect', f'{url} answered HTTP {response.status_code} (not followed)')
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_PAGE_BYTES:
                    raise FetchError('bad_answer', f'the answer is over {MAX_PAGE_BYTES} bytes')
                if time.monotonic() > deadline:
                    raise FetchError('timeout', 'the PDS is too slow: the sync ran out of time')
    except httpx.TimeoutException as error:
        raise FetchError('timeout', f'{url}: {type(error).__name__}') from None
    except httpx.HTTPError as error:
        raise FetchError('pds_down', f'{url}: {error or type(error).__name__}') from None
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if response.status_code != 200:
        error_name = body.get('error') if isinstance(body, dict) else None
        if error_name in UNAVAILABLE_REPO_ERRORS:
            raise FetchError('repo_unavailable', f'the PDS says {error_name}')
        raise FetchError('pds_error', f'HTTP {response.status_code} {error_name or ""}'.rstrip())
    if not isinstance(body, dict):
        raise FetchError('bad_answer', 'the answer is not a JSON object')
    return body
