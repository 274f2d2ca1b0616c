"""Post counters against the rows: random streams of creates, deletes, duplicates, re-creates, account purges,
hides and prunes, in random batches; after every batch and every prune each post's like, repost and reply counts
equal a count of the rows that point at it."""

from __future__ import annotations

import random
from typing import Any

import peewee
import pytest

from feedgen.ingest.events import decode_frame
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.records import LIKE, POST, REPOST
from feedgen.jobs import prune
from feedgen.store import batches
from feedgen.store.models import Like, Post, Repost
from tests import frames

ACCOUNTS = [f'did:plc:account{n}' for n in range(4)]
RKEYS = [f'r{n}' for n in range(6)]
"""Few record keys per account and collection: records are often created again, twice, or deleted before created."""
START = 1_800_000_000.0
RETENTION_HOURS = 1.0


def _counted() -> dict[str, tuple[int, int, int]]:
    """Each post's like, repost and reply counts, counted from the rows one by one."""
    posts = list(Post.select(Post.uri, Post.reply_parent).tuples())
    likes = [subject for (subject,) in Like.select(Like.subject).tuples()]
    reposts = [subject for (subject,) in Repost.select(Repost.subject).tuples()]
    parents = [parent for _, parent in posts]
    return {uri: (likes.count(uri), reposts.count(uri), parents.count(uri)) for uri, _ in posts}


def _stored() -> dict[str, tuple[int, int, int]]:
    columns = (Post.uri, Post.like_count, Post.repost_count, Post.reply_count)
    return {uri: (likes, reposts, replies) for uri, likes, reposts, replies in Post.select(*columns).tuples()}


class _Stream:
    """Random frames over a small world of accounts and record keys, numbered in order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq = 0
        self.sent: list[bytes] = []

    def _uri(self, collection: str) -> str:
        return f'at://{self.rng.choice(ACCOUNTS)}/{collection}/{self.rng.choice(RKEYS)}'

    def frame(self) -> bytes:
        """The next frame: mostly creates and deletes of posts, likes and reposts, sometimes an account event."""
        rng = self.rng
        if self.sent and rng.random() < 0.05:
            return rng.choice(self.sent)  # sent again: skipped as a duplicate sequence number
        self.seq += 1
        author = rng.choice(ACCOUNTS)
        kind = rng.random()
        if kind < 0.06:
            status = rng.choice(['deleted', 'deactivated', 'takendown'])
            message = frames.account(self.seq, author, active=False, status=status)
        elif kind < 0.12:
            message = frames.account(self.seq, author, active=True)
        else:
            message = frames.commit(self.seq, author, [self._op() for _ in range(rng.choice([1, 1, 1, 2, 3]))])
        self.sent.append(message)
        return message

    def _op(self) -> tuple[str, str, dict[str, Any] | None]:
        rng = self.rng
        collection = rng.choice([POST, LIKE, LIKE, LIKE, REPOST])
        path = f'{collection}/{rng.choice(RKEYS)}'
        if rng.random() < 0.35:
            return 'delete', path, None
        if collection != POST:
            return 'create', path, frames.subject_record(collection, frames.strong_ref(self._uri(POST)))
        if rng.random() < 0.5:
            parent = frames.strong_ref(self._uri(POST))
            return 'create', path, frames.post_record('re', reply={'root': parent, 'parent': parent})
        return 'create', path, frames.post_record()


@pytest.mark.parametrize('seed', range(4))
def test_counters_equal_a_recount_after_every_batch_and_prune(
    db: peewee.Database, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr(batches, 'PAUSE_SECONDS', 0.0)
    stream = _Stream(seed)
    clock = [START]
    indexer = Indexer(db, 'random', clock=lambda: clock[0])
    rng = random.Random(seed)
    pruned = 0
    for step in range(120):
        clock[0] += rng.uniform(0, 900)  # records fall out of the retention a few steps after they are indexed
        if rng.random() < 0.15:
            removed = prune(db, RETENTION_HOURS, now=clock[0], max_rows=rng.choice([1, 3, 500]))
            pruned += removed['likes'] + removed['reposts'] + removed['posts']
        else:
            indexer.write([decode_frame(stream.frame()) for _ in range(rng.randrange(1, 12))])
        assert _stored() == _counted(), f'step {step}'
    assert pruned > 0
    assert any(likes for likes, _, _ in _stored().values())
