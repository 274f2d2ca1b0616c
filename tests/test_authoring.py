"""feedgen new-algorithm and feedgen preview: scaffolds whose tests pass, previews that explain each post."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.preview import parse_param
from feedgen.cli import main
from feedgen.ranking.plugins import PluginError
from feedgen.store.models import Follow
from tests.conftest import CAPTURE_20
from tests.scaffolds import assert_scaffold_tests_pass


def run(*args: str, env: dict[str, str] | None = None) -> object:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_new_algorithm_in_a_project_writes_a_module_whose_test_passes(tmp_path: Path) -> None:
    (tmp_path / 'algorithms').mkdir()
    (tmp_path / 'algorithms' / '__init__.py').write_text('')
    result = run('new-algorithm', 'liked_lately', '--project', str(tmp_path))
    assert result.exit_code == 0, result.output
    module = tmp_path / 'algorithms' / 'liked_lately.py'
    test = tmp_path / 'tests' / 'test_algorithm_liked_lately.py'
    assert f'wrote {module}' in result.output and f'wrote {test}' in result.output
    assert "name = 'liked_lately'" in module.read_text() and 'class LikedLately(Algorithm)' in module.read_text()
    # The project's own algorithms package comes first on the path, as in this repository.
    assert_scaffold_tests_pass(tmp_path, tmp_path, str(test))


def test_new_algorithm_never_overwrites_and_refuses_bad_names(tmp_path: Path) -> None:
    assert run('new-algorithm', 'mine', '--project', str(tmp_path)).exit_code == 0
    again = run('new-algorithm', 'mine', '--project', str(tmp_path))
    assert again.exit_code == 2
    assert 'already exists' in again.output
    bad = run('new-algorithm', 'My-Feed', '--project', str(tmp_path))
    assert bad.exit_code == 2
    assert 'lower-case letters' in bad.output


def test_new_algorithm_package_declares_the_entry_point(tmp_path: Path) -> None:
    result = run('new-algorithm', 'popular', '--package', str(tmp_path / 'pkg'))
    assert result.exit_code == 0, result.output
    pyproject = (tmp_path / 'pkg' / 'pyproject.toml').read_text()
    assert "[project.entry-points.'feedgen.algorithms']\npopular = 'feedgen_popular'" in pyproject
    assert (tmp_path / 'pkg' / 'feedgen_popular.py').exists()
    assert 'from feedgen_popular import Popular' in (tmp_path / 'pkg' / 'tests' / 'test_feedgen_popular.py').read_text()


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('min_likes=3', ('min_likes', 3)),
        ('tags=["a", "b"]', ('tags', ['a', 'b'])),
        ('no_replies=true', ('no_replies', True)),
        ('name=plain words', ('name', 'plain words')),
        (' key = 1.5', ('key', 1.5)),
    ],
)
def test_parse_param(text: str, expected: tuple) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize('text', ['novalue', '=3'])
def test_parse_param_refuses_what_is_not_key_value(text: str) -> None:
    with pytest.raises(PluginError, match='key=value'):
        parse_param(text)


def test_preview_prints_the_top_of_a_feed_with_explanations(tmp_path: Path) -> None:
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'unused.db')}
    result = run('preview', 'topic', '--capture', str(CAPTURE_20), '--limit', '3', env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith('feed topic: algorithm topic ')
    assert '"tags": ["atproto"]' in lines[0]
    ranks = [line.split('.', 1)[0].strip() for line in lines if line[:4].strip().rstrip('.').isdigit()]
    assert ranks == ['1', '2', '3']
    assert sum('why: {' in line for line in lines) == 3
    assert not (tmp_path / 'unused.db').exists(), 'preview must index into a temporary store only'


def test_preview_json_applies_params_and_explains_every_item(tmp_path: Path) -> None:
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'unused.db')}
    args = ['preview', 'topic', '--capture', str(CAPTURE_20), '--param', 'tags=["science"]', '--limit', '5', '--json']
    result = run(*args, env=env)
    assert result.exit_code == 0, result.output
    preview = json.loads(result.output)
    assert preview['feed']['params']['tags'] == ['science']
    assert preview['posts_indexed'] > 100
    assert len(preview['items']) == 5
    for item in preview['items']:
        assert '#science' in item['text'] or 'science' in item['explanation']['filters']['tags']
        assert item['explanation']['filters']['tags'] == ['science']


def test_preview_a_personalized_feed_for_a_viewer(tmp_path: Path, feedgen_store: StoreBuilder) -> None:
    feedgen_store.replay(CAPTURE_20)
    follower = Follow.select(Follow.author).order_by(Follow.uri).first().author
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'unused.db')}
    result = run('preview', 'following', '--capture', str(CAPTURE_20), '--viewer', follower, '--json', env=env)
    assert result.exit_code == 0, result.output
    preview = json.loads(result.output)
    assert preview['feed']['viewer'] == follower
    assert preview['items'], 'the follower sees posts of the accounts they follow'
    assert all(item['explanation'] for item in preview['items'])


def test_preview_of_an_unknown_feed_is_one_line(tmp_path: Path) -> None:
    result = run('preview', 'nope', '--capture', str(CAPTURE_20), env={'FEEDGEN_DATABASE': str(tmp_path / 'x.db')})
    assert result.exit_code == 2
    assert result.output.startswith("error: no feed or algorithm named 'nope'")
