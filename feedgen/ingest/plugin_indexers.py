"""Plugin indexers: records a plugin reads, turned into rows of its own tables inside the indexer's batch.

Owns `RecordIndexer` (what a plugin declares: the collections it reads, a pure function from a `CreatedRecord` to rows
of its `PluginTable`s, their schema version and retention) and `PluginIndexers`, which the indexer runs in each
batch's transaction: rows of the records a batch creates are written, rows of the records it deletes and of the
accounts it purges are deleted, so the cursor rule holds for plugin rows as for feedgen's own. A plugin that raises
(or whose rows cannot be written) is contained: that record's rows are left out, the failure is counted by indexer
name (`errors`, shown in /metrics as `feedgen_ingest_plugin_errors`) and logged once per indexer and kind of error;
the batch and the other plugins go on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import peewee

from feedgen.store.batches import Batches
from feedgen.store.plugin_tables import Migration, PluginTable, TableSpec
from feedgen.store.statements import chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CreatedRecord:
    """A record a batch creates, as a plugin indexer gets it."""

    collection: str
    """Its NSID (`app.bsky.feed.post`, `app.bsky.feed.threadgate`, ...)."""
    uri: str
    author: str
    """The DID of the repository it is in."""
    time_ms: int
    """When the network saw it: the relay's time of its commit, in milliseconds."""
    record: dict[str, Any]
    """The record as decoded from DAG-CBOR or JSON: unvalidated beyond being a map; check what you read."""


@dataclass(frozen=True)
class RecordIndexer:
    """A plugin's indexer: an algorithm declares it in `Algorithm.indexers` (see docs/algorithms.md).

    `index` is called once for each record of `collections` that a batch creates and returns the rows to store, as
    unsaved instances of `tables` (`uri`, `author` and `indexed_at` are filled in for it). It must be a pure
    function of its argument: it may run again for the same record (a replay), and its rows replace the ones made
    before for that record.
    """

    name: str
    """Unique among the served indexers; names its failures in logs and metrics."""
    collections: frozenset[str]
    """Record collections it reads; those feedgen does not index itself are asked of the source for it."""
    index: Callable[[CreatedRecord], Iterable[PluginTable]]
    tables: tuple[type[PluginTable], ...]
    schema_version: int = 1
    """Raise it when a table's columns change; a store holding another version is migrated or refused at startup."""
    migrate: Migration | None = None
    """Called with the store and the stored version to bring the tables to `schema_version`; None: refuse instead."""
    retention_hours: float | None = None
    """How long its rows are kept (by `indexed_at`); None: the store's retention."""


def table_specs(indexers: Iterable[RecordIndexer]) -> list[TableSpec]:
    """The tables of `indexers`, as `prepare_plugin_tables` checks them."""
    return [
        TableSpec(indexer.name, table, indexer.schema_version, indexer.migrate)
        for indexer in indexers
        for table in indexer.tables
    ]


def prune_plugin_tables(
    indexers: Iterable[RecordIndexer], retention_hours: float, now_ms: int, batches: Batches
) -> dict[str, int]:
    """Deletes the plugin rows indexed longer ago than their indexer's retention (or `retention_hours`), in the
    transactions of `batches`; returns how many rows of each table."""
    removed: dict[str, int] = {}
    for indexer in indexers:
        hours = retention_hours if indexer.retention_hours is None else indexer.retention_hours
        for table in indexer.tables:
            cutoff = now_ms - int(hours * 3_600_000)
            removed[table._meta.table_name] = batches.run(partial(_delete_older, table, cutoff))
    return removed


def _delete_older(table: type[PluginTable], cutoff: int, size: int) -> int:
    """Deletes up to `size` rows of `table` indexed before `cutoff`."""
    old = table.select(table.id).where(table.indexed_at < cutoff).limit(size)
    deleted: int = table.delete().where(table.id.in_(old)).execute()
    return deleted


@dataclass
class PluginIndexers:
    """The served plugin indexers, run by the indexer inside each batch's transaction."""

    indexers: Sequence[RecordIndexer] = ()
    errors: Counter[str] = field(default_factory=Counter)
    """Records each indexer failed on, by indexer name."""
    _logged: set[tuple[str, str]] = field(default_factory=set)

    @property
    def collections(self) -> frozenset[str]:
        """Every collection some indexer reads."""
        return frozenset().union(*(indexer.collections for indexer in self.indexers))

    def _tables(self, collection: str | None = None) -> list[type[PluginTable]]:
        return [
            table
            for indexer in self.indexers
            if collection is None or collection in indexer.collections
            for table in indexer.tables
        ]

    def delete(self, by_collection: dict[str, list[str]]) -> None:
        """Deletes the rows made from the records `by_collection` names (their URIs, by collection)."""
        for collection, uris in by_collection.items():
            for table in self._tables(collection):
                for chunk in chunks(uris):
                    table.delete().where(table.uri.in_(chunk)).execute()

    def purge(self, did: str) -> None:
        """Deletes every row made from a record of the account `did`."""
        for table in self._tables():
            table.delete().where(table.author == did).execute()

    def write(self, db: peewee.Database, records: Sequence[CreatedRecord], now_ms: int) -> None:
        """Replaces the rows of `records` (created by this batch) with what each indexer makes of them now."""
        for indexer in self.indexers:
            mine = [record for record in records if record.collection in indexer.collections]
            if not mine:
                continue
            rows: list[PluginTable] = []
            for record in mine:
                try:
                    made = list(indexer.index(record))
                    for row in made:
                        if not isinstance(row, indexer.tables):
                            raise TypeError(f'made a {type(row).__name__}, not a row of one of its tables')
                        row.uri, row.author, row.indexed_at = record.uri, record.author, now_ms
                except Exception as error:  # a plugin's bug must not stop ingest
                    self._failed(indexer, error, record.uri)
                    continue
                rows.extend(made)
            self._store(db, indexer, [record.uri for record in mine], rows)

    def _store(self, db: peewee.Database, indexer: RecordIndexer, uris: list[str], rows: list[PluginTable]) -> None:
        try:
            with db.atomic():  # a savepoint: rows that cannot be written roll back alone
                for table in indexer.tables:
                    for chunk in chunks(uris):
                        table.delete().where(table.uri.in_(chunk)).execute()
                    table.bulk_create([row for row in rows if type(row) is table], batch_size=100)
        except peewee.DatabaseError as error:
            self._failed(indexer, error, f'{len(uris)} records', count=len(uris))

    def _failed(self, indexer: RecordIndexer, error: Exception, what: str, count: int = 1) -> None:
        self.errors[indexer.name] += count
        kind = type(error).__name__
        if (indexer.name, kind) not in self._logged:
            self._logged.add((indexer.name, kind))
            log.error(
                'plugin indexer %s failed on %s: %s: %s (logged once per kind; counted in '
                'feedgen_ingest_plugin_errors)', indexer.name, what, kind, error,
            )  # fmt: skip
