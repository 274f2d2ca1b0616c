"""An algorithm written outside the repository, as an installed package, is discovered, listed, served, published.

The package is the one `feedgen new-algorithm --package` scaffolds, built and installed by a real
`pip install --no-deps --no-build-isolation` into a private folder (`--target`) that only this test puts on
`sys.path`: the installed `.dist-info` provides its `feedgen.algorithms` entry point, and nothing is installed
into the interpreter other tests (or other people on this machine) share.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
from click.testing import CliRunner

from feedgen.authoring.builder import StoreBuilder
from feedgen.cli import main
from feedgen.publish import wanted_fields
from feedgen.ranking.plugins import discover_algorithms, load_feeds
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from tests.conftest import feed_uri
from tests.scaffolds import assert_scaffold_tests_pass

NAME = 'liked_elsewhere'
MODULE = f'feedgen_{NAME}'


@pytest.fixture(scope='module')
def package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The scaffolded package's source folder and the folder pip installed it into."""
    root = tmp_path_factory.mktemp('plugin')
    source, site = root / 'pkg', root / 'site'
    result = CliRunner().invoke(main, ['new-algorithm', NAME, '--package', str(source)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pip = [sys.executable, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-index']
    pip += ['--no-deps', '--no-build-isolation', '--target', str(site), str(source)]
    subprocess.run(pip, check=True, timeout=300, capture_output=True)
    return source, site


@pytest.fixture
def installed(package: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    _, site = package
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop(MODULE, None)


def test_pip_installed_the_module_and_its_entry_point(package: tuple[Path, Path]) -> None:
    _, site = package
    (dist_info,) = site.glob('feedgen_liked_elsewhere-*.dist-info')
    assert f'[feedgen.algorithms]\n{NAME} = {MODULE}' in (dist_info / 'entry_points.txt').read_text()
    assert (site / f'{MODULE}.py').exists()


def test_it_is_not_found_unless_installed() -> None:
    assert NAME not in discover_algorithms()


def test_it_is_discovered_and_listed(installed: Path, tmp_path: Path) -> None:
    algorithm = discover_algorithms()[NAME]
    assert algorithm.__module__ == MODULE
    assert algorithm.source() == f'feedgen-liked-elsewhere 0.1.0: {MODULE}.py'
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'x.db'), 'FEEDGEN_FEEDS_CONFIG': '', 'FEEDGEN_PLUGINS_DIR': ''}
    result = CliRunner().invoke(main, ['algorithms', '--json'], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert NAME in listing['algorithms']
    (row,) = [row for row in listing['feeds'] if row['rkey'] == NAME]
    assert row['version'] == load_feeds(discover_algorithms())[NAME].version
    assert row['source'] == algorithm.source()


def test_it_is_served_explained_and_on_the_transparency_page(
    installed: Path, settings: Settings, db: peewee.Database
) -> None:
    store = StoreBuilder(db)
    liked = store.make_post('alice', 'people like this')
    unliked = store.make_post('bob', 'nobody liked this')
    store.make_like('carol', liked)
    client = create_app(settings, db=db).test_client()
    with client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed_uri(NAME)}) as response:
        body = response.json
    version = load_feeds(discover_algorithms())[NAME].version
    assert response.status_code == 200, body
    assert body['feed'] == [  # its default feed: min_likes 0, newest first
        {'post': unliked, 'feedContext': '0 likes, newest first'},
        {'post': liked, 'feedContext': '1 likes, newest first'},
    ]
    assert body['algorithm'] == {'name': NAME, 'version': version}
    assert client.get(f'/receipts/{body["reqId"]}').json['algorithm']['version'] == version
    explained = client.get('/explain', query_string={'feed': feed_uri(NAME), 'post': liked}).json
    assert explained['explanation']['filters']['likes']['has'] == 1
    listed = [f for f in client.get('/algorithms?format=json').json['feeds'] if f['rkey'] == NAME]
    assert listed[0]['algorithm']['version'] == version


def test_its_published_record_names_its_version(installed: Path, settings: Settings) -> None:
    feed = load_feeds(discover_algorithms())[NAME]
    record = wanted_fields(feed, settings.service_did)
    assert record['did'] == settings.service_did
    assert record['displayName'] == 'Liked elsewhere'
    assert f'(version {feed.version})' in record['description']
    assert f'Source: feedgen-liked-elsewhere 0.1.0: {MODULE}.py' in record['description']


def test_its_own_scaffolded_tests_pass(package: tuple[Path, Path]) -> None:
    source, site = package
    assert_scaffold_tests_pass(source, site)
