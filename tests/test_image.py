"""The container image (Dockerfile), built with podman and run as an operator would: `feedgen demo` behind a
published port, `feedgen run` against the local network's firehose with its store in a named volume, the image's
HEALTHCHECK, a clean `podman stop`, and the PostgreSQL deployment of `compose.yaml`.

A fresh store backfills from the start of the PDS's stream (`FEEDGEN_BACKFILL_HOURS`), so a post made as soon as
the server answers is in the stream ingest reads, connected yet or not."""

from __future__ import annotations

import secrets
from functools import partial
from urllib.parse import urlsplit

import httpx
import pytest

from tests.atnet import create_account, eventually, find_network, free_port
from tests.forward import forwarding
from tests.podman import IMAGE, POSTGRES_IMAGE, Container, build_images, compose, container, unique, volume

pytestmark = pytest.mark.image


@pytest.fixture(scope='module', autouse=True)
def image() -> None:
    build_images()


def health(base: str) -> None:
    httpx.get(base + '/xrpc/_health', timeout=2).raise_for_status()


def feed_uris(base: str) -> list[str]:
    described = httpx.get(base + '/xrpc/app.bsky.feed.describeFeedGenerator', timeout=10).json()
    return [feed['uri'] for feed in described['feeds']]


def skeleton(base: str, uri: str) -> httpx.Response:
    return httpx.get(base + '/xrpc/app.bsky.feed.getFeedSkeleton', params={'feed': uri, 'limit': 100}, timeout=10)


def has_posts(base: str, uri: str) -> None:
    response = skeleton(base, uri)
    assert response.status_code == 200, f'{uri}: {response.text}'
    assert response.json()['feed'], f'{uri}: no posts yet'


def latest(base: str) -> list[str]:
    uri = next(uri for uri in feed_uris(base) if uri.endswith('/latest'))
    response = skeleton(base, uri)
    assert response.status_code == 200, response.text
    return [item['post'] for item in response.json()['feed']]


def serving(base: str, box: Container) -> None:
    """Waits until the container's server answers (a bound hang: the image's Python starts in seconds)."""

    def answers() -> None:
        assert box.running(), box.logs()[-3000:]
        health(base)

    eventually(answers, timeout=90, retry=(httpx.HTTPError,))


def assert_stops_cleanly(box: Container) -> None:
    code = box.stop()
    logs = box.logs()
    assert code == 0, f'exit code {code} after podman stop:\n{logs[-3000:]}'
    assert 'Traceback' not in logs, logs[-3000:]


def test_demo_serves_every_feed_through_a_published_port_and_stops_cleanly() -> None:
    port = free_port()
    base = f'http://127.0.0.1:{port}'
    with container(
        unique('demo'), '-p', f'127.0.0.1:{port}:8000', IMAGE, 'feedgen', 'demo', '--host', '0.0.0.0'
    ) as box:
        serving(base, box)
        uris = feed_uris(base)
        assert {uri.rsplit('/', 1)[-1] for uri in uris} >= {'latest', 'following'}, uris
        for uri in uris:  # every feed, the personalized ones read as the demo's viewer
            eventually(partial(has_posts, base, uri), timeout=90, retry=(httpx.HTTPError,))
        health = box.healthcheck()
        assert health.returncode == 0, health.stdout + health.stderr
        assert_stops_cleanly(box)


def in_latest(base: str, uri: str) -> None:
    assert uri in latest(base)


@pytest.mark.atnet
def test_run_serves_posts_made_after_it_started_and_keeps_its_store_in_a_volume() -> None:
    network = find_network()
    author = create_account(network, 'image')
    port = free_port()
    base = f'http://127.0.0.1:{port}'
    settings = {
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_PORT': str(port),
        'FEEDGEN_FIREHOSE': network.firehose,
        'FEEDGEN_PLC_URL': network.plc,
        'FEEDGEN_WORKERS': '1',
    }
    with volume(unique('store')) as store:
        # The local network listens on the host's loopback only: the container shares the host's network.
        options = ['--network', 'host', '-v', f'{store}:/data', *(f'--env={k}={v}' for k, v in settings.items())]
        with container(unique('run'), *options, IMAGE, 'feedgen', 'run', '--host', '127.0.0.1') as box:
            serving(base, box)
            posts = [author.post(f'made after the container started, {i}').uri for i in range(3)]

            def served() -> None:
                assert [uri for uri in latest(base) if uri in posts] == posts[::-1]

            eventually(served, timeout=120, retry=(httpx.HTTPError,))
            health = box.healthcheck()
            assert health.returncode == 0, health.stdout + health.stderr
            assert_stops_cleanly(box)
        # Only a server this time, no ingest: what it serves was kept in the volume.
        with container(unique('serve'), *options, IMAGE, 'feedgen', 'serve', '--host', '127.0.0.1') as box:
            serving(base, box)
            assert set(posts) <= set(latest(base))


@pytest.mark.atnet
def test_compose_deployment_on_postgresql_serves_posts_from_the_firehose() -> None:
    network = find_network()
    author = create_account(network, 'compose')
    port = free_port()
    base = f'http://127.0.0.1:{port}'
    pds = urlsplit(network.pds)
    with forwarding(pds.hostname or '127.0.0.1', pds.port or 80) as firehose_port:
        env = {
            'FEEDGEN_IMAGE': IMAGE,
            'FEEDGEN_POSTGRES_IMAGE': POSTGRES_IMAGE,
            'POSTGRES_PASSWORD': secrets.token_hex(8),
            'FEEDGEN_HOSTNAME': f'localhost:{port}',
            'FEEDGEN_FIREHOSE': f'ws://host.containers.internal:{firehose_port}',
            'FEEDGEN_PUBLISH': f'127.0.0.1:{port}',
        }
        with compose(unique('compose'), env):
            eventually(partial(health, base), timeout=120, retry=(httpx.HTTPError,))
            post = author.post('made while the compose deployment runs').uri
            eventually(partial(in_latest, base, post), timeout=120, retry=(httpx.HTTPError,))
