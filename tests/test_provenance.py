"""feedgen.ranking.provenance: a feed's version covers the code its pages depend on, and the served bundle proves it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import feedgen_algorithms
import pytest
from flask.testing import FlaskClient

import feedgen
from feedgen.ranking.algorithm import FeedRequest
from feedgen.ranking.languages import reader_feed
from feedgen.ranking.plugins import discover_algorithms, load_feeds
from feedgen.ranking.provenance import SERVING_MODULES, algorithm_files, code_files, module_files, package_locator
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from tests.conftest import PUBLISHER, feed_uri

BUILTINS = sorted(discover_algorithms())
UNRELATED = ('feedgen/serve/metrics.py', 'feedgen/ingest/firehose.py', 'feedgen/cli.py', 'feedgen/publish.py')
"""Modules no feed's pages depend on: serving plumbing, ingest, the command line."""


def digest(files: tuple[tuple[str, str], ...]) -> str:
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


@pytest.fixture(scope='module')
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the installed feedgen and feedgen_algorithms source trees, to edit."""
    root = tmp_path_factory.mktemp('copy')
    for package in (feedgen, feedgen_algorithms):
        shutil.copytree(Path(package.__file__).parent, root / package.__name__, ignore=shutil.ignore_patterns('data'))
    return root


def roots(copy: Path) -> dict[str, Path]:
    return {'feedgen': copy / 'feedgen', 'feedgen_algorithms': copy / 'feedgen_algorithms'}


@pytest.mark.parametrize('name', BUILTINS)
def test_every_builtin_version_follows_edits_to_its_dependencies_and_ignores_the_rest(copy: Path, name: str) -> None:
    algorithm = discover_algorithms()[name]
    installed = algorithm_files(algorithm)
    assert code_files(algorithm.__module__, roots(copy)) == installed  # the copy hashes as the installed code
    paths = [path for path, _ in installed]
    assert f'{algorithm.__module__.replace(".", "/")}.py' in paths
    assert {'feedgen/ranking/algorithm.py', 'feedgen/ranking/plugins.py', 'feedgen/store/models.py'} <= set(paths)
    for path in [*paths[:: max(1, len(paths) // 5)], paths[-1]]:  # a spread of its dependencies, and its own module
        edited = copy / path
        original = edited.read_text()
        edited.write_text(original + '\n# an edit\n')
        try:
            assert code_files(algorithm.__module__, roots(copy)) != installed, path
        finally:
            edited.write_text(original)
    for path in UNRELATED:
        assert path not in paths
        edited = copy / path
        original = edited.read_text()
        edited.write_text(original + '\n# an edit\n')
        try:
            assert code_files(algorithm.__module__, roots(copy)) == installed, path
        finally:
            edited.write_text(original)


def test_the_static_graph_holds_every_project_module_that_importing_an_algorithm_loads() -> None:
    script = (
        'import sys, importlib\n'
        f'for name in {[*SERVING_MODULES]!r} + sys.argv[1:]: importlib.import_module(name)\n'
        "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in ('feedgen', 'feedgen_algorithms')))\n"
    )
    for algorithm in discover_algorithms().values():
        loaded = subprocess.run(
            [sys.executable, '-c', script, algorithm.__module__], capture_output=True, text=True, check=True
        ).stdout.split()
        hashed = {path for path, _ in algorithm_files(algorithm)}
        missing = [
            m for m in loaded if not ({f'{m.replace(".", "/")}.py', f'{m.replace(".", "/")}/__init__.py'} & hashed)
        ]
        assert not missing, f'{algorithm.name} loads {missing} but its version does not cover them'


def test_the_graph_follows_relative_lazy_and_submodule_imports_but_not_type_checking_ones(tmp_path: Path) -> None:
    package = tmp_path / 'plug'
    (package / 'sub').mkdir(parents=True)
    (package / '__init__.py').write_text('')
    (package / 'feeds.py').write_text(
        'from typing import TYPE_CHECKING\n'
        'from . import helpers\n'
        'from .sub import deep\n'
        'import json\n'
        'if TYPE_CHECKING:\n    from plug import typing_only\n'
        'def page():\n    from plug.lazy import late\n    return late\n'
    )
    for name in ('helpers', 'typing_only', 'lazy', 'unused'):
        (package / f'{name}.py').write_text('')
    (package / 'sub' / '__init__.py').write_text('')
    (package / 'sub' / 'deep.py').write_text('from ..helpers import x\n')
    found = module_files(['plug.feeds'], package_locator({'plug': package}))
    assert sorted(found) == ['plug', 'plug.feeds', 'plug.helpers', 'plug.lazy', 'plug.sub', 'plug.sub.deep']


TWO_IN_ONE = """
from feedgen.ranking import Algorithm, Page


class First(Algorithm):
    name = 'first'
    display_name = 'First'
    description = 'Nothing.'

    def page(self, request):
        return Page([])


class Second(First):
    name = 'second'
    display_name = 'Second'
"""


@pytest.fixture
def two_in_one(tmp_path: Path) -> Path:
    folder = tmp_path / 'plugins'
    folder.mkdir()
    (folder / 'pair.py').write_text(TWO_IN_ONE)
    return folder


def test_two_algorithms_in_one_file_have_distinct_versions_whose_bundles_name_them(two_in_one: Path) -> None:
    feeds = load_feeds(discover_algorithms(two_in_one))
    first, second = feeds['first'], feeds['second']
    assert first.version != second.version
    for feed, kind in ((first, 'First'), (second, 'Second')):
        bundle = json.loads(feed.source_bundle())
        assert bundle['class'] == f'feedgen_plugin_pair.{kind}'
        assert bundle['algorithm'] == feed.algorithm.name
        assert {'path': 'feedgen_plugin_pair.py', 'source': TWO_IN_ONE} in bundle['files']


def served_version(client: FlaskClient, rkey: str) -> str:
    bundle = client.get(f'/algorithms/{rkey}/source')
    assert bundle.status_code == 200
    assert bundle.content_type == 'application/json'
    assert bundle.headers['X-Feed-Version'] == hashlib.sha256(bundle.get_data()).hexdigest()[:12]
    return hashlib.sha256(bundle.get_data()).hexdigest()[:12]


def test_the_served_source_recomputes_to_the_version_every_answer_carries(client: FlaskClient) -> None:
    described = client.get('/xrpc/app.bsky.feed.describeFeedGenerator').json['feeds']
    listed = {feed['rkey']: feed for feed in client.get('/algorithms?format=json').json['feeds']}
    for entry in described:
        rkey = entry['uri'].rsplit('/', 1)[1]
        version = served_version(client, rkey)
        assert entry['algorithm']['version'] == version
        assert listed[rkey]['algorithm']['version'] == version
        assert listed[rkey]['algorithm']['sourceBundle'] == f'/algorithms/{rkey}/source'
        skeleton = client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed_uri(rkey)})
        if skeleton.status_code == 200:  # personalized feeds answer anonymous readers with an error
            assert skeleton.json['algorithm']['version'] == version
    bundle = json.loads(client.get('/algorithms/hot/source').get_data())
    sources = {file['path']: file['source'] for file in bundle['files']}
    assert sources['feedgen_algorithms/hot.py'] == Path(feedgen_algorithms.__file__).with_name('hot.py').read_text()
    assert bundle['params'] == listed['hot']['params']


def test_a_plugin_feed_with_params_serves_its_own_bundle(two_in_one: Path, tmp_path: Path) -> None:
    settings = Settings(
        hostname='x.test', publisher_did=PUBLISHER, database=str(tmp_path / 'db'), plugins_dir=two_in_one
    )
    client = create_app(settings).test_client()
    assert served_version(client, 'first') != served_version(client, 'second')
    missing = client.get('/algorithms/nope/source')
    assert missing.status_code == 404
    assert missing.json['error'] == 'UnknownFeed'


def test_a_reader_language_variant_keeps_its_feed_version(client: FlaskClient) -> None:
    version = served_version(client, 'topic')  # its langs are empty: it serves each reader's languages
    feed = load_feeds(discover_algorithms())['topic']
    variant = reader_feed(feed, FeedRequest(limit=1, langs=('pt-br',)))
    assert variant.algorithm.params != feed.algorithm.params
    assert variant.version == feed.version == version
    answer = client.get(
        '/xrpc/app.bsky.feed.getFeedSkeleton',
        query_string={'feed': feed_uri('topic')},
        headers={'Accept-Language': 'pt-BR'},
    )
    assert answer.status_code == 200
    assert answer.json['algorithm']['version'] == version
