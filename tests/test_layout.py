"""The package layout: imports run one way along the pipeline, so the tree reads as the data flow.

store <- ingest <- ranking <- serve <- authoring <- the command line (feedgen's top-level modules). A module may
import its own stage and the stages before it, never a later one; settings and logs come before every stage.
The built-in algorithms import only ranking and the store (they never touch ingest, the network or the server).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
STAGES = ['store', 'ingest', 'ranking', 'serve', 'authoring']
TOP = len(STAGES)  # feedgen's own top-level modules: the command line, jobs, publishing
SHARED = {'feedgen.settings': -1, 'feedgen.logs': -2}  # what every stage may read: its settings, its log format


def _stage(module: str) -> int:
    """The stage of a dotted `feedgen...` module name."""
    if module in SHARED:
        return SHARED[module]
    parts = module.split('.')
    if len(parts) > 1 and parts[1] in STAGES:
        return STAGES.index(parts[1])
    return TOP


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f'{node.module}.{alias.name}' for alias in node.names if node.module == 'feedgen')
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith('feedgen.') or name == 'feedgen'}


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob('*.py'))


def _name(path: Path) -> str:
    return '.'.join(path.relative_to(ROOT).with_suffix('').parts)


@pytest.mark.parametrize('path', _modules('feedgen'), ids=_name)
def test_feedgen_imports_run_along_the_pipeline(path: Path) -> None:
    own = _stage(_name(path))
    later = sorted(name for name in _imports(path) if _stage(name) > own and name != 'feedgen')
    assert not later, f'{_name(path)} ({own}) imports a later stage: {later}'


@pytest.mark.parametrize('path', _modules('algorithms'), ids=_name)
def test_algorithms_import_only_ranking_and_the_store(path: Path) -> None:
    allowed = {STAGES.index('store'), STAGES.index('ranking')}
    other = sorted(name for name in _imports(path) if _stage(name) not in allowed)
    assert not other, f'{_name(path)} imports outside ranking and the store: {other}'


def test_the_guard_sees_a_backward_import(tmp_path: Path) -> None:
    module = tmp_path / 'bad.py'
    module.write_text('from feedgen.serve.app import create_app\nimport feedgen.ingest.events\n')
    assert _imports(module) == {'feedgen.serve.app', 'feedgen.ingest.events'}
    assert _stage('feedgen.serve.app') > _stage('feedgen.ranking.pagination') > _stage('feedgen.store.models')
