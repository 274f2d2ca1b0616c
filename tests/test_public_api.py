"""The public API: `feedgen.ranking.__all__` and `feedgen.authoring.__all__` are exactly the lists below.

Adding or removing a public name fails here until the list changes with it, so the surface feedgen promises to
algorithm authors changes only on purpose (and then in docs/algorithms.md and CHANGELOG.md too).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import feedgen.authoring
import feedgen.ranking

ROOT = Path(__file__).parent.parent

RANKING = [
    'HOUR_MS',
    'MAX_LIMIT',
    'SCORE_SCALE',
    'SESSION_DEPTH',
    'Actor',
    'Algorithm',
    'Candidate',
    'Counts',
    'CreatedRecord',
    'Exclusion',
    'FeedRequest',
    'FilterParams',
    'Follow',
    'InvalidCursor',
    'InvalidParams',
    'Item',
    'Job',
    'KeptPosts',
    'KeptVotes',
    'Like',
    'NoParams',
    'Ordering',
    'Page',
    'PersonalAlgorithm',
    'Pinned',
    'PluginTable',
    'Post',
    'Prepared',
    'Ranking',
    'RecordIndexer',
    'Repost',
    'Reposted',
    'Row',
    'SnapshotAlgorithm',
    'SnapshotParams',
    'Stream',
    'TimelineSource',
    'Timelines',
    'Vote',
    'alt_complete',
    'build_params',
    'decay',
    'domain_term',
    'entries_stream',
    'feedback_note',
    'filter_exclusion',
    'filtered_streams',
    'followed_post_counts',
    'has_entry',
    'hiding_self_labels',
    'index_matches',
    'keyset_page',
    'lang_term',
    'link_term',
    'marker',
    'match_filters',
    'mention_term',
    'quote_term',
    'rank_score',
    'ranked_page',
    'reply_to_term',
    'require_positive',
    'rows',
    'seen_posts',
    'streams_page',
    'tag_term',
    'term_streams',
    'terms_of',
    'thread_of_term',
    'visible_posts',
    'weigh',
]
AUTHORING = [
    'ContractError',
    'ContractReport',
    'StoreBuilder',
    'check_contract',
    'images_embed',
    'link_card',
    'link_facet',
    'mention_facet',
    'quote_embed',
    'quote_with_media',
    'tag_facet',
    'video_embed',
]
PACKAGES = {'feedgen.ranking': (feedgen.ranking, RANKING), 'feedgen.authoring': (feedgen.authoring, AUTHORING)}


@pytest.mark.parametrize('package', PACKAGES)
def test_all_is_exactly_the_public_api(package: str) -> None:
    module, expected = PACKAGES[package]
    assert sorted(module.__all__) == sorted(expected), f'{package}.__all__ changed: update the list in this test'
    assert len(module.__all__) == len(set(module.__all__)), 'a name is listed twice'


@pytest.mark.parametrize('package', PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module, _ = PACKAGES[package]
    namespace: dict[str, object] = {}
    exec(f'from {package} import *', namespace)  # what `import *` gives a user
    assert sorted(name for name in namespace if name != '__builtins__') == sorted(module.__all__)


def test_feedgen_ranking_has_no_public_name_outside_all() -> None:
    # A name imported into the package but left out of __all__ would be public by accident.
    public = {
        name
        for name, value in vars(feedgen.ranking).items()
        if not name.startswith('_') and not isinstance(value, ModuleType)
    }
    assert public == set(feedgen.ranking.__all__)


def test_feedgen_authoring_refuses_a_name_it_does_not_export() -> None:
    with pytest.raises(AttributeError, match='no attribute'):
        feedgen.authoring.builder_internals  # noqa: B018


def test_the_authoring_names_load_on_first_use_only() -> None:
    # pytest loads the plugin in every run; the package must not import the rest of feedgen until asked.
    script = 'import sys, feedgen.authoring; print(sorted(m for m in sys.modules if m.startswith("feedgen.")))'
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['feedgen.authoring']"


@pytest.mark.parametrize('path', sorted((ROOT / 'algorithms').glob('*.py')), ids=lambda path: path.stem)
def test_the_built_in_algorithms_use_only_the_public_api(path: Path) -> None:
    imported = [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('feedgen')
        for alias in node.names
    ]
    imported += [
        (alias.name, '')
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith('feedgen')
    ]
    private = [f'{module}.{name}' for module, name in imported if module != 'feedgen.ranking' or name not in RANKING]
    assert not private, f'{path.name} imports outside feedgen.ranking.__all__: {private}'
