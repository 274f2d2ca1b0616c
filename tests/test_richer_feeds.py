"""The example plugin package (examples/richer_feeds, scaffolded by `feedgen new-algorithm --package`, then written):
its three feeds pass the contract on a store built from raw records and on a replayed capture, and its plugin
table follows deletes, account purges and pruning, beside an indexer that raises."""

from __future__ import annotations

import importlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import peewee
import pytest

from feedgen.authoring import StoreBuilder, check_contract
from feedgen.authoring.preview import preview_feed
from feedgen.ingest.events import Account
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.jobs import prune
from feedgen.ranking import CreatedRecord, FeedRequest, Post, RecordIndexer
from feedgen.ranking.plugins import make_feed
from tests import frames
from tests.conftest import CAPTURE_20

EXAMPLE = Path(__file__).parent.parent / 'examples' / 'richer_feeds'
ALICE, BOB, CAROL = 'did:plc:alice', 'did:plc:bob', 'did:plc:carol'
LONG = 'a long post about the state of the art in a field that needs some room to explain itself properly ' * 3


@pytest.fixture(scope='module')
def example() -> Iterator[ModuleType]:
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module('feedgen_linking')
    finally:
        sys.path.remove(str(EXAMPLE))
        sys.modules.pop('feedgen_linking', None)


def _image(alt: str) -> dict[str, Any]:
    return {'alt': alt, 'image': {'$type': 'blob', 'mimeType': 'image/jpeg', 'size': 1}}


def _records() -> list[tuple[str, dict[str, Any]]]:
    """Raw post records, as their authors' apps write them: link facets and cards, images with and without alt text."""
    link = 'app.bsky.richtext.facet#link'
    records = []
    for n in range(8):
        facet = {
            'index': {'byteStart': 0, 'byteEnd': 5},
            'features': [{'$type': link, 'uri': f'https://arxiv.org/abs/{n}'}],
        }
        records.append((ALICE, frames.post_record(f'paper {n}', facets=[facet], langs=['en'])))
        card = {'uri': f'https://www.arxiv.org/pdf/{n}', 'title': 'a paper', 'description': ''}
        records.append(
            (BOB, frames.post_record(f'card {n}', embed={'$type': 'app.bsky.embed.external', 'external': card}))
        )
        records.append(
            (
                CAROL,
                frames.post_record(
                    f'elsewhere {n}', facets=[{'features': [{'$type': link, 'uri': 'https://example.org/'}]}]
                ),
            )
        )
        images = {
            '$type': 'app.bsky.embed.images',
            'images': [_image('a red square'), _image('a blue circle' if n % 2 else '')],
        }
        records.append((ALICE, frames.post_record(f'#art {n}', tags=['art'], embed=images)))
        records.append((BOB, frames.post_record(f'{LONG} {n}')))
    return records


def _build(db: peewee.Database, example: ModuleType, *extra: RecordIndexer) -> StoreBuilder:
    """A store built from `_records` through the firehose path, then a builder on it running the example's indexer."""
    indexers = (*extra, example.POST_LENGTHS)
    messages = [
        frames.commit(seq, author, [('create', f'app.bsky.feed.post/p{seq}', record)])
        for seq, (author, record) in enumerate(_records(), start=1)
    ]
    Pipeline(Indexer(db, 'records', indexers=indexers)).feed_all(messages)
    return StoreBuilder(db, indexers=indexers)


def _feeds(example: ModuleType) -> list[Any]:
    return [example.Linking(), example.Described(), example.Longreads()]


def test_each_feed_passes_the_contract_on_a_store_built_from_raw_records(
    db: peewee.Database, example: ModuleType
) -> None:
    builder = _build(db, example)
    linking, described, longreads = (check_contract(feed, builder) for feed in _feeds(example))
    assert len(linking.items) == 16  # 8 link facets to arxiv.org, 8 cards to www.arxiv.org; none to example.org
    assert len(described.items) == 4  # the #art posts whose two images both have alt text
    assert len(longreads.items) == 8
    explained = example.Described().explain(described.items[0], FeedRequest(limit=1))
    assert explained['filters']['alt_text'] == {'images': 2, 'with_alt_text': 2}


def test_each_feed_passes_the_contract_on_a_replayed_capture(db: peewee.Database, example: ModuleType) -> None:
    builder = StoreBuilder(db, indexers=(example.POST_LENGTHS,))
    builder.replay(CAPTURE_20)
    feeds = [
        example.Linking(domains=['example.com']),
        example.Described(tags=['science']),
        example.Longreads(min_chars=60),
    ]
    for feed in feeds:
        assert len(check_contract(feed, builder).items) > 3


def test_the_plugin_table_follows_deletes_purges_and_pruning_beside_an_indexer_that_raises(
    db: peewee.Database, example: ModuleType
) -> None:
    def raises(record: CreatedRecord) -> list[Any]:
        raise RuntimeError('a bug in another plugin')

    broken = RecordIndexer('broken', frozenset({'app.bsky.feed.post'}), raises, ())
    builder = _build(db, example, broken)
    assert builder.indexer.plugins.indexers[0] is broken
    lengths = example.PostLength
    assert lengths.select().count() == Post.select().count() == 40  # ingest went on; every post has its row
    longreads = example.Longreads()
    first = longreads.page(FeedRequest(limit=1)).items[0].post
    builder.delete(first)
    assert not lengths.select().where(lengths.uri == first).exists()
    assert first not in [item.post for item in longreads.page(FeedRequest(limit=10)).items]
    builder.indexer.write([Account(seq=10_000, did=BOB, time=frames.NOW, active=False, status='deleted')])
    assert not lengths.select().where(lengths.author == BOB).exists()
    assert longreads.page(FeedRequest(limit=10)).items == []
    kept, newest = lengths.select().count(), lengths.select(peewee.fn.MAX(lengths.indexed_at)).scalar()
    assert prune(db, retention_hours=1, now=newest / 1000 + 3000, indexers=[example.POST_LENGTHS])['posts'] == 0
    assert lengths.select().count() == kept  # within the hour
    removed = prune(db, retention_hours=1, now=newest / 1000 + 7200, indexers=[example.POST_LENGTHS])
    assert removed['longreads_post_length'] == kept == 24 and lengths.select().count() == 0


def _feedgen(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith('FEEDGEN_')}
    return subprocess.run(
        [sys.executable, '-m', 'feedgen', *args], env=clean | env, capture_output=True, text=True, timeout=120
    )


def test_feedgen_replay_runs_a_served_feeds_indexer_and_refuses_its_changed_table(tmp_path: Path) -> None:
    plugins = tmp_path / 'plugins'
    plugins.mkdir()
    module = (EXAMPLE / 'feedgen_linking.py').read_text()
    (plugins / 'richer.py').write_text(module)
    env = {'FEEDGEN_DATABASE': str(tmp_path / 'store.db'), 'FEEDGEN_PLUGINS_DIR': str(plugins)}
    assert _feedgen(['replay', str(CAPTURE_20)], env).returncode == 0
    with sqlite3.connect(tmp_path / 'store.db') as conn:
        (rows,) = conn.execute('SELECT COUNT(*) FROM longreads_post_length').fetchone()
        (posts,) = conn.execute('SELECT COUNT(*) FROM post').fetchone()
    assert rows == posts > 0
    changed = module.replace(
        'chars = peewee.IntegerField()', 'chars = peewee.IntegerField()\n    words = peewee.IntegerField(default=0)'
    )
    (plugins / 'richer.py').write_text(changed)
    refused = _feedgen(['replay', str(CAPTURE_20)], env)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        'error: plugin table longreads_post_length of longreads-post-length: its columns changed but its schema '
        'version is still 1; raise schema_version and give a migration, or drop the table'
    ]


def test_a_preview_of_a_feed_with_its_own_indexer_fills_its_table_from_the_capture(example: ModuleType) -> None:
    feed = make_feed(
        {'longreads': example.Longreads}, {'rkey': 'longreads', 'algorithm': 'longreads', 'params': {'min_chars': 60}}
    )
    assert len(preview_feed(feed, CAPTURE_20).items) > 3
