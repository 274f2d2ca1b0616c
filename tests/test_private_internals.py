"""feedgen reads no other library's private attributes, so a library's next release cannot break it silently.

Allowed, because the library documents them: peewee's `Model._meta` (its model metadata; peewee's docs tell users to
read it), a named tuple's `_make` and `_asdict`, and `os._exit` (docs/design.md, "The public API and private
internals").
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCUMENTED = {'_meta', '_make', '_asdict', '_exit'}
SOURCES = sorted([*(ROOT / 'feedgen').rglob('*.py'), *(ROOT / 'algorithms').glob('*.py')])


def _private(name: str) -> bool:
    return name.startswith('_') and not name.startswith('__')


def _own_names() -> set[str]:
    """The private names feedgen defines itself: functions, classes, and attributes it assigns."""
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return {name for name in names if _private(name)}


def private_uses(source: str, own: set[str]) -> list[str]:
    """Other libraries' private names `source` reads or imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own | DOCUMENTED:
            found.append(f'{ast.unparse(node)} (line {node.lineno})')
        elif isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith('feedgen'):
            found += [f'{node.module}.{alias.name}' for alias in node.names if _private(alias.name)]
    return found


@pytest.mark.parametrize('path', SOURCES, ids=lambda path: path.stem)
def test_no_private_attribute_of_another_library(path: Path) -> None:
    assert not private_uses(path.read_text(), _own_names()), f'{path.relative_to(ROOT)} reads private internals'


def test_the_guard_sees_private_reads_and_imports() -> None:
    source = 'from lib.mod import _hidden\nclient._session.did\nself._cache.pop(x)\nPost._meta.database\n'
    found = sorted(private_uses(source, own=set()))
    assert found == ['client._session (line 2)', 'lib.mod._hidden', 'self._cache (line 3)']
    assert private_uses('self._cache.pop(x)\n', own={'_cache'}) == []
