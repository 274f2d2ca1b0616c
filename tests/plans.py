"""Query plans: the SQL statements a call runs (peewee logs each one) and SQLite's plan for each."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import peewee


class _Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, list[Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple) and record.msg[0].lstrip().upper().startswith('SELECT'):
            self.statements.append((record.msg[0], list(record.msg[1] or ())))


def selects_of(call: Callable[[], object]) -> list[tuple[str, list[Any]]]:
    """The SELECT statements (SQL, parameters) peewee runs during `call()`."""
    logger = logging.getLogger('peewee')
    handler, level = _Statements(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        call()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return handler.statements


def plan(db: peewee.Database, sql: str, params: list[Any]) -> str:
    """SQLite's `EXPLAIN QUERY PLAN` of one statement, one step a line."""
    return '\n'.join(row[-1] for row in db.execute_sql('EXPLAIN QUERY PLAN ' + sql, params).fetchall())


def ordered_plans(db: peewee.Database, call: Callable[[], object], table: str) -> list[str]:
    """The plans of the statements `call()` runs that read `table` with an ORDER BY: the page queries."""
    return [plan(db, sql, params) for sql, params in selects_of(call) if 'ORDER BY' in sql and f'FROM "{table}"' in sql]
