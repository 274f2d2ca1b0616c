"""feedgen.settings: defaults, derived values, .env files and one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedgen.settings import Settings, SettingsError


def test_defaults_derive_the_service_and_publisher_dids() -> None:
    settings = Settings.from_env({}, env_file=None)
    assert settings.service_did == 'did:web:localhost%3A8000'
    assert settings.publisher_did == settings.service_did
    assert settings.service_endpoint == 'http://localhost:8000'
    assert settings.subscribe_url == 'wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos'


def test_environment_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            'FEEDGEN_HOSTNAME': 'feeds.example.com',
            'FEEDGEN_PUBLISHER_DID': 'did:plc:abc123',
            'FEEDGEN_FIREHOSE': 'ws://localhost:2583/xrpc',
            'FEEDGEN_BATCH_SIZE': '500',
            'FEEDGEN_RETENTION_HOURS': '1.5',
            'FEEDGEN_GRAPH_WAIT_SECONDS': '0',
            'FEEDGEN_GRAPH_MAX_FOLLOWS': '5000',
        },
        env_file=None,
    )
    assert settings.service_did == 'did:web:feeds.example.com'
    assert settings.service_endpoint == 'https://feeds.example.com'
    assert settings.publisher_did == 'did:plc:abc123'
    assert settings.subscribe_url == 'ws://localhost:2583/xrpc/com.atproto.sync.subscribeRepos'
    assert (settings.batch_size, settings.retention_hours) == (500, 1.5)
    assert (settings.graph_wait_seconds, settings.graph_max_follows, settings.graph_retry_seconds) == (0, 5000, 60)


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env = tmp_path / '.env'
    env.write_text('FEEDGEN_HOSTNAME=from-file.example\nFEEDGEN_DATABASE=file.db\n')
    settings = Settings.from_env({'FEEDGEN_DATABASE': 'env.db'}, env_file=env)
    assert (settings.hostname, settings.database) == ('from-file.example', 'env.db')


@pytest.mark.parametrize(
    ('name', 'value'),
    [
        ('FEEDGEN_PUBLISHER_DID', 'alice.bsky.social'),
        ('FEEDGEN_SERVICE_DID', 'did:'),
        ('FEEDGEN_FIREHOSE', 'https://bsky.network'),
        ('FEEDGEN_BATCH_SIZE', 'many'),
        ('FEEDGEN_BATCH_SIZE', '0'),
        ('FEEDGEN_RETENTION_HOURS', '-1'),
        ('FEEDGEN_HOSTNAME', 'https://x.com/'),
        ('FEEDGEN_PLC_URL', 'plc.directory'),
        ('FEEDGEN_GRAPH_WAIT_SECONDS', '61'),
        ('FEEDGEN_GRAPH_WAIT_SECONDS', 'soon'),
        ('FEEDGEN_GRAPH_RETRY_SECONDS', '0'),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value}, env_file=None)
    message = str(raised.value)
    assert message.startswith(name + ':')
    assert '\n' not in message


def test_require_names_the_missing_setting() -> None:
    with pytest.raises(SettingsError, match='FEEDGEN_PUBLISHER_PASSWORD is required'):
        Settings(publisher_handle='me.test').require('publisher_handle', 'publisher_password')
