"""feedback: which authors a reader asked to see less or more of, and which posts they saw, as of when."""

from __future__ import annotations

import peewee

from feedgen.ranking.feedback import (
    FEEDBACK_DAYS,
    LESS,
    LESS_WEIGHT,
    MORE,
    MORE_WEIGHT,
    SEEN,
    author_weights,
    seen_posts,
)
from feedgen.store.models import Interaction
from tests.worlds import NOW_MS, READER, feedback

ALICE_1 = 'at://did:plc:alice/app.bsky.feed.post/1'
ALICE_2 = 'at://did:plc:alice/app.bsky.feed.post/2'
BOB_1 = 'at://did:plc:bob/app.bsky.feed.post/1'
DAY_MS = 86_400_000


def test_the_latest_request_about_an_author_wins(db: peewee.Database) -> None:
    feedback(READER, LESS, ALICE_1, at_ms=NOW_MS - 3000)
    feedback(READER, MORE, ALICE_2, at_ms=NOW_MS - 2000)
    feedback(READER, LESS, BOB_1, at_ms=NOW_MS - 1000)
    assert author_weights(READER, NOW_MS) == {'did:plc:alice': MORE_WEIGHT, 'did:plc:bob': LESS_WEIGHT}
    assert author_weights(READER, NOW_MS - 2500) == {'did:plc:alice': LESS_WEIGHT}, 'as of then'
    assert author_weights('did:plc:someone', NOW_MS) == {}
    assert author_weights(None, NOW_MS) == {}


def test_feedback_older_than_the_window_no_longer_counts(db: peewee.Database) -> None:
    feedback(READER, LESS, ALICE_1, at_ms=NOW_MS - (FEEDBACK_DAYS + 1) * DAY_MS)
    feedback(READER, SEEN, BOB_1, at_ms=NOW_MS - (FEEDBACK_DAYS + 1) * DAY_MS)
    feedback(READER, SEEN, ALICE_2, at_ms=NOW_MS - DAY_MS)
    assert author_weights(READER, NOW_MS) == {}
    assert [post for (post,) in seen_posts(READER, NOW_MS).tuples()] == [ALICE_2]
    assert [post for (post,) in seen_posts(READER, NOW_MS - 2 * DAY_MS).tuples()] == [BOB_1], 'as of then'
    assert list(seen_posts(READER, NOW_MS - 40 * DAY_MS).tuples()) == []
    assert Interaction.select().count() == 3
