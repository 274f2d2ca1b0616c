"""Labeler subscriptions without a network: a stand-in `subscribeLabels` server, signed labels, the store's rules.

Labels are checked (fields, source, signature against the key in the labeler's DID document, re-resolved once when a
signature fails), stored with the cursor that covers them, replaced by newer ones, negated, expired; a restarting
labeler and a new subscription (as after a kill) neither lose nor double a label.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import peewee
import pytest

from feedgen.ingest import labelers
from feedgen.ingest.events import FrameError
from feedgen.ingest.label_frames import LabelError, LabelsFrame, decode_labels_frame, parse_label, signed
from feedgen.ingest.labelers import LabelerUnavailable, LabelSubscription, resolve_labeler
from feedgen.store.labels import forget_labelers, labeler_cursor, labeler_totals, labels_in_force
from feedgen.store.models import Label, Post
from tests.atnet import eventually
from tests.jwts import SigningKey
from tests.labelers import StandInLabeler, StaticResolver, did_document, labels_frame, signed_label

LABELER = 'did:plc:labeler00000000000000000'
AUTHOR = 'did:plc:author000000000000000000'
POST = f'at://{AUTHOR}/app.bsky.feed.post/3kabc'
OTHER_POST = f'at://{AUTHOR}/app.bsky.feed.post/3kdef'
KEY = SigningKey()


def test_a_signed_label_is_checked_and_a_tampered_one_fails_its_signature() -> None:
    raw = signed_label(KEY, LABELER, POST, 'porn', cid='bafyreib')
    frame = decode_labels_frame(labels_frame(7, raw))
    assert frame == LabelsFrame(7, [raw])
    label = parse_label(raw, LABELER, 7)
    assert (label.src, label.uri, label.val, label.cid, label.neg, label.seq) == (
        LABELER,
        POST,
        'porn',
        'bafyreib',
        False,
        7,
    )
    assert signed(raw, KEY.did_key)
    assert not signed(raw | {'val': 'spam'}, KEY.did_key)
    assert not signed(raw, SigningKey().did_key)


@pytest.mark.parametrize(
    ('raw', 'reason'),
    [
        ({'src': LABELER, 'uri': POST, 'cts': '2026-01-01T00:00:00Z', 'sig': b'x'}, 'malformed'),
        ({'src': 'did:plc:someoneelse', 'uri': POST, 'val': 'porn', 'cts': '2026-01-01T00:00:00Z'}, 'wrong_src'),
        ({'src': LABELER, 'uri': 'https://x', 'val': 'porn', 'cts': '2026-01-01T00:00:00Z', 'sig': b'x'}, 'malformed'),
        ({'src': LABELER, 'uri': POST, 'val': 'porn', 'cts': 'yesterday', 'sig': b'x'}, 'malformed'),
        (
            {'src': LABELER, 'uri': POST, 'val': 'porn', 'cts': '2026-01-01T00:00:00Z', 'neg': 'yes', 'sig': b'x'},
            'malformed',
        ),
        ({'src': LABELER, 'uri': POST, 'val': 'porn', 'cts': '2026-01-01T00:00:00Z'}, 'unsigned'),
        ('a string', 'malformed'),
    ],
)
def test_a_label_that_breaks_the_lexicon_is_rejected_with_a_reason(raw: object, reason: str) -> None:
    with pytest.raises(LabelError) as error:
        parse_label(raw, LABELER, 1)
    assert error.value.reason == reason


@pytest.mark.parametrize('message', [b'\xff', 'text', labels_frame(1)[:5], b'\xa1aa\x01\xa0'])
def test_a_frame_that_is_not_a_labels_message_is_a_frame_error(message: bytes | str) -> None:
    with pytest.raises(FrameError):
        decode_labels_frame(message)


def test_the_labeler_endpoint_and_key_come_from_its_did_document() -> None:
    resolver = StaticResolver({LABELER: did_document(LABELER, 'https://labeler.example/', KEY)})
    labeler = resolve_labeler(resolver, LABELER)
    assert labeler.url == 'wss://labeler.example/xrpc/com.atproto.label.subscribeLabels'
    assert labeler.key == KEY.did_key
    with pytest.raises(LabelerUnavailable, match='no DID document'):
        resolve_labeler(resolver, 'did:plc:nobody')


@pytest.fixture
def labeler() -> Iterator[StandInLabeler]:
    server = StandInLabeler().start()
    yield server
    server.stop()


class Running:
    """A `LabelSubscription` of the stand-in labeler on a thread."""

    def __init__(self, db: peewee.Database, resolver: StaticResolver) -> None:
        self.stop = threading.Event()
        self.subscription = LabelSubscription(LABELER, db, resolver, self.stop)
        self.thread = threading.Thread(target=self.subscription.run, daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def resolver(labeler: StandInLabeler) -> StaticResolver:
    return StaticResolver({LABELER: did_document(LABELER, labeler.endpoint, KEY)})


def _posts(db: peewee.Database) -> None:
    for n, uri in enumerate((POST, OTHER_POST)):
        Post.create(uri=uri, cid=f'bafycid{n}', author=AUTHOR, created_at=n, sort_at=n, indexed_at=n)


def _in_force() -> dict[str, list[str]]:
    return {uri: sorted(label.val for label in labels) for uri, labels in labels_in_force([POST, OTHER_POST]).items()}


def test_labels_are_stored_with_their_cursor_replaced_negated_and_counted(
    db: peewee.Database, labeler: StandInLabeler, resolver: StaticResolver
) -> None:
    _posts(db)
    labeler.append(1, signed_label(KEY, LABELER, POST, 'porn', cid='bafycid0', cts='2026-12-06T12:00:00Z'))
    labeler.append(2, signed_label(KEY, LABELER, POST, 'spam', cid='bafy-an-older-version'))
    labeler.append(3, signed_label(KEY, LABELER, AUTHOR, '!hide'))
    labeler.append(4, signed_label(KEY, LABELER, OTHER_POST, 'nudity', exp='2020-01-01T00:00:00Z'))
    running = Running(db, resolver)
    eventually(lambda: _expect(labeler_cursor(LABELER), 4), timeout=30)
    assert _in_force() == {POST: ['!hide', 'porn'], OTHER_POST: ['!hide']}  # spam: another version; nudity: expired
    assert labeler.connections[0].endswith('?cursor=0')  # a new subscription reads the labeler's whole history

    labeler.append(5, signed_label(KEY, LABELER, AUTHOR, '!hide', neg=True, cts='2026-12-06T12:00:01Z'))
    labeler.append(6, signed_label(KEY, LABELER, AUTHOR, '!hide', cts='2026-12-06T11:00:00Z'))  # older: changes nothing
    labeler.append(7, signed_label(KEY, LABELER, POST, 'porn', cid='bafycid0') | {'val': 'sexual'})  # tampered
    eventually(lambda: _expect(labeler_cursor(LABELER), 7), timeout=30)
    running.end()
    assert _in_force() == {POST: ['porn']}
    assert labeler_totals()[LABELER] == {
        'received': {'porn': 1, 'spam': 1, '!hide': 3, 'nudity': 1, 'sexual': 1},
        'applied': {'porn': 1, 'spam': 1, '!hide': 2, 'nudity': 1},
        'negated': {'!hide': 1},
        'rejected': {'bad_signature': 1},
    }


def test_a_rotated_key_is_resolved_again_once_and_then_labels_verify(
    db: peewee.Database, labeler: StandInLabeler, resolver: StaticResolver
) -> None:
    _posts(db)
    rotated = SigningKey()
    resolver.documents[LABELER] = did_document(LABELER, labeler.endpoint, KEY)
    labeler.append(1, signed_label(KEY, LABELER, POST, 'porn'))
    running = Running(db, resolver)
    eventually(lambda: _expect(labeler_cursor(LABELER), 1), timeout=30)
    resolver.documents[LABELER] = did_document(LABELER, labeler.endpoint, rotated)
    labeler.append(2, signed_label(rotated, LABELER, OTHER_POST, 'porn'))
    labeler.append(3, signed_label(KEY, LABELER, OTHER_POST, 'nudity'))  # the old key no longer signs
    eventually(lambda: _expect(labeler_cursor(LABELER), 3), timeout=30)
    running.end()
    assert resolver.refreshes == 1
    assert _in_force() == {POST: ['porn'], OTHER_POST: ['porn']}
    assert labeler_totals()[LABELER]['rejected'] == {'bad_signature': 1}


def test_a_restarting_labeler_and_a_new_subscription_lose_and_double_nothing(
    db: peewee.Database, labeler: StandInLabeler, resolver: StaticResolver
) -> None:
    _posts(db)
    running = Running(db, resolver)
    values = [f'value-{n}' for n in range(30)]
    for seq, value in enumerate(values[:10], start=1):
        labeler.append(seq, signed_label(KEY, LABELER, POST, value))
    eventually(lambda: _expect(labeler_cursor(LABELER), 10), timeout=30)
    labeler.stop()
    labeler.append(11, signed_label(KEY, LABELER, POST, values[10]))  # while the labeler is down
    labeler.start()
    for seq, value in enumerate(values[11:20], start=12):
        labeler.append(seq, signed_label(KEY, LABELER, POST, value))
    eventually(lambda: _expect(labeler_cursor(LABELER), 20), timeout=60)
    running.end()  # as if killed: a new subscription starts from the stored cursor alone
    for seq, value in enumerate(values[20:], start=21):
        labeler.append(seq, signed_label(KEY, LABELER, POST, value))
    running = Running(db, resolver)
    eventually(lambda: _expect(labeler_cursor(LABELER), 30), timeout=30)
    running.end()
    assert labeler.connections[-1].endswith('?cursor=20')
    assert labeler_totals()[LABELER]['received'] == dict.fromkeys(values, 1)
    assert sorted(label.val for label in Label.select()) == sorted(values)


def test_a_labeler_no_longer_subscribed_to_is_forgotten(db: peewee.Database) -> None:
    for src in (LABELER, 'did:plc:other'):
        Label.create(src=src, uri=POST, val='porn', cts='x', cts_ms=0)
    assert forget_labelers(db, [LABELER]) == 1
    assert [label.src for label in Label.select()] == [LABELER]
    assert forget_labelers(db, []) == 1


def _expect(actual: object, expected: object) -> None:
    assert actual == expected


def test_a_quiet_labeler_stays_connected(
    db: peewee.Database, labeler: StandInLabeler, resolver: StaticResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A labeler with nothing to say answers the keepalive pings: its one connection is kept, not reopened."""
    monkeypatch.setattr(labelers, 'STALL_SECONDS', 1.5)  # pinged after 0.75 s: as long again for the pong
    _posts(db)
    labeler.append(1, signed_label(KEY, LABELER, POST, 'porn'))
    running = Running(db, resolver)
    eventually(lambda: _expect(labeler_cursor(LABELER), 1), timeout=30)
    time.sleep(4.5)  # three stall timeouts of silence
    running.end()
    assert len(labeler.connections) == 1
