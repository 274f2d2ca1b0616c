"""What a recorded capture holds, read straight from its frames: the truth ranking tests compare feeds with.

`read_truth` applies creates, deletes and account events in stream order with plain dicts, without the
indexer or the store, so a test can compute a feed's expected content and order on its own. `replay_at`
indexes the same capture with the indexer's clock pinned, so times stay what they were when it was recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import peewee

from feedgen.ingest.capture import read_capture
from feedgen.ingest.events import Account, Commit, PostCreate, RecordDelete, SubjectCreate, decode_frame
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.ingest.records import FOLLOW, LIKE, POST, REPOST


@dataclass
class Truth:
    posts: dict[str, PostCreate] = field(default_factory=dict)
    """Posts alive at the end (not deleted, author not deleted), in the order they were made."""
    records: dict[str, dict[str, SubjectCreate]] = field(default_factory=lambda: {LIKE: {}, REPOST: {}, FOLLOW: {}})
    sort_at: dict[str, int] = field(default_factory=dict)
    """When each post was made, as feeds sort it: its createdAt, capped at the relay time of its commit."""
    inactive: set[str] = field(default_factory=set)
    """Accounts deactivated (not deleted) at the end: their posts are hidden."""
    end_ms: int = 0
    """The relay time of the last commit."""

    def counts(self, uri: str) -> tuple[int, int, int]:
        """Likes, reposts and replies of the post `uri` at the end of the capture."""
        likes = sum(1 for like in self.records[LIKE].values() if like.subject == uri)
        reposts = sum(1 for repost in self.records[REPOST].values() if repost.subject == uri)
        return likes, reposts, self.replies()[uri]

    def replies(self) -> Counter[str]:
        return Counter(post.post.reply_parent for post in self.posts.values() if post.post.reply_parent)

    def visible(self) -> dict[str, PostCreate]:
        return {uri: post for uri, post in self.posts.items() if post.author not in self.inactive}

    def follows_of(self, did: str) -> set[str]:
        return {follow.subject for follow in self.records[FOLLOW].values() if follow.author == did}


def read_truth(capture: Path) -> Truth:
    truth = Truth()
    for message in read_capture(capture):
        event = decode_frame(message)
        if isinstance(event, Commit):
            truth.end_ms = max(truth.end_ms, event.time_ms)
            for op in event.ops:
                if isinstance(op, PostCreate):
                    truth.posts[op.uri] = op
                    truth.sort_at[op.uri] = min(op.post.created_at, event.time_ms)
                elif isinstance(op, SubjectCreate):
                    truth.records[op.collection][op.uri] = op
                elif isinstance(op, RecordDelete):
                    (truth.posts if op.collection == POST else truth.records[op.collection]).pop(op.uri, None)
        elif isinstance(event, Account):
            if event.status == 'deleted':
                truth.posts = {uri: post for uri, post in truth.posts.items() if post.author != event.did}
                for records in truth.records.values():
                    for uri in [uri for uri, record in records.items() if record.author == event.did]:
                        del records[uri]
            elif event.active:
                truth.inactive.discard(event.did)
            else:
                truth.inactive.add(event.did)
    return truth


def replay_at(db: peewee.Database, capture: Path, now_ms: int | None) -> None:
    """Indexes `capture` as if every frame arrived at `now_ms`; None: now (as `feedgen preview` does)."""
    clock = time.time if now_ms is None else lambda: now_ms / 1000
    replay(capture, Pipeline(Indexer(db, f'capture:{capture.name}', clock=clock)))
