"""feedgen.ingest.plugin_indexers: plugin rows follow the records (creates, deletes, updates, purges, replays), a
failing plugin is contained, plugin tables are pruned and carry a schema version, and both sources pass the
collections plugins read."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import peewee
import pytest
from flask.testing import FlaskClient
from playhouse.migrate import SchemaMigrator, migrate

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.jetstream import Jetstream
from feedgen.ingest.pipeline import Pipeline
from feedgen.jobs import prune
from feedgen.ranking import CreatedRecord, PluginTable, RecordIndexer
from feedgen.store.models import IngestStat, Post, open_database
from feedgen.store.plugin_tables import PluginTableError
from tests import frames

ALICE, BOB = 'did:plc:alice', 'did:plc:bob'
THREADGATE = 'app.bsky.feed.threadgate'
HOUR_MS = 3_600_000


class Shout(PluginTable):
    """A post written in capitals."""

    words = peewee.IntegerField()


class Gate(PluginTable):
    """A threadgate: who may reply to a post."""

    post = peewee.TextField()
    rules = peewee.IntegerField()


def shouts(record: CreatedRecord) -> list[Shout]:
    text = record.record.get('text', '')
    return [Shout(words=len(text.split()))] if isinstance(text, str) and text.isupper() else []


def gates(record: CreatedRecord) -> list[Gate]:
    return [Gate(post=record.record['post'], rules=len(record.record.get('allow', [])))]


def broken(record: CreatedRecord) -> list[Shout]:
    if 'boom' in record.record.get('text', ''):
        raise KeyError('boom')
    return []


SHOUTS = RecordIndexer('shouts', frozenset({'app.bsky.feed.post'}), shouts, (Shout,))
GATES = RecordIndexer('gates', frozenset({THREADGATE}), gates, (Gate,), retention_hours=1)
BROKEN = RecordIndexer('broken', frozenset({'app.bsky.feed.post'}), broken, ())


@pytest.fixture
def plugged(db: peewee.Database) -> Pipeline:
    return Pipeline(Indexer(db, 'test', indexers=(BROKEN, SHOUTS, GATES)))


def _post(seq: int, rkey: str, text: str, repo: str = ALICE) -> bytes:
    return frames.commit(seq, repo, [('create', f'app.bsky.feed.post/{rkey}', frames.post_record(text))])


def _gate(seq: int, rkey: str, repo: str = ALICE) -> bytes:
    record = {
        '$type': THREADGATE,
        'post': f'at://{repo}/app.bsky.feed.post/{rkey}',
        'allow': [{}],
        'createdAt': frames.NOW,
    }
    return frames.commit(seq, repo, [('create', f'{THREADGATE}/{rkey}', record)])


def _rows(table: type[PluginTable]) -> list[tuple[Any, ...]]:
    return sorted((row.uri, row.author) for row in table.select())


def test_rows_follow_creates_deletes_updates_and_account_purges(plugged: Pipeline) -> None:
    plugged.feed_all([_post(1, 'a', 'HELLO THERE'), _post(2, 'b', 'quiet'), _post(3, 'c', 'LOUD', BOB), _gate(4, 'a')])
    assert _rows(Shout) == [(f'at://{ALICE}/app.bsky.feed.post/a', ALICE), (f'at://{BOB}/app.bsky.feed.post/c', BOB)]
    assert [(gate.post, gate.rules) for gate in Gate.select()] == [(f'at://{ALICE}/app.bsky.feed.post/a', 1)]
    update = frames.commit(5, ALICE, [('update', 'app.bsky.feed.post/a', frames.post_record('calm now'))])
    plugged.feed_all([update, frames.commit(6, ALICE, [('delete', f'{THREADGATE}/a', None)])])
    assert _rows(Shout) == [(f'at://{BOB}/app.bsky.feed.post/c', BOB)]
    assert Gate.select().count() == 0
    plugged.feed_all([frames.account(7, BOB, active=False, status='deleted')])
    assert Shout.select().count() == 0


def test_a_replay_of_the_same_records_makes_no_second_row(db: peewee.Database) -> None:
    messages = [_post(1, 'a', 'HELLO'), _gate(2, 'a')]
    for firehose in ('first', 'second'):  # a second source delivers the same records again
        Pipeline(Indexer(db, firehose, indexers=(SHOUTS, GATES))).feed_all(messages)
    assert Shout.select().count() == Gate.select().count() == 1


def test_a_plugin_that_raises_is_counted_logged_once_and_stops_nothing(
    plugged: Pipeline, caplog: pytest.LogCaptureFixture, client: FlaskClient
) -> None:
    with caplog.at_level(logging.ERROR):
        plugged.feed_all([_post(1, 'a', 'boom ONE'), _post(2, 'b', 'BOOM'), _post(3, 'c', 'boom again')])
    assert Post.select().count() == 3
    assert plugged.indexer.cursor == 3
    assert Shout.select().count() == 1  # the plugin after the broken one went on
    assert plugged.indexer.plugins.errors == {'broken': 2}
    assert len([r for r in caplog.records if 'plugin indexer broken' in r.getMessage()]) == 1
    totals = json.loads(IngestStat.get(IngestStat.firehose == 'test').totals)
    assert totals['plugin_errors'] == {'broken': 2}
    metrics = client.get('/metrics').get_data(as_text=True)
    assert 'feedgen_ingest_plugin_errors_total{firehose="test",indexer="broken"} 2.0' in metrics


class Loud(PluginTable):
    words = peewee.IntegerField()


def unwritable(record: CreatedRecord) -> list[Loud]:
    return [Loud(words=1), Loud(words=None)]  # the second breaks NOT NULL


def test_rows_that_cannot_be_written_roll_back_alone(db: peewee.Database) -> None:
    wrong = RecordIndexer('wrong', frozenset({'app.bsky.feed.post'}), unwritable, (Loud,))
    pipeline = Pipeline(Indexer(db, 'test', indexers=(wrong, SHOUTS)))
    pipeline.feed_all([_post(1, 'a', 'HEY')])
    assert pipeline.indexer.plugins.errors == {'wrong': 1}
    assert (Post.select().count(), Shout.select().count(), Loud.select().count()) == (1, 1, 0)


def test_plugin_rows_are_pruned_with_the_store_or_by_their_own_retention(plugged: Pipeline) -> None:
    plugged.feed_all([_post(1, 'a', 'HEY'), _gate(2, 'a')])
    indexed_at = Shout.get().indexed_at
    indexers = plugged.indexer.plugins.indexers
    removed = prune(plugged.indexer.db, retention_hours=24, now=(indexed_at + 2 * HOUR_MS) / 1000, indexers=indexers)
    assert (removed['gate'], removed['shout']) == (1, 0)  # gates keep an hour, the rest the store's 24
    removed = prune(plugged.indexer.db, retention_hours=24, now=(indexed_at + 25 * HOUR_MS) / 1000, indexers=indexers)
    assert removed['shout'] == 1 and Shout.select().count() == 0


def test_the_firehose_decoder_keeps_only_what_plugins_read(db: peewee.Database) -> None:
    without = Pipeline(Indexer(db, 'plain'))
    without.feed_all([_gate(1, 'a')])
    assert without.stats.skipped['unindexed_collection'] == 1


def test_jetstream_asks_for_and_decodes_the_plugins_collections(plugged: Pipeline) -> None:
    source = Jetstream('ws://127.0.0.1:9', plugged)
    assert f'collections={THREADGATE}' in source.connect_url()
    record = {'$type': THREADGATE, 'post': f'at://{ALICE}/app.bsky.feed.post/a', 'allow': [], 'createdAt': frames.NOW}
    payload = {
        '$type': 'network.bsky.jetstream.subscribeEvents#commit', 'seq': 5, 'did': ALICE, 'time': frames.NOW,
        'rev': '3n32nqtp43s2q', 'operation': 'create', 'collection': THREADGATE, 'rkey': 'a',
        'cid': 'bafyreib2rxk3rh6kzwq', 'record': record,
    }  # fmt: skip
    plugged.feed(json.dumps({'$type': 'message', 'payload': payload}))
    plugged.flush()
    assert [(gate.uri, gate.rules) for gate in Gate.select()] == [(f'at://{ALICE}/{THREADGATE}/a', 0)]


class ShoutV2(PluginTable):
    words = peewee.IntegerField()
    letters = peewee.IntegerField(default=0)

    class Meta:
        table_name = 'shout'


def _indexer(version: int, migrate: Any = None) -> RecordIndexer:
    return RecordIndexer('shouts', frozenset({'app.bsky.feed.post'}), shouts, (ShoutV2,), version, migrate)


def test_a_changed_plugin_table_is_refused_or_migrated_never_mixed(tmp_path: Path) -> None:
    db = open_database(tmp_path / 'store.db')
    try:
        Indexer(db, 'test', indexers=(SHOUTS,))
        with pytest.raises(PluginTableError, match='columns changed but its schema version is still 1'):
            Indexer(db, 'test', indexers=(_indexer(1),))
        with pytest.raises(
            PluginTableError, match='has schema version 1, the plugin declares 2 and gives no migration'
        ):
            Indexer(db, 'test', indexers=(_indexer(2),))

        def add_letters(database: peewee.Database, old: int) -> None:
            assert old == 1
            migrate(SchemaMigrator.from_database(database).add_column('shout', 'letters', ShoutV2.letters))

        Indexer(db, 'test', indexers=(_indexer(2, add_letters),))
        Indexer(db, 'test', indexers=(_indexer(2),))  # now the stored schema is version 2
    finally:
        db.close()
