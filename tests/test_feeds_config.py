"""feeds.example.toml and feed declarations: every algorithm declared, bad parameters refused in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from feedgen.cli import main
from feedgen.ranking.plugins import PluginError, discover_algorithms, load_feeds

EXAMPLE = Path(__file__).parent.parent / 'feeds.example.toml'


def test_the_example_declares_feeds_of_every_built_in_algorithm() -> None:
    algorithms = discover_algorithms()
    feeds = load_feeds(algorithms, EXAMPLE)
    assert {feed.algorithm.name for feed in feeds.values()} == set(algorithms)
    python = feeds['python'].algorithm.params
    assert (python.tags, python.langs, python.no_replies) == (('python', 'pypi'), ('en',), True)
    assert feeds['bluesky-dev'].algorithm.params.keywords == ('atproto', 'at protocol', 'feed generator')
    assert feeds['hot-pt'].algorithm.params.window_hours == 24.0
    assert feeds['hot-pt'].display_name == 'Em alta'
    assert feeds['hot'].algorithm.state_key() != feeds['hot-pt'].algorithm.state_key()
    assert feeds['network'].algorithm.params.half_life_hours == 12.0


def test_the_example_is_served_by_feedgen_algorithms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('FEEDGEN_FEEDS_CONFIG', str(EXAMPLE))
    result = CliRunner().invoke(main, ['algorithms'])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f'{len(discover_algorithms())} algorithms:')
    assert 'hot-pt' in result.output


@pytest.mark.parametrize(
    ('algorithm', 'params', 'message'),
    [
        ('hot', 'window_hours = -1', "feed 'mine': hot: window_hours: must be greater than 0, got -1.0"),
        ('hot', 'windw_hours = 3', "feed 'mine': hot: unknown parameter(s) ['windw_hours']; known: ["),
        ('network', 'half_life_hours = "six"', "feed 'mine': network.half_life_hours: expected float, got 'six'"),
        ('quiet', 'no_replies = 1', "feed 'mine': quiet.no_replies: expected bool, got 1"),
        ('catch-up', 'langs = "en"', "feed 'mine': catch-up.langs: expected a list, got 'en'"),
        ('topic', 'tags = ["two words"]', "feed 'mine': topic: tags: a hashtag must be one non-empty word"),
        ('topic', 'keywords = [""]', "feed 'mine': topic: keywords: a keyword must not be empty"),
    ],
)
def test_bad_parameters_stop_startup_naming_the_feed(
    tmp_path: Path, algorithm: str, params: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / 'feeds.toml'
    config.write_text(f'[[feed]]\nrkey = "mine"\nalgorithm = "{algorithm}"\n[feed.params]\n{params}\n')
    with pytest.raises(PluginError) as error:
        load_feeds(discover_algorithms(), config)
    assert str(error.value).startswith(message)
    monkeypatch.setenv('FEEDGEN_FEEDS_CONFIG', str(config))
    result = CliRunner().invoke(main, ['algorithms'])
    assert result.exit_code == 2
    assert result.output.startswith(f'error: {message}')
    assert len(result.output.strip().splitlines()) == 1
