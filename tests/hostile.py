"""Hypothesis strategies for hostile firehose input: any DAG-CBOR value, records and frames that are mostly
well-formed with a few fields replaced, and frames cut short or with bytes overwritten.

DAG-CBOR forbids NaN and infinities and records never carry floats, so values here have none.
"""

from __future__ import annotations

from typing import Any

import libipld
from hypothesis import strategies as st

from tests import frames

ALICE, MALLORY = 'did:plc:alice', 'did:plc:mallory'
POST = 'app.bsky.feed.post'

SEQS = st.integers(min_value=1, max_value=50) | st.sampled_from([0, -1, 2**63, 2**64 - 1])
_INT = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_SCALARS = st.none() | st.booleans() | _INT | st.text(max_size=20) | st.binary(max_size=20)
CBOR = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
WRONG = _SCALARS | CBOR
"""A value for a field that may be of any type: scalars (the commonest mistake) as often as containers."""
DATES = st.sampled_from(
    [frames.NOW, '2026-11-24T12:00:00+14:00', '0001-01-01T00:00:00-23:59', '9999-12-31T23:59:59+23:59', 'never', '']
)
COLLECTIONS = [POST, 'app.bsky.feed.like', 'app.bsky.feed.repost', 'app.bsky.graph.follow']
_REF = st.fixed_dictionaries({'uri': st.sampled_from(['at://did:plc:x/app.bsky.feed.post/1'] * 6 + ['http://x'])})
_TAG = st.fixed_dictionaries({'$type': st.just('app.bsky.richtext.facet#tag'), 'tag': st.text(max_size=10) | CBOR})
_VALID_FIELDS = {
    'text': st.text(max_size=50),
    'createdAt': DATES,
    'langs': st.lists(st.sampled_from(['en', 'pt-BR', '', 'x' * 40]), max_size=4),
    'tags': st.lists(st.text(max_size=10), max_size=3),
    'facets': st.lists(st.fixed_dictionaries({'features': st.lists(_TAG | CBOR, max_size=2)}), max_size=2),
    'reply': st.fixed_dictionaries({'root': _REF, 'parent': _REF}),
    'embed': st.fixed_dictionaries({'$type': st.sampled_from(['app.bsky.embed.images', 'x'])}),
}


_ONE_IN_EIGHT = st.sampled_from([False] * 7 + [True])


def rarely(draw: st.DrawFn, usual: Any, strategy: st.SearchStrategy) -> Any:
    """`usual`, or one time in eight a value drawn from `strategy`: most frames get deep, some break early."""
    return draw(strategy) if draw(_ONE_IN_EIGHT) else usual


@st.composite
def records(draw: st.DrawFn, collection: str) -> Any:
    """A record of `collection` with plausible fields, each replaced one time in eight by any DAG-CBOR value."""
    record: dict[str, Any] = {'$type': collection, 'createdAt': frames.NOW}
    if collection == POST:
        record |= draw(st.fixed_dictionaries({}, optional=_VALID_FIELDS))
    else:
        record['subject'] = draw(_REF | st.sampled_from(['did:plc:bob', 'bob']))
    for key in ['$type', 'subject', *_VALID_FIELDS]:
        if draw(_ONE_IN_EIGHT):
            record[key] = draw(WRONG)
    return rarely(draw, record, CBOR)


@st.composite
def commit_frames(draw: st.DrawFn) -> bytes:
    """A `#commit` frame of random ops over random records, some blocks left out, some fields replaced."""
    blocks, ops = [], []
    for _ in range(draw(st.integers(0, 4))):
        collection = draw(st.sampled_from([*COLLECTIONS, 'x.y.z']))
        block = libipld.encode_dag_cbor(draw(records(collection)))
        if rarely(draw, True, st.just(False)):
            blocks.append(block)
        action = rarely(draw, draw(st.sampled_from(['create', 'create', 'update', 'delete'])), CBOR)
        rkey = draw(st.sampled_from(['a', 'b', '', 'a/b']))
        op: dict[str, Any] = {'action': action, 'path': f'{collection}/{rkey}', 'cid': frames.cid_for(block)}
        ops.append(rarely(draw, op, CBOR))
    body: dict[str, Any] = {
        'seq': rarely(draw, draw(st.integers(1, 50)), SEQS),
        'repo': rarely(draw, draw(st.sampled_from([ALICE, MALLORY])), st.just('mallory')),
        'time': rarely(draw, frames.NOW, DATES),
        'ops': ops,
        'blocks': frames.car(blocks),
        'tooBig': rarely(draw, False, st.just(True)),
    }
    for key in rarely(draw, [], st.lists(st.sampled_from(sorted(body)), min_size=1, max_size=2, unique=True)):
        body[key] = draw(CBOR)
    return frames.frame('#commit', body)


@st.composite
def other_frames(draw: st.DrawFn) -> bytes:
    """Any header (valid or not) over a body of the fields `#account`, `#identity`, `#sync`, `#info` have."""
    kind = draw(st.sampled_from(['#account', '#identity', '#sync', '#info', '#commit', '#mystery']))
    header = draw(st.sampled_from([{'op': 1, 't': kind}, {'op': -1}]) | CBOR)
    fields = {
        'seq': SEQS,
        'did': st.sampled_from([ALICE, 'alice']) | CBOR,
        'time': DATES,
        'active': st.booleans() | CBOR,
        'status': st.sampled_from(['deleted', 'deactivated', 'takendown']) | CBOR,
        'handle': st.text(max_size=10) | CBOR,
        'name': st.sampled_from(['OutdatedCursor']) | CBOR,
        'error': st.sampled_from(['FutureCursor', 'ConsumerTooSlow']) | CBOR,
    }
    body = draw(st.fixed_dictionaries({}, optional=fields) | CBOR)
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[bytes]) -> bytes:
    """A frame cut short, or with a few bytes overwritten."""
    message = bytearray(draw(messages))
    if draw(st.booleans()):
        return bytes(message[: draw(st.integers(0, len(message)))])
    for _ in range(draw(st.integers(1, 4))):
        message[draw(st.integers(0, len(message) - 1))] = draw(st.integers(0, 255))
    return bytes(message)


FRAMES = commit_frames() | other_frames() | mutated(commit_frames() | other_frames()) | st.binary(max_size=200)
