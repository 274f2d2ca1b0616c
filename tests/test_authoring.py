"""feedgen new-algorithm and feedgen preview: scaffolds whose tests pass, previews that explain each post."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from importlib.metadata import requires
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
    for name in ('My-Feed', 'feed-', 'a--b', 'feed_', '9lives', 'x' * 41):
        bad = run('new-algorithm', name, '--project', str(tmp_path))
        assert bad.exit_code == 2, name
        assert 'lower-case letters' in bad.output


def test_new_algorithm_takes_hyphenated_names_like_the_builtins(tmp_path: Path) -> None:
    (tmp_path / 'algorithms').mkdir()
    (tmp_path / 'algorithms' / '__init__.py').write_text('')
    result = run('new-algorithm', 'catch-up-2', '--project', str(tmp_path))
    assert result.exit_code == 0, result.output
    module = (tmp_path / 'algorithms' / 'catch_up_2.py').read_text()
    assert "name = 'catch-up-2'" in module and 'class CatchUp2(Algorithm)' in module
    assert_scaffold_tests_pass(tmp_path, tmp_path, str(tmp_path / 'tests' / 'test_algorithm_catch_up_2.py'))


def test_new_algorithm_in_feedgens_own_repository_imports_feedgen_algorithms(tmp_path: Path) -> None:
    project, path = tmp_path / 'repo', tmp_path / 'path'
    (project / 'algorithms').mkdir(parents=True)
    (project / 'algorithms' / '__init__.py').write_text('')
    pyproject = (Path(__file__).parent.parent / 'pyproject.toml').read_text()
    (project / 'pyproject.toml').write_text(pyproject)  # maps feedgen_algorithms onto algorithms/
    result = run('new-algorithm', 'fresh', '--project', str(project))
    assert result.exit_code == 0, result.output
    test = project / 'tests' / 'test_algorithm_fresh.py'
    assert 'from feedgen_algorithms.fresh import Fresh' in test.read_text()
    path.mkdir()
    (path / 'feedgen_algorithms').symlink_to(project / 'algorithms')  # as the editable install maps it
    assert_scaffold_tests_pass(project, path, str(test))


def test_new_algorithm_adds_an_algorithm_to_an_existing_package(tmp_path: Path) -> None:
    source, site = tmp_path / 'pkg', tmp_path / 'site'
    assert run('new-algorithm', 'first', '--package', str(source)).exit_code == 0
    result = run('new-algorithm', 'second-one', '--package', str(source))
    assert result.exit_code == 0, result.output
    assert f'wrote {source / "pyproject.toml"}' in result.output
    document = tomllib.loads((source / 'pyproject.toml').read_text())
    assert document['project']['entry-points']['feedgen.algorithms'] == {
        'first': 'feedgen_first',
        'second-one': 'feedgen_second_one',
    }
    assert document['tool']['setuptools']['py-modules'] == ['feedgen_first', 'feedgen_second_one']
    for module in ('feedgen_first', 'feedgen_second_one'):
        assert_scaffold_tests_pass(source, source, str(source / 'tests' / f'test_{module}.py'))
    pip = [sys.executable, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '--no-index']
    pip += ['--no-deps', '--no-build-isolation', '--target', str(site), str(source)]
    subprocess.run(pip, check=True, timeout=300, capture_output=True)
    listing = subprocess.run(
        [sys.executable, '-m', 'feedgen', 'algorithms', '--json'],
        env=os.environ | {'PYTHONPATH': str(site), 'FEEDGEN_DATABASE': str(tmp_path / 'x.db')},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert {'first', 'second-one'} <= set(json.loads(listing.stdout)['algorithms'])


def test_new_algorithm_refuses_to_add_what_it_cannot(tmp_path: Path) -> None:
    source = tmp_path / 'pkg'
    assert run('new-algorithm', 'first', '--package', str(source)).exit_code == 0
    twice = run('new-algorithm', 'first', '--package', str(source))
    assert twice.exit_code == 2
    assert 'already declares' in twice.output or 'already exists' in twice.output
    pyproject = source / 'pyproject.toml'
    pyproject.write_text(
        pyproject.read_text().replace("py-modules = ['feedgen_first']", "py-modules = [\n  'feedgen_first',\n]")
    )
    before = pyproject.read_text()
    odd = run('new-algorithm', 'second', '--package', str(source))
    assert odd.exit_code == 2
    assert 'by hand' in odd.output
    assert pyproject.read_text() == before
    assert not (source / 'feedgen_second.py').exists()


def test_the_test_extra_installs_what_an_algorithms_tests_need(tmp_path: Path) -> None:
    extras = [r for r in requires('open-feedgen') or [] if 'extra == "test"' in r]
    assert any(r.startswith('pytest>=') for r in extras)  # the fixtures are a pytest plugin
    assert run('new-algorithm', 'mine', '--package', str(tmp_path / 'pkg')).exit_code == 0
    document = tomllib.loads((tmp_path / 'pkg' / 'pyproject.toml').read_text())
    assert document['project']['optional-dependencies']['test'] == ['open-feedgen[test]']


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


def test_preview_refuses_a_personalized_feed_without_a_viewer_and_a_viewer_that_is_no_did(tmp_path: Path) -> None:
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'unused.db')}
    alone = run('preview', 'following', '--capture', str(CAPTURE_20), env=env)
    assert alone.exit_code == 2
    assert alone.output.startswith('error: feed following is personalized')
    assert '--viewer' in alone.output
    for viewer in ('alice', 'alice.bsky.social', 'did:plc:', 'did:plc:a b'):
        wrong = run('preview', 'following', '--capture', str(CAPTURE_20), '--viewer', viewer, env=env)
        assert wrong.exit_code == 2, viewer
        assert 'is not a DID' in wrong.output
    also = run('preview', 'latest', '--capture', str(CAPTURE_20), '--viewer', 'bob', env=env)
    assert also.exit_code == 2  # a viewer given to any feed must be a DID


def test_preview_of_an_unknown_feed_is_one_line(tmp_path: Path) -> None:
    result = run('preview', 'nope', '--capture', str(CAPTURE_20), env={'FEEDGEN_DATABASE': str(tmp_path / 'x.db')})
    assert result.exit_code == 2
    assert result.output.startswith("error: no feed or algorithm named 'nope'")
