"""Retime: a recorded stream moved to end at a given moment, every record still readable under a CID of its bytes."""

from __future__ import annotations

import hashlib

import libipld

from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import Commit, PostCreate, decode_frame
from feedgen.ingest.records import LIKE, POST, parse_datetime_ms
from feedgen.ingest.relay import error_frame
from feedgen.ingest.retime import retime
from tests.conftest import CAPTURE_5

END_MS = 1_900_000_000_000


def _bodies(frames: list[bytes]) -> list[dict]:
    return [libipld.decode_dag_cbor_multi(message)[1] for message in frames]


def test_every_time_moves_by_one_offset_and_the_last_frame_ends_at_the_given_moment() -> None:
    frames = list(read_capture(CAPTURE_5))
    moved, shift_ms = retime(frames, END_MS)
    before, after = _bodies(frames), _bodies(moved)
    assert max(parse_datetime_ms(body['time']) for body in after) == END_MS
    assert all(
        parse_datetime_ms(new['time']) - parse_datetime_ms(old['time']) == shift_ms
        for old, new in zip(before, after, strict=True)
    )
    assert [body['seq'] for body in after] == [body['seq'] for body in before]


def test_records_keep_their_content_with_createdAt_moved_under_the_cid_of_their_bytes() -> None:
    frames = list(read_capture(CAPTURE_5))
    moved, shift_ms = retime(frames, END_MS)
    posts = 0
    for old_message, new_message in zip(frames, moved, strict=True):
        old, new = decode_frame(old_message), decode_frame(new_message)
        if not isinstance(new, Commit):
            continue
        assert isinstance(old, Commit)
        assert new.skipped == old.skipped
        for old_op, new_op in zip(old.ops, new.ops, strict=True):
            if isinstance(new_op, PostCreate):
                assert isinstance(old_op, PostCreate)
                assert new_op.post.created_at == old_op.post.created_at + shift_ms
                assert new_op.post.text == old_op.post.text and new_op.uri == old_op.uri
                posts += 1
        body = libipld.decode_dag_cbor_multi(new_message)[1]
        _header, blocks = libipld.decode_car(body['blocks'])
        for op in body['ops']:
            if op.get('cid'):
                digest = hashlib.sha256(libipld.encode_dag_cbor(blocks[op['cid']])).digest()
                assert op['cid'][-32:] == digest, 'an op names its record by the hash of its bytes'
    assert posts == 53


def test_likes_point_at_the_new_cid_of_the_post_they_like() -> None:
    moved, _shift = retime(list(read_capture(CAPTURE_5)), END_MS)
    post_cids: dict[str, str] = {}
    checked = 0
    for body in _bodies(moved):
        if 'ops' not in body:
            continue
        _header, blocks = libipld.decode_car(body['blocks'])
        for op in body['ops']:
            record = blocks.get(op.get('cid'), {})
            if record.get('$type') == POST:
                post_cids[f'at://{body["repo"]}/{op["path"]}'] = libipld.encode_cid(op['cid'])
            elif record.get('$type') == LIKE and record['subject']['uri'] in post_cids:
                assert record['subject']['cid'] == post_cids[record['subject']['uri']]
                checked += 1
    assert checked > 10


def test_frames_without_a_time_or_that_do_not_decode_pass_unchanged() -> None:
    frames = [error_frame('FutureCursor'), b'\xff not cbor']
    assert retime(frames, END_MS) == (frames, 0)
