"""feedgen.ranking.plugins: discovering algorithms (built-in, plugin folder) and building feeds from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from feedgen.ranking.algorithm import Algorithm, FeedRequest, Page
from feedgen.ranking.plugins import PluginError, discover_algorithms, load_feeds, make_feed
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from tests.conftest import PUBLISHER, feed_uri

PLUGIN = """
from feedgen.ranking.algorithm import Algorithm, FeedRequest, Item, Page


class Echo(Algorithm):
    name = 'echo'
    display_name = 'Echo'
    description = 'Always the same post.'

    def page(self, request: FeedRequest) -> Page:
        return Page(items=[Item(post='at://did:plc:x/app.bsky.feed.post/1', context='echo')])
"""


def test_builtins_are_discovered() -> None:
    algorithms = discover_algorithms()
    assert {'latest', 'topic'} <= set(algorithms)
    assert all(issubclass(algorithm, Algorithm) for algorithm in algorithms.values())


def test_plugin_folder_algorithm_is_loaded_and_served(tmp_path: Path) -> None:
    folder = tmp_path / 'plugins'
    folder.mkdir()
    (folder / 'echo.py').write_text(PLUGIN)
    algorithms = discover_algorithms(folder)
    assert 'echo' in algorithms
    settings = Settings(hostname='x.test', publisher_did=PUBLISHER, database=str(tmp_path / 'db'), plugins_dir=folder)
    client = create_app(settings).test_client()
    response = client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed_uri('echo')})
    assert response.json['feed'] == [{'post': 'at://did:plc:x/app.bsky.feed.post/1', 'feedContext': 'echo'}]
    assert response.json['algorithm'] == {'name': 'echo', 'version': load_feeds(algorithms)['echo'].version}


def test_two_algorithms_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / 'dupe.py').write_text(PLUGIN.replace("'echo'", "'latest'"))
    with pytest.raises(PluginError, match="'latest' is used by"):
        discover_algorithms(tmp_path)


def test_missing_plugin_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match='does not exist'):
        discover_algorithms(tmp_path / 'nope')


def test_feeds_config_declares_instances_with_params(tmp_path: Path) -> None:
    config = tmp_path / 'feeds.toml'
    config.write_text(
        '[[feed]]\nrkey = "cats"\nalgorithm = "topic"\ndisplay_name = "Cats"\n'
        '[feed.params]\ntags = ["cats"]\nlangs = ["en"]\n\n'
        '[[feed]]\nrkey = "all"\nalgorithm = "latest"\n'
    )
    feeds = load_feeds(discover_algorithms(), config)
    assert list(feeds) == ['cats', 'all']
    assert feeds['cats'].display_name == 'Cats'
    assert feeds['cats'].algorithm.params.tags == ('cats',)
    assert feeds['all'].description == discover_algorithms()['latest'].description


@pytest.mark.parametrize(
    ('spec', 'message'),
    [
        ({'algorithm': 'nope'}, "unknown algorithm 'nope'"),
        ({'algorithm': 'topic', 'params': {'colour': 'red'}}, r"unknown parameter\(s\) \['colour'\]"),
        ({'algorithm': 'topic', 'params': {'tags': 'cats'}}, 'expected a list'),
        ({'algorithm': 'topic', 'params': {'no_replies': 'yes'}}, 'expected bool'),
        ({'algorithm': 'latest', 'params': {'x': 1}}, 'takes no parameters'),
        ({'algorithm': 'latest', 'rkey': 'has space'}, 'not a valid record key'),
    ],
)
def test_invalid_feed_declarations_say_what_is_wrong(spec: dict, message: str) -> None:
    with pytest.raises(PluginError, match=message):
        make_feed(discover_algorithms(), spec)


def test_duplicate_rkeys_are_refused(tmp_path: Path) -> None:
    config = tmp_path / 'feeds.toml'
    config.write_text('[[feed]]\nalgorithm = "latest"\n\n[[feed]]\nalgorithm = "latest"\n')
    with pytest.raises(PluginError, match='declared twice'):
        load_feeds(discover_algorithms(), config)


def test_version_is_a_content_hash_of_code_and_parameters() -> None:
    algorithms = discover_algorithms()
    version = load_feeds(algorithms)['latest'].version
    assert re.fullmatch(r'[0-9a-f]{12}', version)
    assert version == load_feeds(discover_algorithms())['latest'].version
    assert version != load_feeds(algorithms)['topic'].version
    cats = make_feed(algorithms, {'rkey': 'cats', 'algorithm': 'topic', 'params': {'tags': ['cats']}})
    dogs = make_feed(algorithms, {'rkey': 'dogs', 'algorithm': 'topic', 'params': {'tags': ['dogs']}})
    assert cats.version != dogs.version
    assert make_feed(algorithms, {'rkey': 'same', 'algorithm': 'topic', 'params': {'tags': ['cats']}}).version == (
        cats.version
    )


def test_base_class_page_must_be_implemented() -> None:
    class Bare(Algorithm):
        name = 'bare'
        display_name = 'Bare'
        description = 'Nothing.'

    with pytest.raises(NotImplementedError):
        Bare().page(FeedRequest(limit=1))
    assert Page(items=[]).cursor is None
