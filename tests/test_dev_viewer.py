"""FEEDGEN_DEV_VIEWER: acting as a reader on `feedgen serve` to try personalized feeds, on loopback only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from feedgen.authoring.builder import StoreBuilder
from feedgen.cli import main
from feedgen.settings import Settings, SettingsError, is_loopback
from feedgen.store.models import open_database
from tests.processes import CLEAN_ENV, FeedgenProcess, free_port

READER = 'did:plc:reader'
PUBLISHER = 'did:plc:publisher0000000000000000'


def feed_uri(rkey: str) -> str:
    return f'at://{PUBLISHER}/app.bsky.feed.generator/{rkey}'


@pytest.mark.parametrize('host', ['127.0.0.1', '127.0.0.2', '::1', '[::1]', 'localhost'])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize('host', ['0.0.0.0', '::', '192.168.1.20', '10.0.0.1', 'feeds.example.com', ''])
def test_public_or_unknown_addresses(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(SettingsError, match='not a loopback address'):
        Settings(dev_viewer=READER).loopback_only(host)
    Settings().loopback_only(host)  # off: any address


def test_it_must_be_a_did(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match='FEEDGEN_DEV_VIEWER'):
        Settings.from_env({'FEEDGEN_DEV_VIEWER': 'alice.test'}, env_file=None)
    assert Settings.from_env({}, env_file=None).dev_viewer == ''


@pytest.mark.parametrize('command', [['serve', '--host', '0.0.0.0'], ['run'], ['serve', '--host', '192.168.1.20']])
def test_serving_refuses_it_on_a_public_address(tmp_path: Path, command: list[str]) -> None:
    env = CLEAN_ENV | {'FEEDGEN_DEV_VIEWER': READER, 'FEEDGEN_DATABASE': str(tmp_path / 'f.db')}
    result = CliRunner().invoke(main, [*command, '--port', str(free_port())], env=env)
    assert result.exit_code == 2
    assert result.output.startswith('error: FEEDGEN_DEV_VIEWER reads every request without a token as did:plc:reader')
    assert 'not a loopback address' in result.output
    assert not (tmp_path / 'f.db').exists()  # refused before opening the store or starting anything


def test_feedgen_serve_reads_an_anonymous_request_as_the_dev_viewer(tmp_path: Path) -> None:
    database = tmp_path / 'f.db'
    db = open_database(database)
    store = StoreBuilder(db)
    followed = [store.make_post('alice', f'post {i}') for i in range(3)]
    store.make_post('stranger', 'not followed')
    store.make_follow(READER, 'alice')
    db.close()
    port = free_port()
    env = {
        'FEEDGEN_DATABASE': str(database),
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_PUBLISHER_DID': PUBLISHER,
        'FEEDGEN_PLC_URL': f'http://127.0.0.1:{free_port()}',  # nothing listens: the reader's PDS is not looked up
        'FEEDGEN_GRAPH_WAIT_SECONDS': '0',
    }
    base = f'http://127.0.0.1:{port}'
    skeleton = f'{base}/xrpc/app.bsky.feed.getFeedSkeleton'
    with FeedgenProcess(['serve', '--port', str(port), '--workers', '1'], env, tmp_path, 'plain') as plain:
        plain.wait_http(f'{base}/xrpc/_health')
        refused = httpx.get(skeleton, params={'feed': feed_uri('following')}, timeout=30)
        assert (refused.status_code, refused.json()['error']) == (401, 'AuthRequired')
    assert plain.process is not None and plain.process.returncode == 0
    env['FEEDGEN_DEV_VIEWER'] = READER
    with FeedgenProcess(['serve', '--port', str(port), '--workers', '1'], env, tmp_path, 'dev') as dev:
        dev.wait_http(f'{base}/xrpc/_health')
        answer = httpx.get(skeleton, params={'feed': feed_uri('following')}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert [item['post'] for item in answer.json()['feed']] == followed[::-1]
        bad_token = httpx.get(
            skeleton, params={'feed': feed_uri('following')}, headers={'Authorization': 'Bearer x'}, timeout=30
        )
        assert bad_token.status_code == 401  # a token is still checked
    assert 'FEEDGEN_DEV_VIEWER: a request without a service JWT reads as did:plc:reader' in dev.log()
