"""feedgen.ingest.pipeline: hostile frames are skipped and counted by reason, and the next good frame is still indexed.

The fuzz tests drive the whole path a relay's bytes take (decode, batch, index) with random and mutated
frames and require that nothing but `FrameError` ever comes out of the decoder, and nothing at all out
of the pipeline.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import libipld
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedgen.ingest.events import SEQUENCED, ErrorFrame, Info, decode_frame
from feedgen.ingest.fields import FrameError
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.store.models import Post, get_cursor, open_database
from tests import frames
from tests.hostile import ALICE, FRAMES, MALLORY, POST


def good(seq: int) -> bytes:
    """A well-formed commit creating the post `good<seq>`."""
    return frames.commit(seq, ALICE, [('create', f'{POST}/good{seq}', frames.post_record(f'good {seq}'))])


def hostile_post(seq: int, **fields: Any) -> bytes:
    return frames.commit(seq, MALLORY, [('create', f'{POST}/bad', frames.post_record(**fields))])


def with_raw_block(seq: int, block: bytes) -> bytes:
    """A commit whose post op points at `block`, raw bytes that need not be valid DAG-CBOR."""
    _header, body = libipld.decode_dag_cbor_multi(hostile_post(seq))
    body['blocks'] = frames.car([block])
    body['ops'][0]['cid'] = frames.cid_for(block)
    return frames.frame('#commit', body)


def with_blocks(seq: int, blocks: bytes) -> bytes:
    """A commit creating a post whose `blocks` field (the CAR) is replaced by `blocks`."""
    _header, body = libipld.decode_dag_cbor_multi(hostile_post(seq))
    body['blocks'] = blocks
    return frames.frame('#commit', body)


def invalid_utf8_record(seq: int) -> bytes:
    block = libipld.encode_dag_cbor(frames.post_record('XXXX'))
    return with_raw_block(seq, block.replace(b'XXXX', b'\xff\xfeXX'))


def invalid_utf8_body(seq: int) -> bytes:
    return hostile_post(seq).replace(MALLORY.encode(), b'did:plc:\xc3\x28allory')


HOSTILE: dict[str, tuple[bytes, str]] = {
    'random bytes': (random.Random(6).randbytes(300), 'bad_cbor'),
    'truncated CBOR': (good(2)[:-9], 'bad_cbor'),
    'header only': (libipld.encode_dag_cbor({'op': 1, 't': '#commit'}), 'bad_cbor'),
    'trailing garbage': (good(2) + b'\x00', 'bad_cbor'),
    'invalid UTF-8 in the body': (invalid_utf8_body(2), 'bad_cbor'),
    'invalid UTF-8 in a record': (invalid_utf8_record(2), 'bad_car'),
    'CAR that is not a CAR': (with_blocks(2, b'\x0agarbage!!'), 'bad_car'),
    'blocks that are not bytes': (with_blocks(2, 'text'), 'bad_body'),  # type: ignore[arg-type]
    'CAR missing the record block': (with_blocks(2, frames.car([])), 'missing_block'),
    'record block that is not a map': (with_raw_block(2, libipld.encode_dag_cbor([1, 2])), 'not_a_map'),
    'unknown collection': (
        frames.commit(2, MALLORY, [('create', 'com.example.unknown/1', {'$type': 'com.example.unknown'})]),
        'unindexed_collection',
    ),
    'record of another type': (hostile_post(2, **{'$type': 'app.bsky.feed.like'}), 'wrong_type'),
    'text of the wrong type': (hostile_post(2, text=['not', 'text']), 'invalid_text'),
    '1 MB text': (hostile_post(2, text='x' * 1_000_000), 'text_too_long'),
    'facets of the wrong type': (hostile_post(2, facets=5), 'invalid_facet'),
    'features of the wrong type': (hostile_post(2, facets=[{'features': True}]), 'invalid_facet'),
    'langs of the wrong type': (hostile_post(2, langs={'en': 1}), 'invalid_langs'),
    'reply that is not a strong ref': (hostile_post(2, reply={'root': 5, 'parent': 5}), 'invalid_ref'),
    'impossible date': (hostile_post(2, created_at='2026-02-30T00:00:00Z'), 'invalid_datetime'),
    'date without a zone': (hostile_post(2, created_at='2026-02-01T00:00:00'), 'invalid_datetime'),
    'date that is a number': (hostile_post(2, created_at=1_700_000_000), 'invalid_datetime'),
    'commit time that is not a date': (frames.commit(2, MALLORY, [], time='noon'), 'bad_body'),
    'seq beyond 64 bits': (hostile_post(2**63), 'bad_body'),
    'unknown frame type': (frames.frame('#mystery', {'seq': 2}), 'unknown_type'),
    'unknown op': (libipld.encode_dag_cbor({'op': 7}) + libipld.encode_dag_cbor({}), 'bad_header'),
    'duplicated sequence number': (hostile_post(1, text='replayed seq'), 'duplicate_seq'),
}


@pytest.mark.parametrize('name', list(HOSTILE))
def test_a_hostile_frame_is_skipped_by_reason_and_the_next_good_frame_is_indexed(pipeline: Pipeline, name: str) -> None:
    message, reason = HOSTILE[name]
    pipeline.feed_all([good(1), message, good(3)])
    assert pipeline.stats.skipped == Counter({reason: 1})
    assert pipeline.stats.frames == 3
    uris = {uri for (uri,) in Post.select(Post.uri).tuples()}
    assert uris == {f'at://{ALICE}/{POST}/good1', f'at://{ALICE}/{POST}/good3'}
    assert get_cursor('test') == 3


def test_good_ops_of_a_commit_survive_a_bad_op(pipeline: Pipeline) -> None:
    mixed = frames.commit(
        1,
        ALICE,
        [
            ('create', f'{POST}/bad', frames.post_record(text=7)),
            ('create', 'app.bsky.graph.listitem/b', {'$type': 'app.bsky.graph.listitem', 'subject': MALLORY}),
            ('create', f'{POST}/ok', frames.post_record('fine')),
        ],
    )
    pipeline.feed_all([mixed])
    assert pipeline.stats.skipped == Counter({'invalid_text': 1, 'unindexed_collection': 1})
    assert [uri for (uri,) in Post.select(Post.uri).tuples()] == [f'at://{ALICE}/{POST}/ok']


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(FRAMES)
def test_decoder_only_ever_raises_frame_error(message: bytes) -> None:
    try:
        event = decode_frame(message)
    except FrameError as error:
        assert error.reason
        return
    assert isinstance(event, (*SEQUENCED, Info, ErrorFrame))


@FUZZ
@given(st.lists(FRAMES, max_size=12))
def test_pipeline_survives_any_stream_and_indexes_the_next_good_frame(messages: list[bytes]) -> None:
    db = open_database(':memory:')
    try:
        pipeline = Pipeline(Indexer(db, 'fuzz'), batch_size=5)
        notices = [pipeline.feed(message) for message in messages]
        pipeline.flush()
        assert all(notice is None or isinstance(notice, Info | ErrorFrame) for notice in notices)
        sentinel = 2**62
        pipeline.feed_all([good(sentinel)])
        assert Post.get_or_none(Post.uri == f'at://{ALICE}/{POST}/good{sentinel}') is not None
        assert get_cursor('fuzz') == sentinel
        decoded = sum(pipeline.stats.events.values())
        frame_errors = pipeline.stats.frames - decoded
        assert frame_errors == sum(n for reason, n in pipeline.stats.skipped.items() if reason in FRAME_REASONS)
    finally:
        db.close()


FRAME_REASONS = frozenset({'bad_cbor', 'bad_header', 'bad_body', 'bad_car', 'unknown_type'})


def test_a_due_batch_keeps_taking_events_while_the_previous_commit_runs(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.batch_seconds = 0.0
    pipeline.feed(hostile_post(1))
    assert pipeline.due()
    monkeypatch.setattr(pipeline.indexer.db, 'committing', lambda: True)
    assert not pipeline.due(), 'a slow commit: the batch grows instead of the pipeline waiting'
    monkeypatch.setattr(pipeline.indexer.db, 'committing', lambda: False)
    assert pipeline.due()
