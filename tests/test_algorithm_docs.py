"""docs/algorithms.md: its reference names every public name (`feedgen.ranking`, `feedgen.authoring`, the pytest
fixtures, the columns of the store's models), and nothing that does not exist."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import peewee
import pytest

import feedgen.authoring
import feedgen.ranking
from feedgen.authoring import builder, contract
from feedgen.authoring import pytest_plugin as testing
from feedgen.ranking import algorithm, filters, pagination, personal, scores
from feedgen.store import prepared

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
    pagination.Stream,
    filters.FilterParams,
    scores.SnapshotAlgorithm,
    scores.SnapshotParams,
    scores.Counts,
    personal.PersonalAlgorithm,
    personal.Ranking,
    personal.Candidate,
    personal.Ordering,
    prepared.Prepared,
)
"""Classes whose members the reference documents: those an API class inherits are documented once, on it."""


def reference_entries() -> list[str]:
    """The names the doc's Reference section lists (`- \\`Name\\`` or `- \\`Class.member(args)\\``)."""
    text = DOC.read_text()
    reference = text[text.index('\n## Reference') :]
    return [match[1] for line in reference.splitlines() if (match := ENTRY.match(line))]


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


def own_members(cls: type) -> set[str]:
    """`members(cls)` but for those of another API class it extends (documented there)."""
    inherited = {name for base in cls.__mro__[1:] if base in API_CLASSES for name in members(base)}
    return members(cls) - inherited


def public_names() -> dict[str, Any]:
    """The public API (both `__all__`s) and the pytest fixtures, by name."""
    exported = {
        name: getattr(package, name) for package in (feedgen.ranking, feedgen.authoring) for name in package.__all__
    }
    fixtures = {name: value for name, value in vars(testing).items() if name.startswith('feedgen_')}
    return exported | fixtures


def api_names() -> set[str]:
    """Every name the reference must document: the public API, the fixtures, and the members of the API classes."""
    qualified = {f'{cls.__name__}.{member}' for cls in API_CLASSES for member in own_members(cls)}
    return set(public_names()) | qualified


def resolves(name: str) -> bool:
    namespace = public_names()
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


def store_models() -> list[type[peewee.Model]]:
    """The store's models the public API exports (what algorithms read)."""
    exported = [getattr(feedgen.ranking, name) for name in feedgen.ranking.__all__]
    return [value for value in exported if inspect.isclass(value) and issubclass(value, peewee.Model)]


def test_the_reference_documents_every_column_of_the_store() -> None:
    documented = set(reference_entries())
    models = store_models()
    assert {model.__name__ for model in models} >= {'Post', 'Like', 'Repost', 'Follow', 'Actor'}
    columns = [
        f'{model.__name__}.{name}'
        for model in models
        for name, field in inspect.getmembers(model, lambda value: isinstance(value, peewee.Field))
        if field.model is model  # not the `id` of the base model, which a model with its own primary key leaves out
    ]
    missing = sorted(set(columns) - documented)
    assert not missing, f'docs/algorithms.md Reference lacks the columns {missing}'
