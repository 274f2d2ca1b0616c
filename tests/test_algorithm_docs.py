"""docs/algorithms.md: its reference names every public name of the plugin API, and nothing that does not exist."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from feedgen import publish
from feedgen.authoring import builder, contract
from feedgen.authoring import pytest_plugin as testing
from feedgen.ranking import algorithm, pagination

DOC = Path(__file__).parent.parent / 'docs' / 'algorithms.md'
ENTRY = re.compile(r'^- `([A-Za-z_][\w.]*)')
API_CLASSES = (
    algorithm.Algorithm,
    algorithm.FeedRequest,
    algorithm.Item,
    algorithm.Page,
    algorithm.Job,
    builder.StoreBuilder,
    contract.ContractReport,
)


def reference_entries() -> list[str]:
    """The names the doc's Reference section lists (`- \\`Name\\`` or `- \\`Class.member(args)\\``)."""
    text = DOC.read_text()
    reference = text[text.index('\n## Reference') :]
    return [match[1] for line in reference.splitlines() if (match := ENTRY.match(line))]


def defined_in(module: ModuleType) -> dict[str, Any]:
    """The public names `module` defines itself (not those it imports)."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith('_') and getattr(value, '__module__', None) == module.__name__
    }


def members(cls: type) -> set[str]:
    """Public attributes of `cls`: dataclass fields, class attributes and methods, and `self.x =` in `__init__`
    (not what a named tuple inherits from `tuple`)."""
    names = {name for klass in cls.__mro__ if klass not in (object, tuple) for name in vars(klass)}
    names |= {name for klass in cls.__mro__ for name in getattr(klass, '__annotations__', {})}
    if dataclasses.is_dataclass(cls):
        names |= {field.name for field in dataclasses.fields(cls)}
    elif '__init__' in vars(cls):
        names |= set(re.findall(r'self\.([a-z]\w*) =', inspect.getsource(cls.__init__)))
    return {name for name in names if not name.startswith('_')}


def api_names() -> set[str]:
    """Every name the reference must document: the plugin API, the testing fixtures, builder and contract."""
    fixtures = {name for name in vars(testing) if name.startswith('feedgen_')}
    modules = defined_in(algorithm) | defined_in(contract) | defined_in(builder)
    public = {name for name, value in modules.items() if inspect.isclass(value) or inspect.isfunction(value)}
    public -= {'did'}  # builder's helper for short author names, described with make_post
    qualified = {f'{cls.__name__}.{member}' for cls in API_CLASSES for member in members(cls)}
    return fixtures | public | qualified | {'feed_description'}


def resolves(name: str) -> bool:
    namespace = {
        **defined_in(algorithm),
        **defined_in(builder),
        **defined_in(contract),
        'feed_description': publish.feed_description,
        **defined_in(pagination),
        **{name: value for name, value in vars(testing).items() if name.startswith('feedgen_')},
    }
    head, _, member = name.partition('.')
    if head not in namespace:
        return False
    return not member or member in members(namespace[head])


def test_the_reference_documents_every_public_name_of_the_plugin_api() -> None:
    missing = sorted(api_names() - set(reference_entries()))
    assert not missing, f'docs/algorithms.md Reference lacks {missing}'


@pytest.mark.parametrize('name', reference_entries())
def test_every_name_in_the_reference_exists(name: str) -> None:
    assert resolves(name), f'docs/algorithms.md Reference lists {name}, which the code does not have'


def test_the_reference_is_read() -> None:
    # A reference the parser could not read would make both checks above vacuous.
    entries = reference_entries()
    assert 'Algorithm.explain' in entries
    assert 'feedgen_contract' in entries
    assert len(entries) == len(set(entries)), 'a name is listed twice'
