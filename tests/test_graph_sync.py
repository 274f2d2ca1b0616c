"""Reader graphs: a reader's follows read from their own PDS (a fake one on loopback), stored as the firehose would,
with every failure bounded and counted, and the firehose's creates and deletes applied on top, even mid-sync."""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import peewee
import pytest
from atproto_core.did_doc import DidDocument
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest import graph_sync
from feedgen.ingest.events import Commit, RecordDelete, SubjectCreate
from feedgen.ingest.graph_sync import LOADING, SYNCED, UNAVAILABLE, ReaderGraphs
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.records import FOLLOW
from feedgen.serve.app import create_app
from feedgen.serve.auth import ServiceAuth, did_resolver
from feedgen.serve.metrics import format_status, status_report
from feedgen.serve.reader_graph import HEADER, NOTES
from feedgen.settings import Settings
from feedgen.store.models import Follow, ReaderGraph, ReaderGraphDelete
from feedgen.store.reader_data import erase_reader
from feedgen.store.reader_graphs import graph_counts
from tests.atnet import eventually
from tests.conftest import feed_uri
from tests.fake_pds import FakePds, document, follow_uri, running_pds, web_did
from tests.jwts import FakeKeys, SigningKey, service_claims
from tests.processes import FeedgenProcess, free_port
from tests.test_server import SKELETON

READER, OTHER = 'did:plc:reader', 'did:plc:other'


class Resolver:
    """DID documents by DID, as the resolver service auth uses finds them; None for an unknown DID."""

    def __init__(self) -> None:
        self.documents: dict[str, DidDocument] = {}

    def add(self, did: str, pds_url: str) -> None:
        self.documents[did] = DidDocument.from_dict(document(did, pds_url))

    def resolve(self, did: str, force_refresh: bool = False) -> DidDocument | None:
        return self.documents.get(did)


class Firehose:
    """The indexer, fed follow creates and deletes of `READER` as the firehose would deliver them."""

    def __init__(self, db: peewee.Database) -> None:
        self.indexer = Indexer(db, 'firehose')
        self.seq = itertools.count(1)

    def write(self, *ops: SubjectCreate | RecordDelete) -> None:
        commit = Commit(seq=next(self.seq), repo=READER, time='2027-01-15T08:00:00Z', time_ms=1_800_000_000_000)
        commit.ops.extend(ops)
        self.indexer.write([commit])

    def create(self, uri: str, subject: str) -> None:
        self.write(SubjectCreate(collection=FOLLOW, uri=uri, author=READER, subject=subject))

    def delete(self, uri: str) -> None:
        self.write(RecordDelete(collection=FOLLOW, uri=uri))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pds() -> Iterator[FakePds]:
    with running_pds() as pds:
        yield pds


@pytest.fixture
def resolver(pds: FakePds) -> Resolver:
    resolver = Resolver()
    resolver.add(READER, pds.url)
    resolver.add(OTHER, pds.url)
    return resolver


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_graphs(db: peewee.Database, resolver: object, clock: Clock, **options: object) -> ReaderGraphs:
    client = httpx.Client(timeout=float(options.pop('timeout', 5.0)), follow_redirects=False)
    return ReaderGraphs(db, resolver, client=client, clock=clock, retry_seconds=60.0, **options)  # type: ignore[arg-type]


def follows_of(did: str) -> list[tuple[str, str]]:
    return sorted(Follow.select(Follow.uri, Follow.subject).where(Follow.author == did).tuples())


def state(did: str) -> tuple[str, str, int]:
    row = ReaderGraph.get(ReaderGraph.did == did)
    return row.state, row.reason, row.follows


def listed(pds: FakePds, did: str, count: int) -> list[tuple[str, str]]:
    pds.follows[did] = [(follow_uri(did, n), f'did:plc:subject{n}') for n in range(count)]
    return sorted(pds.follows[did])


def test_a_readers_first_request_stores_every_follow_of_their_repository_as_the_firehose_would(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock
) -> None:
    expected = listed(pds, READER, 250)
    graphs = make_graphs(db, resolver, clock)
    assert graphs.seen(READER, wait=30) == SYNCED
    assert follows_of(READER) == expected
    assert state(READER) == ('synced', '', 250)
    assert [page for _, page in pds.pages] == [0, 1, 2]

    # The firehose delivering the same follows again doubles nothing; its deletes apply on top.
    firehose = Firehose(db)
    for uri, subject in expected[:3]:
        firehose.create(uri, subject)
    firehose.delete(expected[0][0])
    assert follows_of(READER) == expected[1:]
    assert Follow.select().count() == 249
    assert graphs.seen(READER, wait=30) == SYNCED
    assert len(pds.pages) == 3  # synced once: later requests never fetch again


@pytest.mark.parametrize('write_rows', [graph_sync.WRITE_ROWS, 100])
def test_a_follow_deleted_on_the_firehose_while_the_sync_runs_stays_deleted(
    db: peewee.Database,
    pds: FakePds,
    resolver: Resolver,
    clock: Clock,
    write_rows: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With 100 rows a write, the first page is stored before the delete arrives; with 1,000, after it.
    monkeypatch.setattr(graph_sync, 'WRITE_ROWS', write_rows)
    expected = listed(pds, READER, 300)
    uris = [uri for uri, _ in pds.follows[READER]]
    gone = {uris[5], uris[250]}  # one already read when the delete arrives, one read after
    firehose = Firehose(db)
    firehose.create(follow_uri(READER, 9_999), 'did:plc:made-on-the-firehose')

    noted = []

    def firehose_meanwhile(did: str, page: int) -> None:
        if page == 1:
            for uri in sorted(gone):
                firehose.delete(uri)
            firehose.create(uris[7], 'did:plc:subject7')
            noted.append(ReaderGraphDelete.select().count())

    pds.on_page = firehose_meanwhile
    graphs = make_graphs(db, resolver, clock)
    assert graphs.seen(READER, wait=30) == SYNCED
    kept = [row for row in expected if row[0] not in gone]
    assert [row for row in follows_of(READER) if row[1] != 'did:plc:made-on-the-firehose'] == kept
    assert len(follows_of(READER)) == len(kept) + 1
    assert noted == [2]  # noted while the sync ran, and cleared when it ended
    assert ReaderGraphDelete.select().count() == 0
    firehose.delete(uris[0])  # after the sync: the firehose alone
    assert uris[0] not in {uri for uri, _ in follows_of(READER)}


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{sock.getsockname()[1]}'


@pytest.mark.parametrize(
    ('setup', 'reason'),
    [
        (lambda pds, resolver: setattr(pds, 'mode', 'garbage'), 'bad_answer'),
        (lambda pds, resolver: setattr(pds, 'mode', 'redirect'), 'redirect'),
        (lambda pds, resolver: setattr(pds, 'mode', 'error'), 'repo_unavailable'),
        (
            lambda pds, resolver: (setattr(pds, 'mode', 'error'), setattr(pds, 'error_name', 'RepoTakendown')),
            'repo_unavailable',
        ),
        (lambda pds, resolver: (setattr(pds, 'mode', 'error'), setattr(pds, 'error_name', 'Oops')), 'pds_error'),
        (lambda pds, resolver: (setattr(pds, 'mode', 'slow'), setattr(pds, 'delay', 2.0)), 'timeout'),
        (lambda pds, resolver: resolver.add(READER, _closed_port()), 'pds_down'),
        (lambda pds, resolver: resolver.add(READER, 'ftp://pds.example'), 'no_pds'),
        (lambda pds, resolver: resolver.documents.pop(READER), 'did_unresolved'),
    ],
    ids=['garbage', 'redirect', 'deleted', 'taken-down', 'error', 'slow', 'down', 'no-pds', 'unresolved'],
)
def test_each_failure_is_recorded_with_its_reason_and_retried_after_a_backoff(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock, setup: object, reason: str
) -> None:
    listed(pds, READER, 3)
    setup(pds, resolver)  # type: ignore[operator]
    graphs = make_graphs(db, resolver, clock, timeout=0.5)
    assert graphs.seen(READER, wait=30) == UNAVAILABLE
    assert state(READER)[:2] == ('failed', reason)
    assert graph_counts()['failed_by_reason'] == {reason: 1}
    asked = len(pds.pages)
    assert graphs.seen(READER, wait=30) == UNAVAILABLE  # within the backoff: nothing is fetched again
    assert len(pds.pages) == asked

    pds.mode = 'ok'
    resolver.add(READER, pds.url)
    clock.now += 61  # past the first backoff (60 s), the next request retries
    assert graphs.seen(READER, wait=30) == SYNCED
    assert state(READER) == ('synced', '', 3)


def test_the_backoff_doubles_with_each_failure(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock
) -> None:
    pds.mode = 'garbage'
    graphs = make_graphs(db, resolver, clock)
    waits = []
    for _ in range(3):
        assert graphs.seen(READER, wait=30) == UNAVAILABLE
        row = ReaderGraph.get(ReaderGraph.did == READER)
        waits.append(row.next_at - int(clock.now * 1000))
        clock.now = row.next_at / 1000
    assert waits == [60_000, 120_000, 240_000]


def test_a_huge_repository_is_read_up_to_the_cap_a_page_at_a_time(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock
) -> None:
    pds.made_up[READER] = 2_345
    graphs = make_graphs(db, resolver, clock, max_follows=1_000)
    assert graphs.seen(READER, wait=60) == SYNCED
    assert state(READER) == ('synced', 'truncated', 1_000)
    assert len(follows_of(READER)) == 1_000
    assert len(pds.pages) == 10
    assert graph_counts()['truncated'] == 1


def test_many_requests_at_once_start_one_sync(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock
) -> None:
    listed(pds, READER, 150)
    pds.mode = 'hang'
    graphs = make_graphs(db, resolver, clock)
    answers: list[str] = []
    threads = [threading.Thread(target=lambda: answers.append(graphs.seen(READER, wait=0.05))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answers == [LOADING] * 8
    # A second serving process finds the claim taken and does not fetch either.
    assert make_graphs(db, resolver, clock).seen(READER) == LOADING
    pds.release.set()
    graphs.wait_idle(30)
    assert [page for _, page in pds.pages] == [0, 1]
    assert graphs.seen(READER) == SYNCED


def test_a_claim_whose_process_died_lapses_and_is_taken_again(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock
) -> None:
    listed(pds, READER, 2)
    ReaderGraph.insert(did=READER, state='pending', attempts=1, next_at=int(clock.now * 1000) + 1000).execute()
    graphs = make_graphs(db, resolver, clock)
    assert graphs.seen(READER, wait=30) == LOADING
    assert pds.pages == []
    clock.now += 2
    assert graphs.seen(READER, wait=30) == SYNCED


def test_a_did_web_reader_is_found_through_their_host(db: peewee.Database, pds: FakePds, clock: Clock) -> None:
    reader = web_did(pds)
    pds.documents[reader.removeprefix('did:web:').replace('%3A', ':')] = document(reader, pds.url)
    listed(pds, reader, 4)
    graphs = make_graphs(db, did_resolver('http://127.0.0.1:9'), clock)
    assert graphs.seen(reader, wait=30) == SYNCED
    assert len(follows_of(reader)) == 4


class Reader:
    """Requests through the server with a valid token of `did` (or a forged one)."""

    def __init__(self, settings: Settings, db: peewee.Database, graphs: ReaderGraphs) -> None:
        self.keys = FakeKeys()
        self.key = SigningKey()
        self.service_did = settings.service_did
        self.keys.published[READER] = self.key.did_key
        auth = ServiceAuth(settings.service_did, self.keys)
        self.client: FlaskClient = create_app(settings, db=db, auth=auth, graphs=graphs).test_client()

    def token(self, lxm: str = 'app.bsky.feed.getFeedSkeleton', key: SigningKey | None = None) -> str:
        return (key or self.key).jwt(service_claims(READER, self.service_did, lxm))

    def following(self, token: str | None = None) -> tuple[int, dict, str | None]:
        response = self.client.get(
            SKELETON,
            query_string={'feed': feed_uri('following')},
            headers={'Authorization': f'Bearer {token or self.token()}'},
        )
        return response.status_code, response.json or {}, response.headers.get(HEADER)


@pytest.fixture
def server_graphs(db: peewee.Database, resolver: Resolver, clock: Clock) -> ReaderGraphs:
    return make_graphs(db, resolver, clock)


def test_the_first_page_waits_a_bounded_time_then_says_the_follows_are_loading(
    settings: Settings, db: peewee.Database, pds: FakePds, server_graphs: ReaderGraphs
) -> None:
    store = StoreBuilder(db)
    store.make_follow(READER, 'did:plc:bob')  # a follow the firehose showed since the start
    bob = store.make_post('did:plc:bob', 'from bob')
    dave = store.make_post('did:plc:dave', 'from dave')
    pds.follows[READER] = [(follow_uri(READER, 1), 'did:plc:dave')]
    pds.mode = 'hang'
    settings = replace(settings, graph_wait_seconds=0.2)
    reader = Reader(settings, db, server_graphs)

    status, body, header = reader.following()
    assert status == 200 and header == 'loading'
    assert body['feed'] == [{'post': bob, 'feedContext': f'from an account you follow; {NOTES[LOADING]}'}]

    pds.release.set()
    server_graphs.wait_idle(30)
    status, body, header = reader.following()
    assert (status, header) == (200, None)
    assert [item['post'] for item in body['feed']] == [dave, bob]
    assert all(NOTES[LOADING] not in item['feedContext'] for item in body['feed'])


def test_an_empty_first_page_says_why_in_a_header_and_a_failed_read_is_told_apart(
    settings: Settings, db: peewee.Database, pds: FakePds, server_graphs: ReaderGraphs
) -> None:
    pds.mode = 'garbage'
    reader = Reader(settings, db, server_graphs)
    status, body, header = reader.following()
    assert (status, body['feed'], header) == (200, [], 'unavailable')


def test_only_a_verified_token_starts_a_sync(
    settings: Settings, db: peewee.Database, pds: FakePds, server_graphs: ReaderGraphs
) -> None:
    listed(pds, READER, 2)
    reader = Reader(settings, db, server_graphs)
    for _ in range(3):
        status, body, _ = reader.following(reader.token(key=SigningKey()))
        assert (status, body['error']) == (401, 'BadJwtSignature')
    assert pds.pages == [] and ReaderGraph.select().count() == 0

    interactions = reader.client.post(
        '/xrpc/app.bsky.feed.sendInteractions',
        json={'interactions': []},
        headers={'Authorization': f'Bearer {reader.token("app.bsky.feed.sendInteractions")}'},
    )
    assert interactions.status_code == 200
    server_graphs.wait_idle(30)
    assert state(READER) == ('synced', '', 2)


def test_syncs_are_counted_in_metrics_and_status(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock, client: FlaskClient
) -> None:
    listed(pds, READER, 2)
    graphs = make_graphs(db, resolver, clock)
    assert graphs.seen(READER, wait=30) == SYNCED
    resolver.documents.pop(OTHER)
    assert graphs.seen(OTHER, wait=30) == UNAVAILABLE
    scraped = client.get('/metrics').get_data(as_text=True)
    assert 'feedgen_reader_graphs{state="synced"} 1.0' in scraped
    assert 'feedgen_reader_graphs{state="failed"} 1.0' in scraped
    assert 'feedgen_reader_graph_failures{reason="did_unresolved"} 1.0' in scraped
    report = status_report(db)
    assert report['reader_graphs']['failed_by_reason'] == {'did_unresolved': 1}
    assert 'readers       1 synced (0 cut at the cap), 0 pending, 1 failed (did_unresolved 1)' in format_status(report)


def test_a_first_page_waiting_for_its_pds_holds_up_no_other_request_of_its_worker(tmp_path: Path) -> None:
    port = free_port()
    service_did = f'did:web:localhost%3A{port}'
    env = {
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_DATABASE': str(tmp_path / 'feedgen.db'),
        'FEEDGEN_PLC_URL': 'http://127.0.0.1:9',
        'FEEDGEN_GRAPH_WAIT_SECONDS': '30',
    }
    base = f'http://127.0.0.1:{port}'
    with (
        running_pds(FakePds(mode='hang')) as pds,
        FeedgenProcess(['serve', '--port', str(port), '--workers', '1'], env, tmp_path) as serve,
    ):
        serve.wait_http(base + '/xrpc/_health')
        reader, key = web_did(pds), SigningKey()
        pds.documents[reader.removeprefix('did:web:').replace('%3A', ':')] = document(reader, pds.url, key.multikey)
        pds.follows[reader] = [(follow_uri(reader, 1), 'did:plc:bob')]
        token = key.jwt(service_claims(reader, service_did))
        answers: list[httpx.Response] = []

        def first_page() -> None:
            answers.append(
                httpx.get(
                    base + SKELETON,
                    params={'feed': f'at://{service_did}/app.bsky.feed.generator/following'},
                    headers={'Authorization': f'Bearer {token}'},
                    timeout=60,
                )
            )

        waiting = threading.Thread(target=first_page)
        waiting.start()

        def asked() -> None:
            assert pds.pages == [(reader, 0)]  # the first page now waits for the PDS

        eventually(asked)
        latest = httpx.get(base + SKELETON, params={'feed': f'at://{service_did}/app.bsky.feed.generator/latest'})
        assert latest.status_code == 200
        assert waiting.is_alive() and answers == []
        pds.release.set()
        waiting.join(timeout=60)
        assert answers[0].status_code == 200 and HEADER not in answers[0].headers


def test_a_reader_who_erased_their_data_has_their_follows_read_again_by_every_process(
    db: peewee.Database, pds: FakePds, resolver: Resolver, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = listed(pds, READER, 3)
    listed(pds, OTHER, 2)
    erasing, elsewhere = make_graphs(db, resolver, clock), make_graphs(db, resolver, clock)
    assert erasing.seen(READER, wait=30) == SYNCED
    assert (elsewhere.seen(READER), erasing.seen(OTHER, wait=30)) == (SYNCED, SYNCED)
    assert len(pds.pages) == 2

    erase_reader(db, READER)
    erasing.forget(READER)
    assert (follows_of(READER), follows_of(OTHER)) == ([], listed(pds, OTHER, 2))
    assert erasing.seen(READER, wait=30) == SYNCED, 'the process that erased reads the follows again at once'
    assert follows_of(READER) == expected and len(pds.pages) == 3

    erase_reader(db, READER)
    monkeypatch.setattr(graph_sync, 'REMEMBER_SECONDS', 0.0)  # the time another process trusts its memory is up
    assert elsewhere.seen(READER, wait=30) == SYNCED
    assert follows_of(READER) == expected and len(pds.pages) == 4
    assert erasing.seen(OTHER) == SYNCED and len(pds.pages) == 4, 'a reader who erased nothing is not read again'
