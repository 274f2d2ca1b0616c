"""Plugin tables: the tables plugin indexers write, their schema versions, and how they follow the records.

Owns `PluginTable`, the base of every plugin indexer's peewee model (the record's `uri`, its `author` and `indexed_at`
come with it, so deletes, account purges and pruning apply to plugin rows as to feedgen's own), `PluginSchema`, the
schema version and columns each plugin table was created with, and `prepare_plugin_tables`, which creates the missing
tables at startup and refuses, with one line, a table whose stored schema differs from its plugin's (unless the plugin
gives a migration). Nothing here runs a plugin's code but its migration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import peewee

from feedgen.store.models import BaseModel, PluginSchema

Migration = Callable[[peewee.Database, int], None]
"""Brings a plugin table from the stored schema version (the argument) to the declared one; runs in a transaction."""


class PluginTableError(ValueError):
    """A plugin table in the store does not match what its plugin declares; the message says which and what to do."""


class PluginTable(BaseModel):
    """Base of a plugin indexer's table: subclass it and add the columns the plugin's rows need.

    The indexer fills `uri` (the record the row was made from), `author` (its repository's DID) and `indexed_at`
    (milliseconds); the plugin's function sets the rest.
    """

    uri = peewee.TextField(index=True)
    author = peewee.TextField(index=True)
    indexed_at = peewee.BigIntegerField(index=True)


@dataclass(frozen=True)
class TableSpec:
    """One plugin table as its indexer declares it."""

    owner: str
    """The name of the indexer that writes it."""
    model: type[PluginTable]
    version: int
    migrate: Migration | None = None


def columns_of(model: type[PluginTable]) -> list[str]:
    """The declared columns of `model` as `name type` (what `PluginSchema.columns` keeps)."""
    return [f'{field.column_name} {field.field_type}' for field in model._meta.sorted_fields]


def prepare_plugin_tables(db: peewee.Database, specs: Sequence[TableSpec]) -> list[str]:
    """Creates the missing plugin tables and checks the others; returns what it did, one line each.

    Raises:
        PluginTableError: a table's stored schema version or columns differ from the declared ones, and the plugin
            gives no migration (or the columns still differ after it).
    """
    done = []
    for spec in specs:
        table, declared = spec.model._meta.table_name, columns_of(spec.model)
        stored = PluginSchema.get_or_none(PluginSchema.table == table)
        if stored is None or not db.table_exists(table):
            with db.atomic():
                db.create_tables([spec.model], safe=True)
                _save(spec, declared)
            done.append(f'created plugin table {table} (schema {spec.version}) for {spec.owner}')
            continue
        if stored.version == spec.version and json.loads(stored.columns) == declared:
            continue
        if stored.version == spec.version:
            raise PluginTableError(
                f'plugin table {table} of {spec.owner}: its columns changed but its schema version is still '
                f'{spec.version}; raise schema_version and give a migration, or drop the table'
            )
        if spec.migrate is None:
            raise PluginTableError(
                f'plugin table {table} of {spec.owner} has schema version {stored.version}, the plugin declares '
                f'{spec.version} and gives no migration: drop the table (its rows are made again from new records) '
                'or give the indexer a migrate function'
            )
        with db.atomic():
            spec.migrate(db, stored.version)
            migrated = sorted(column.name for column in db.get_columns(table))
            if migrated != sorted(field.column_name for field in spec.model._meta.sorted_fields):
                raise PluginTableError(
                    f'plugin table {table} of {spec.owner}: after its migration from schema {stored.version} the '
                    f'columns are {migrated}, not the declared ones'
                )
            _save(spec, declared)
        done.append(f'migrated plugin table {table} of {spec.owner} from schema {stored.version} to {spec.version}')
    return done


def _save(spec: TableSpec, declared: list[str]) -> None:
    values = {
        PluginSchema.owner: spec.owner,
        PluginSchema.version: spec.version,
        PluginSchema.columns: json.dumps(declared),
    }
    PluginSchema.insert({PluginSchema.table: spec.model._meta.table_name, **values}).on_conflict(
        conflict_target=[PluginSchema.table], update=values
    ).execute()
