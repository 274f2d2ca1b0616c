"""Prepared queries: a peewee select compiled to SQL once, then run again and again with new values.

Owns `Prepared` and the stand-in values (markers) a query is written with where a request's values go. peewee
builds a query's SQL in Python on every execution, which for a page of posts costs about as much as SQLite's index
walk itself (docs/design.md, "Serving"). A `Prepared` compiles once per kind of database (SQLite and PostgreSQL
quote and mark parameters differently), finds where its markers landed in the parameter list, and from then on
only fills them in. Rows come back as named tuples of the selected columns, straight off the database cursor,
without building peewee model instances. It runs reads; it never writes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

Row = Any
"""A row of a prepared query: a named tuple of its selected columns (by their names or aliases)."""


def marker(name: str) -> str:
    """A stand-in text value, written into a query where a text given at run time goes: no real value equals it."""
    return f'\x00feedgen-marker:{name}\x00'


@dataclass
class _Compiled:
    sql: str
    params: list[Any]
    slots: tuple[int, ...]
    make_row: Callable[[Iterable[Any]], Row] | None = None


@dataclass(eq=False)
class Prepared:
    """`query`, whose parameters equal to `markers` are filled in at each `run`, in the order of `markers`.

    Numbers can be markers too (a `LIMIT`, a cursor's key): pick values no real parameter of the query has.
    """

    query: peewee.Query
    markers: Sequence[Any]
    _compiled: dict[type, _Compiled] = field(default_factory=dict, init=False, repr=False)

    def run(self, *values: Any) -> Iterator[Row]:
        """The rows of the query with `values` in place of the markers; read as they are iterated."""
        compiled, cursor = self._execute(values)
        if compiled.make_row is None:
            names = [column[0] for column in cursor.description]
            row_type = namedtuple('Row', names, rename=True)  # type: ignore[misc]  # its fields are the cursor's columns
            compiled.make_row = row_type._make
        return map(compiled.make_row, cursor)

    def tuples(self, *values: Any) -> Iterator[tuple[Any, ...]]:
        """The rows as plain tuples, for a query whose many rows are read by position."""
        rows: Iterator[tuple[Any, ...]] = self._execute(values)[1]
        return rows

    def _execute(self, values: Sequence[Any]) -> tuple[_Compiled, Any]:
        database = self.query.model._meta.database
        kind = type(getattr(database, 'obj', None) or database)
        compiled = self._compiled.get(kind)
        if compiled is None:
            compiled = self._compiled.setdefault(kind, self._compile())
        params = list(compiled.params)
        for slot, value in zip(compiled.slots, values, strict=True):
            params[slot] = value
        return compiled, database.execute_sql(compiled.sql, params)

    def _compile(self) -> _Compiled:
        sql, params = self.query.sql()
        slots = []
        for stand_in in self.markers:
            found = [i for i, value in enumerate(params) if value == stand_in]
            if len(found) != 1:
                raise ValueError(f'the marker {stand_in!r} is {len(found)} times in the parameters of {sql!r}')
            slots.append(found[0])
        return _Compiled(sql, params, tuple(slots))
