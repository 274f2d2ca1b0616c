"""The local AT Protocol network (../shared/atnet) for end-to-end tests: finding it, accounts, a running feedgen.

`FEEDGEN_ATNET` points at atnet's `state/network.json` (`.ci/run` exports it after starting the network with
`--ozone`, which implies `--appview`; the moderation tests need Ozone, `find_ozone`). Without it a test skips,
except in CI (`CI` set), where a missing network fails the test: CI must never pass by skipping. Every atnet start
is a fresh network, so accounts get unique handles.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from atproto import Client, Session, models
from atproto_client.exceptions import RequestErrorBase

from feedgen.ingest.jetstream import subscribe_events_url
from feedgen.settings import Settings
from feedgen.store.models import open_database, save_cursor

T = TypeVar('T')
PASSWORD = 'e2e-password'
FEEDS = ('latest', 'topic', 'hot', 'following', 'network', 'quiet')
"""The feeds the end-to-end generator serves (and publishes), each under its algorithm's name: three public ones
(`topic` keeps posts tagged #atproto) and three personalized ones."""
FEEDS_CONFIG = ''.join(f"[[feed]]\nrkey = '{name}'\nalgorithm = '{name}'\n\n" for name in FEEDS)


def _unavailable(reason: str) -> None:
    if os.environ.get('CI'):
        pytest.fail(f'CI is set but the local AT Protocol network is not available: {reason}', pytrace=False)
    pytest.skip(f'needs the local AT Protocol network: {reason}')


@dataclass(frozen=True)
class Network:
    """What atnet's `network.json` says, plus where atnet is installed."""

    plc: str
    pds: str
    appview: str
    home: Path

    @property
    def xrpc(self) -> str:
        return self.pds + '/xrpc'

    @property
    def firehose(self) -> str:
        return self.pds.replace('http://', 'ws://', 1)


def find_network() -> Network:
    """The running atnet with its AppView, or a skip (a failure in CI) saying what is missing."""
    path = os.environ.get('FEEDGEN_ATNET')
    if not path:
        _unavailable('FEEDGEN_ATNET is unset (start ../shared/atnet with --appview; export its state/network.json)')
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        _unavailable(f'cannot read FEEDGEN_ATNET={path}: {error}')
    if not info.get('appview'):
        _unavailable(f'{path} has no AppView: start atnet with --appview')
    home = Path(os.environ.get('ATNET_HOME') or Path(path).resolve().parent.parent)
    network = Network(plc=info['plc'], pds=info['pds'], appview=info['appview'], home=home)
    for url in (network.plc, network.pds, network.appview):
        try:
            httpx.get(url + '/_health' if url == network.plc else url + '/xrpc/_health', timeout=5).raise_for_status()
        except httpx.HTTPError as error:
            _unavailable(f'{url} does not answer ({error})')
    return network


@dataclass(frozen=True)
class Ozone:
    """Bluesky's labeler on atnet (`start.sh --ozone`): its DID, and HTTP Basic admin access to moderate."""

    url: str
    did: str
    admin: tuple[str, str]

    def label(self, subject: dict[str, str], create: tuple[str, ...] = (), negate: tuple[str, ...] = ()) -> None:
        """Applies (`create`) and removes (`negate`) label values on `subject` as a moderator does
        (`tools.ozone.moderation.emitEvent`); the labels are on Ozone's stream when it returns."""
        event = {'$type': 'tools.ozone.moderation.defs#modEventLabel', 'createLabelVals': list(create)}
        body = {'createdBy': self.did, 'event': event | {'negateLabelVals': list(negate)}, 'subject': subject}
        response = httpx.post(
            self.url + '/xrpc/tools.ozone.moderation.emitEvent', json=body, auth=self.admin, timeout=30
        )
        assert response.status_code == 200, response.text


def post_subject(post: models.AppBskyFeedPost.CreateRecordResponse) -> dict[str, str]:
    """A post as a moderation subject (a strongRef)."""
    return {'$type': 'com.atproto.repo.strongRef', 'uri': post.uri, 'cid': post.cid}


def account_subject(did: str) -> dict[str, str]:
    """An account as a moderation subject (its whole repository)."""
    return {'$type': 'com.atproto.admin.defs#repoRef', 'did': did}


def find_ozone() -> Ozone:
    """atnet's Ozone, or a skip (a failure in CI) when `network.json` has none (atnet started without --ozone)."""
    find_network()
    path = os.environ['FEEDGEN_ATNET']
    info = json.loads(Path(path).read_text())
    if not info.get('ozone'):
        _unavailable(f'{path} has no Ozone labeler: start ../shared/atnet with --ozone')
    ozone = Ozone(info['ozone'], info['ozoneDid'], (info['ozoneAdminUser'], info['ozoneAdminPassword']))
    try:
        httpx.get(ozone.url + '/xrpc/_health', timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        _unavailable(f'Ozone at {ozone.url} does not answer ({error})')
    return ozone


@dataclass
class Account:
    handle: str
    did: str
    client: Client

    def post(self, text: str, tags: list[str] | None = None) -> models.AppBskyFeedPost.CreateRecordResponse:
        now = self.client.get_current_time_iso()
        record = models.AppBskyFeedPost.Record(text=text, langs=['en'], tags=tags, created_at=now)
        return self.client.app.bsky.feed.post.create(self.did, record)

    def follow(self, other: Account) -> models.AppBskyGraphFollow.CreateRecordResponse:
        record = models.AppBskyGraphFollow.Record(subject=other.did, created_at=self.client.get_current_time_iso())
        return self.client.app.bsky.graph.follow.create(self.did, record)

    def unfollow(self, follow: models.AppBskyGraphFollow.CreateRecordResponse) -> None:
        self.client.app.bsky.graph.follow.delete(self.did, follow.uri.rsplit('/', 1)[-1])

    def block(self, other: Account) -> models.AppBskyGraphBlock.CreateRecordResponse:
        record = models.AppBskyGraphBlock.Record(subject=other.did, created_at=self.client.get_current_time_iso())
        return self.client.app.bsky.graph.block.create(self.did, record)

    def unblock(self, block: models.AppBskyGraphBlock.CreateRecordResponse) -> None:
        self.client.app.bsky.graph.block.delete(self.did, block.uri.rsplit('/', 1)[-1])

    def like(self, post: models.AppBskyFeedPost.CreateRecordResponse) -> models.AppBskyFeedLike.CreateRecordResponse:
        subject = models.ComAtprotoRepoStrongRef.Main(uri=post.uri, cid=post.cid)
        record = models.AppBskyFeedLike.Record(subject=subject, created_at=self.client.get_current_time_iso())
        return self.client.app.bsky.feed.like.create(self.did, record)

    def unlike(self, like: models.AppBskyFeedLike.CreateRecordResponse) -> None:
        self.client.app.bsky.feed.like.delete(self.did, like.uri.rsplit('/', 1)[-1])

    def repost(
        self, post: models.AppBskyFeedPost.CreateRecordResponse
    ) -> models.AppBskyFeedRepost.CreateRecordResponse:
        subject = models.ComAtprotoRepoStrongRef.Main(uri=post.uri, cid=post.cid)
        record = models.AppBskyFeedRepost.Record(subject=subject, created_at=self.client.get_current_time_iso())
        return self.client.app.bsky.feed.repost.create(self.did, record)

    def delete(self, post: models.AppBskyFeedPost.CreateRecordResponse) -> None:
        self.client.app.bsky.feed.post.delete(self.did, post.uri.rsplit('/', 1)[-1])

    def service_token(self, aud: str, lxm: str | None, exp: int | None = None) -> str:
        """A service JWT minted by this account's PDS (`com.atproto.server.getServiceAuth`)."""
        params = models.ComAtprotoServerGetServiceAuth.Params(aud=aud, lxm=lxm, exp=exp)
        return self.client.com.atproto.server.get_service_auth(params).token


def create_account(network: Network, name: str) -> Account:
    """A new account on the PDS with a unique handle `<name><random>.test`, logged in."""
    handle = f'{name}{secrets.token_hex(3)}.test'
    data = models.ComAtprotoServerCreateAccount.Data(handle=handle, password=PASSWORD, email=f'{handle}@example.test')
    Client(base_url=network.xrpc).com.atproto.server.create_account(data)
    client = Client(base_url=network.xrpc)
    client.login(handle, PASSWORD, fetch_bsky_profile=False)
    return Account(handle=handle, did=Session.decode(client.export_session_string()).did, client=client)


def eventually(check: Callable[[], T], timeout: float = 90.0, retry: tuple[type[Exception], ...] = ()) -> T:
    """Calls `check` until it returns without an AssertionError (or one of `retry`); re-raises it after `timeout` s.

    The default only bounds a hang: the AppView indexes and hydrates in seconds here, longer on a loaded CI machine.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return check()
        except (AssertionError, *retry):
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def register_plc_service(network: Network, endpoint: str) -> str:
    """Registers a did:plc whose document names `endpoint` as its `#bsky_fg` service, at atnet's PLC."""
    node = next(network.home.glob('node22/node_modules/node-linux-*/bin/node'), None)
    if node is None:
        _unavailable(f'no Node 22 under {network.home}/node22 (set ATNET_HOME)')
    result = subprocess.run(
        [str(node), 'register_feedgen.mjs', '--endpoint', endpoint, '--plc', network.plc],
        cwd=network.home / 'app',
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)['did']


class Feedgen:
    """`feedgen run` as a subprocess on a free loopback port, ingesting the PDS firehose (or, with `jetstream`, that
    Jetstream server) into a fresh store."""

    def __init__(
        self,
        network: Network,
        publisher: Account,
        folder: Path,
        service_did: str = '',
        port: int = 0,
        env: dict[str, str] | None = None,
        from_start: bool = True,
        jetstream: str = '',
        feeds_config: str = FEEDS_CONFIG,
    ):
        self.from_start = from_start
        self.port = port or free_port()
        self.url = f'http://127.0.0.1:{self.port}'
        folder.mkdir(parents=True, exist_ok=True)
        (folder / 'feeds.toml').write_text(feeds_config)
        self.env = {key: value for key, value in os.environ.items() if not key.startswith('FEEDGEN_')} | {
            'FEEDGEN_HOSTNAME': f'localhost:{self.port}',
            'FEEDGEN_PORT': str(self.port),
            'FEEDGEN_DATABASE': str(folder / 'feedgen.db'),
            'FEEDGEN_FIREHOSE': network.firehose,
            'FEEDGEN_PLC_URL': network.plc,
            'FEEDGEN_FEEDS_CONFIG': str(folder / 'feeds.toml'),
            'FEEDGEN_WORKERS': '1',
            'FEEDGEN_PDS_URL': network.pds,
            'FEEDGEN_PUBLISHER_HANDLE': publisher.handle,
            'FEEDGEN_PUBLISHER_PASSWORD': PASSWORD,
            'FEEDGEN_PUBLISHER_DID': publisher.did,
        }
        if service_did:
            self.env['FEEDGEN_SERVICE_DID'] = service_did
        if jetstream:
            self.env['FEEDGEN_JETSTREAM'] = jetstream
        self.env.update(env or {})
        self.settings = Settings.from_env(self.env, env_file=None)
        self.log = folder / 'feedgen.log'
        self.process: subprocess.Popen | None = None

    def feed_uri(self, rkey: str) -> str:
        return f'at://{self.settings.publisher_did}/app.bsky.feed.generator/{rkey}'

    def command(self, *args: str) -> subprocess.CompletedProcess:
        """Runs `feedgen ARGS` with this generator's settings."""
        return subprocess.run(
            [sys.executable, '-m', 'feedgen', *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def start(self, backfill: bool = False) -> None:
        """Starts `feedgen run` and waits until it serves. Ingest starts at the beginning of the PDS's stream
        (cursor 0), so nothing the tests write is missed while the websocket connects: a saved cursor 0. Without
        `from_start`, or with `backfill`, on a fresh store as a new deployment does (whose first start backfills,
        `feedgen.ingest.backfill`, unless FEEDGEN_BACKFILL_HOURS=0)."""
        if self.from_start and not backfill:
            db = open_database(self.settings.database)
            with db.atomic():
                jetstream = self.settings.jetstream
                save_cursor(subscribe_events_url(jetstream) if jetstream else self.settings.subscribe_url, 0)
            db.close()
        with self.log.open('w') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', 'feedgen', 'run', '--host', '127.0.0.1'],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def serving() -> None:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            httpx.get(self.url + '/xrpc/_health', timeout=2).raise_for_status()

        eventually(serving, timeout=60, retry=(httpx.HTTPError,))

    def wait_indexed(self, uri: str, timeout: float = 300.0) -> None:
        """Waits until ingest has stored the record `uri`. Ingest replays the PDS's stream from its start, which on
        a long-lived network (or a loaded machine) takes longer than the AppView's hydration the later checks wait
        for; the bound only stops a hang."""

        def stored() -> None:
            with contextlib.closing(sqlite3.connect(f'file:{self.settings.database}?mode=ro', uri=True)) as store:
                tables = ('post', 'like', 'repost', 'follow')
                rows = sum(
                    store.execute(f'SELECT count(*) FROM "{t}" WHERE uri = ?', (uri,)).fetchone()[0] for t in tables
                )
            assert rows, f'{uri} is not indexed yet'

        eventually(stored, timeout=timeout, retry=(sqlite3.OperationalError,))

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def skeleton(self, rkey: str, token: str | None = None, **params: Any) -> httpx.Response:
        """`getFeedSkeleton` asked of this generator directly, as the AppView does."""
        headers = {'Authorization': f'Bearer {token}'} if token else {}
        query = {'feed': self.feed_uri(rkey), **params}
        return httpx.get(self.url + '/xrpc/app.bsky.feed.getFeedSkeleton', params=query, headers=headers, timeout=10)

    def explain(self, rkey: str, post: str) -> dict[str, Any]:
        """This generator's `/explain` of `post` in the feed `rkey`, for an anonymous reader."""
        query = {'feed': self.feed_uri(rkey), 'post': post}
        response = httpx.get(self.url + '/explain', params=query, timeout=10)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def running_feedgen(
    network: Network,
    publisher: Account,
    folder: Path,
    service_did: str = '',
    port: int = 0,
    env: dict[str, str] | None = None,
    from_start: bool = True,
    jetstream: str = '',
    feeds_config: str = FEEDS_CONFIG,
    backfill: bool = False,
) -> Iterator[Feedgen]:
    """Starts a `Feedgen` (see `Feedgen.start` for `backfill`) and publishes its feeds; stops it afterwards (for
    fixtures)."""
    feedgen = Feedgen(network, publisher, folder, service_did, port, env, from_start, jetstream, feeds_config)
    feedgen.start(backfill)
    try:
        published = feedgen.command('publish')
        assert published.returncode == 0, published.stderr
        yield feedgen
    finally:
        feedgen.stop()


def feed_through_pds(viewer: Account, uri: str) -> list[models.AppBskyFeedDefs.FeedViewPost]:
    """`app.bsky.feed.getFeed` as a Bluesky client asks it: of the viewer's PDS, which mints the service JWT and
    proxies to the AppView, which calls the generator and hydrates the skeleton."""
    return viewer.client.app.bsky.feed.get_feed(models.AppBskyFeedGetFeed.Params(feed=uri, limit=100)).feed


RETRY_XRPC = (RequestErrorBase,)
"""What `eventually` retries while the AppView catches up (an unindexed feed record answers 400)."""
