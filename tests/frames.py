"""Builders of real `subscribeRepos` frames (DAG-CBOR header + body, CARv1 blocks with correct CIDs) for tests."""

from __future__ import annotations

import hashlib
from typing import Any

import libipld

NOW = '2026-11-24T12:00:00.000Z'


def cid_for(block: bytes) -> bytes:
    """CIDv1, dag-cbor codec, sha2-256: the bytes form libipld decodes links into."""
    return b'\x01\x71\x12\x20' + hashlib.sha256(block).digest()


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def car(blocks: list[bytes], root: bytes | None = None) -> bytes:
    """A CARv1 holding `blocks` (already DAG-CBOR encoded)."""
    cids = [cid_for(block) for block in blocks]
    header = libipld.encode_dag_cbor({'version': 1, 'roots': [root or (cids[0] if cids else cid_for(b'root'))]})
    out = bytearray(_varint(len(header)) + header)
    for cid, block in zip(cids, blocks, strict=True):
        out += _varint(len(cid) + len(block)) + cid + block
    return bytes(out)


def frame(kind: str, body: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor({'op': 1, 't': kind}) + libipld.encode_dag_cbor(body)


def error_frame(error: str, message: str = '') -> bytes:
    return libipld.encode_dag_cbor({'op': -1}) + libipld.encode_dag_cbor({'error': error, 'message': message})


def post_record(text: str = 'hello', created_at: str = NOW, **extra: Any) -> dict[str, Any]:
    return {'$type': 'app.bsky.feed.post', 'text': text, 'createdAt': created_at, **extra}


def subject_record(collection: str, subject: Any, created_at: str = NOW) -> dict[str, Any]:
    return {'$type': collection, 'subject': subject, 'createdAt': created_at}


def commit(seq: int, repo: str, ops: list[tuple[str, str, dict | None]], time: str = NOW) -> bytes:
    """A `#commit` frame. Each op is `(action, 'collection/rkey', record or None for deletes)`."""
    blocks, wire_ops = [], []
    for action, path, record in ops:
        if record is None:
            wire_ops.append({'action': action, 'path': path, 'cid': None})
            continue
        block = libipld.encode_dag_cbor(record)
        blocks.append(block)
        wire_ops.append({'action': action, 'path': path, 'cid': cid_for(block)})
    body = {
        'seq': seq,
        'rebase': False,
        'tooBig': False,
        'repo': repo,
        'commit': cid_for(b'commit%d' % seq),
        'rev': '3n32nqtp43s2q',
        'since': None,
        'blocks': car(blocks),
        'ops': wire_ops,
        'blobs': [],
        'time': time,
    }
    return frame('#commit', body)


def account(seq: int, did: str, active: bool, status: str | None = None, time: str = NOW) -> bytes:
    body: dict[str, Any] = {'seq': seq, 'did': did, 'time': time, 'active': active}
    if status:
        body['status'] = status
    return frame('#account', body)


def strong_ref(uri: str) -> dict[str, str]:
    return {'uri': uri, 'cid': 'bafyreie7erbvg45p5dxrnfbxvgejxqaaxyrt4xrbo5xmubbolx7izhckcq'}
