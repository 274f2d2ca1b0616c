"""Reader data: everything the store keeps about one reader, read out or erased, and nothing about anyone else.

Owns the list of what a reader leaves here by reading feeds (`READER_TABLES`): their feedback and seen posts
(`Interaction`), the receipts of their personalized pages (`Receipt.viewer`), their follow graph (`Follow` rows they
authored, which the reader-graph sync reads from their repository) and its sync state (`ReaderGraph`,
`ReaderGraphDelete`). `reader_data` reads them, each list newest first and bounded; `erase_reader` deletes them in one
transaction. Their public records other than follows (posts, likes, reposts, blocks of the publisher) are indexed as
anyone's are: `reader_data` counts them and `erase_reader` leaves them. It knows nothing of HTTP or tokens: the
caller has verified that the reader asked.
"""

from __future__ import annotations

from typing import Any

import peewee

from feedgen.store.models import (
    Follow,
    Interaction,
    Like,
    Post,
    PublisherBlock,
    ReaderGraph,
    ReaderGraphDelete,
    Receipt,
    Repost,
    write_transaction,
)

MAX_ROWS = 10_000
"""The most rows of each kind `reader_data` lists (the newest); its `count` says how many there are."""
READER_TABLES = ('feedback', 'receipts', 'follows', 'graph_sync')
"""What `erase_reader` deletes, by the names `reader_data` gives them."""


def _listed(query: peewee.ModelSelect, count: int, max_rows: int) -> dict[str, Any]:
    rows = list(query.limit(max_rows).dicts())
    return {'count': count, 'truncated': count > len(rows), 'rows': rows}


def reader_data(did: str, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """What the store keeps about reader `did`, as JSON-able data: each kind's `count`, `truncated` and newest `rows`.

    `graph_sync` is the state of the sync of their follows (None when none ran or it was erased); `publicRecords`
    counts the public records of theirs that ingest indexed (kept as anyone's, not erased).
    """
    feedback = Interaction.select(
        Interaction.event,
        Interaction.post,
        Interaction.author,
        Interaction.feed_context.alias('feedContext'),
        Interaction.at,
    ).where(Interaction.viewer == did)
    receipts = Receipt.select(Receipt.req_id.alias('reqId'), Receipt.feed, Receipt.created_at.alias('createdAt'))
    receipts = receipts.where(Receipt.viewer == did)
    follows = Follow.select(Follow.uri, Follow.subject, Follow.indexed_at.alias('indexedAt'))
    follows = follows.where(Follow.author == did)
    sync = ReaderGraph.get_or_none(ReaderGraph.did == did)
    return {
        'did': did,
        'feedback': _listed(feedback.order_by(Interaction.at.desc()), feedback.count(), max_rows),
        'receipts': _listed(receipts.order_by(Receipt.created_at.desc()), receipts.count(), max_rows),
        'follows': _listed(follows.order_by(Follow.indexed_at.desc(), Follow.uri), follows.count(), max_rows),
        'graph_sync': None
        if sync is None
        else {
            'state': sync.state,
            'reason': sync.reason,
            'follows': sync.follows,
            'attempts': sync.attempts,
            'updatedAt': sync.updated_at,
            'followDeletesNoted': ReaderGraphDelete.select().where(ReaderGraphDelete.reader == did).count(),
        },
        'publicRecords': {
            'posts': Post.select().where(Post.author == did).count(),
            'likes': Like.select().where(Like.author == did).count(),
            'reposts': Repost.select().where(Repost.author == did).count(),
            'publisherBlocks': PublisherBlock.select().where(PublisherBlock.author == did).count(),
        },
    }


def erase_reader(db: peewee.Database, did: str) -> dict[str, int]:
    """Deletes what the store keeps about reader `did` (`READER_TABLES`) in one transaction; returns rows deleted
    of each kind. Their follows come back when the sync next reads their repository."""
    with write_transaction(db):
        feedback: int = Interaction.delete().where(Interaction.viewer == did).execute()
        receipts: int = Receipt.delete().where(Receipt.viewer == did).execute()
        follows: int = Follow.delete().where(Follow.author == did).execute()
        ReaderGraphDelete.delete().where(ReaderGraphDelete.reader == did).execute()
        graph: int = ReaderGraph.delete().where(ReaderGraph.did == did).execute()
    return {'feedback': feedback, 'receipts': receipts, 'follows': follows, 'graph_sync': graph}
