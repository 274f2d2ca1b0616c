"""Authors opt out by blocking the publisher: the indexer hides their posts while a block of the publisher stands."""

from __future__ import annotations

import peewee
import pytest

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.store.models import Post, PublisherBlock
from tests import frames

PUBLISHER, ALICE, BOB = 'did:plc:publisher', 'did:plc:alice', 'did:plc:bob'
BLOCK = 'app.bsky.graph.block'


def _post(seq: int, author: str, rkey: str) -> bytes:
    return frames.commit(seq, author, [('create', f'app.bsky.feed.post/{rkey}', frames.post_record(rkey))])


def _block(seq: int, author: str, rkey: str, subject: str = PUBLISHER) -> bytes:
    return frames.commit(seq, author, [('create', f'{BLOCK}/{rkey}', frames.subject_record(BLOCK, subject))])


def _unblock(seq: int, author: str, rkey: str) -> bytes:
    return frames.commit(seq, author, [('delete', f'{BLOCK}/{rkey}', None)])


def _hidden(db: peewee.Database, messages: list[bytes], batch_size: int, publisher: str | None = PUBLISHER) -> dict:
    """Indexes `messages` in batches of `batch_size`; returns each post's rkey and whether it is hidden."""
    Pipeline(Indexer(db, 'test', publisher_did=publisher), batch_size=batch_size).feed_all(messages)
    return {uri.rsplit('/', 1)[-1]: hidden for uri, hidden in Post.select(Post.uri, Post.hidden).tuples()}


BATCHES = pytest.mark.parametrize('batch_size', [1, 100], ids=['one-event-batches', 'one-batch'])


@BATCHES
def test_a_block_of_the_publisher_hides_the_authors_posts_old_and_new(db: peewee.Database, batch_size: int) -> None:
    messages = [_post(1, ALICE, 'a1'), _post(2, BOB, 'b1'), _block(3, ALICE, 'x'), _post(4, ALICE, 'a2')]
    assert _hidden(db, messages, batch_size) == {'a1': True, 'a2': True, 'b1': False}
    assert [row.author for row in PublisherBlock.select()] == [ALICE]


@BATCHES
def test_deleting_the_block_brings_the_posts_back(db: peewee.Database, batch_size: int) -> None:
    messages = [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x'), _post(3, ALICE, 'a2'), _unblock(4, ALICE, 'x')]
    assert _hidden(db, messages, batch_size) == {'a1': False, 'a2': False}
    assert PublisherBlock.select().count() == 0


@BATCHES
def test_the_author_stays_out_while_any_of_their_blocks_of_the_publisher_stands(
    db: peewee.Database, batch_size: int
) -> None:
    messages = [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x'), _block(3, ALICE, 'y'), _unblock(4, ALICE, 'x')]
    assert _hidden(db, messages, batch_size) == {'a1': True}


@BATCHES
def test_a_block_of_someone_else_is_not_kept(db: peewee.Database, batch_size: int) -> None:
    messages = [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x', subject=BOB), _unblock(3, BOB, 'never-kept')]
    assert _hidden(db, messages, batch_size) == {'a1': False}
    assert PublisherBlock.select().count() == 0


def test_without_a_publisher_no_block_is_kept(db: peewee.Database) -> None:
    assert _hidden(db, [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x')], 100, publisher=None) == {'a1': False}
    assert PublisherBlock.select().count() == 0


@BATCHES
def test_reactivating_an_account_keeps_a_blockers_posts_hidden(db: peewee.Database, batch_size: int) -> None:
    blocked = [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x'), frames.account(3, ALICE, False, 'deactivated')]
    reactivated = [*blocked, frames.account(4, ALICE, True)]
    assert _hidden(db, reactivated, batch_size) == {'a1': True}
    assert _hidden(db, [_unblock(5, ALICE, 'x')], batch_size) == {'a1': False}


@BATCHES
def test_unblocking_keeps_a_deactivated_accounts_posts_hidden(db: peewee.Database, batch_size: int) -> None:
    messages = [_post(1, ALICE, 'a1'), _block(2, ALICE, 'x'), frames.account(3, ALICE, False), _unblock(4, ALICE, 'x')]
    assert _hidden(db, messages, batch_size) == {'a1': True}
    assert _hidden(db, [frames.account(5, ALICE, True)], batch_size) == {'a1': False}


def test_blockers_stay_out_across_restarts(db: peewee.Database) -> None:
    _hidden(db, [_block(1, ALICE, 'x')], 1)
    assert _hidden(db, [_post(2, ALICE, 'a1')], 1) == {'a1': True}


def test_deleting_an_account_forgets_its_blocks(db: peewee.Database) -> None:
    _hidden(db, [_block(1, ALICE, 'x'), frames.account(2, ALICE, False, 'deleted')], 1)
    assert PublisherBlock.select().count() == 0
