"""feedgen.ingest.events: decoding relay frames into events, on real captures and built frames."""

from __future__ import annotations

from collections import Counter

import libipld
import pytest

from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import (
    Account,
    Commit,
    ErrorFrame,
    Identity,
    Info,
    PostCreate,
    RecordDelete,
    SubjectCreate,
    Sync,
    decode_frame,
)
from feedgen.ingest.fields import FrameError
from tests import frames
from tests.conftest import CAPTURE_20

ALICE = 'did:plc:alice'


def test_real_capture_decodes_to_the_recorded_mix() -> None:
    kinds: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    for message in read_capture(CAPTURE_20):
        event = decode_frame(message)
        kinds[type(event).__name__] += 1
        if isinstance(event, Commit):
            assert set(event.skipped) <= {'unindexed_collection'}  # profiles
            for op in event.ops:
                ops[type(op).__name__, getattr(op, 'collection', 'app.bsky.feed.post')] += 1
    # From pds-session-20acct.summary.json (decode_capture.py, the SDK's own decoding).
    assert kinds == {'Commit': 1245, 'Identity': 22, 'Account': 23, 'Sync': 21}
    assert ops['PostCreate', 'app.bsky.feed.post'] == 503
    assert ops['SubjectCreate', 'app.bsky.feed.like'] == 400
    assert ops['SubjectCreate', 'app.bsky.feed.repost'] == 125
    assert ops['SubjectCreate', 'app.bsky.graph.follow'] == 120
    assert ops['RecordDelete', 'app.bsky.feed.post'] == 20
    assert ops['RecordDelete', 'app.bsky.feed.like'] == 26


def test_post_fields_are_extracted() -> None:
    record = frames.post_record(
        'hi #Python',
        langs=['en', 'pt-BR'],
        facets=[{'index': {}, 'features': [{'$type': 'app.bsky.richtext.facet#tag', 'tag': 'Python'}]}],
        tags=['extra'],
        reply={'root': frames.strong_ref('at://did:plc:r/app.bsky.feed.post/1'), 'parent': frames.strong_ref('at://p')},
        embed={'$type': 'app.bsky.embed.images', 'images': []},
    )
    event = decode_frame(frames.commit(7, ALICE, [('create', 'app.bsky.feed.post/abc', record)]))
    assert isinstance(event, Commit)
    (op,) = event.ops
    assert isinstance(op, PostCreate)
    assert op.uri == f'at://{ALICE}/app.bsky.feed.post/abc'
    assert op.cid.startswith('bafyrei')
    assert op.post.tags == ('python', 'extra')
    assert op.post.langs == ('en', 'pt-br')
    assert op.post.reply_parent == 'at://p'
    assert op.post.embed == 'images'
    assert op.post.created_at == 1795521600000


def test_multi_op_commit_keeps_every_op_in_order() -> None:
    like = frames.subject_record('app.bsky.feed.like', frames.strong_ref('at://did:plc:b/app.bsky.feed.post/1'))
    event = decode_frame(
        frames.commit(
            3,
            ALICE,
            [
                ('delete', 'app.bsky.feed.like/old', None),
                ('create', 'app.bsky.feed.like/new', like),
                ('create', 'app.bsky.graph.follow/f1', frames.subject_record('app.bsky.graph.follow', 'did:plc:b')),
                ('create', 'app.bsky.actor.profile/self', {'$type': 'app.bsky.actor.profile'}),
            ],
        )
    )
    assert isinstance(event, Commit)
    assert [type(op) for op in event.ops] == [RecordDelete, SubjectCreate, SubjectCreate]
    assert event.ops[1].subject == 'at://did:plc:b/app.bsky.feed.post/1'
    assert event.ops[2].subject == 'did:plc:b'


def test_update_is_a_delete_then_a_create() -> None:
    event = decode_frame(frames.commit(4, ALICE, [('update', 'app.bsky.feed.post/x', frames.post_record('edited'))]))
    assert isinstance(event, Commit)
    assert [type(op) for op in event.ops] == [RecordDelete, PostCreate]


@pytest.mark.parametrize(
    ('record', 'reason'),
    [
        (frames.post_record('x' * 3001), 'text_too_long'),
        (frames.post_record('ok', created_at='yesterday'), 'invalid_datetime'),
        (frames.post_record('ok', created_at='2026-11-24T12:00:00'), 'invalid_datetime'),
        (frames.post_record(text=5), 'invalid_text'),
        (frames.post_record(langs='en'), 'invalid_langs'),
        ({'$type': 'app.bsky.feed.like', 'text': 'x'}, 'wrong_type'),
    ],
)
def test_invalid_records_are_skipped_with_a_reason(record: dict, reason: str) -> None:
    good = frames.post_record('fine')
    event = decode_frame(
        frames.commit(
            5, ALICE, [('create', 'app.bsky.feed.post/bad', record), ('create', 'app.bsky.feed.post/ok', good)]
        )
    )
    assert isinstance(event, Commit)
    assert event.skipped == [reason]
    assert [op.uri for op in event.ops] == [f'at://{ALICE}/app.bsky.feed.post/ok']


def test_missing_block_is_skipped() -> None:
    data = frames.commit(6, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())])
    _header, body = libipld.decode_dag_cbor_multi(data)
    body['blocks'] = frames.car([])
    event = decode_frame(frames.frame('#commit', body))
    assert isinstance(event, Commit)
    assert event.skipped == ['missing_block']
    assert event.ops == []


def test_account_identity_sync_info_and_error_frames() -> None:
    assert decode_frame(frames.account(9, ALICE, False, 'deleted')) == Account(9, ALICE, frames.NOW, False, 'deleted')
    identity = decode_frame(
        frames.frame('#identity', {'seq': 10, 'did': ALICE, 'time': frames.NOW, 'handle': 'a.test'})
    )
    assert identity == Identity(10, ALICE, frames.NOW, 'a.test')
    assert decode_frame(
        frames.frame('#sync', {'seq': 11, 'did': ALICE, 'time': frames.NOW, 'rev': 'r', 'blocks': b''})
    ) == Sync(11, ALICE, frames.NOW)
    assert decode_frame(frames.frame('#info', {'name': 'OutdatedCursor'})) == Info('OutdatedCursor', None)
    assert decode_frame(frames.error_frame('FutureCursor', 'ahead')) == ErrorFrame('FutureCursor', 'ahead')


@pytest.mark.parametrize(
    ('message', 'reason'),
    [
        (b'\xff\x00garbage', 'bad_cbor'),
        (frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())])[:-20], 'bad_cbor'),
        (frames.frame('#mystery', {'seq': 1}), 'unknown_type'),
        (frames.frame('#commit', {'seq': -1, 'repo': ALICE, 'time': frames.NOW, 'ops': []}), 'bad_body'),
        (frames.frame('#commit', {'seq': 1, 'repo': 'alice', 'time': frames.NOW, 'ops': []}), 'bad_body'),
        (libipld.encode_dag_cbor({'op': 2}) + libipld.encode_dag_cbor({}), 'bad_header'),
    ],
)
def test_undecodable_frames_raise_frame_error(message: bytes, reason: str) -> None:
    with pytest.raises(FrameError) as raised:
        decode_frame(message)
    assert raised.value.reason == reason
