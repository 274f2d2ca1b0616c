"""Builder: fills a store with posts, likes, reposts, follows and accounts through the real indexer, for tests.

Owns `StoreBuilder`, the small API algorithm authors (and `feedgen.authoring.pytest_plugin`) write test worlds with:
`make_post(author, text, tags, langs, at=...)`, `make_record(author, raw_record)`, `make_like`, `make_repost`,
`make_follow`, `set_account(did, status)`, `delete`, `replay(capture)`, and `run_jobs(algorithm)` to run an
algorithm's scheduled jobs once. Each record is a raw record dict parsed by `feedgen.ingest.records` and written by
`feedgen.ingest.indexer.Indexer` as a one-commit batch, exactly as firehose events are, so what an algorithm sees in
a test is what it sees live. No network.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peewee

from feedgen.ingest.events import Account, Commit, Event, Identity, RecordDelete, created_op
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import IngestStats, Pipeline, replay
from feedgen.ingest.plugin_indexers import RecordIndexer
from feedgen.ingest.records import FOLLOW, INDEXED_COLLECTIONS, LIKE, POST, REPOST, SELF_LABELS, RecordError
from feedgen.ranking.algorithm import Algorithm

Moment = datetime | float | int
"""A time: an aware `datetime`, or seconds since the Unix epoch."""
BUILDER_FIREHOSE = 'feedgen.authoring.builder'
ACCOUNT_STATUSES = ('active', 'deactivated', 'takendown', 'suspended', 'deleted', 'desynchronized', 'throttled')
"""What the relay's `#account` frames say of an account: active, or the lexicon's reason it is not."""


def did(name: str) -> str:
    """`name` as a DID: unchanged when it is one, else `did:plc:<name>` (tests may say `alice`)."""
    return name if name.startswith('did:') else f'did:plc:{name}'


def _seconds(at: Moment) -> float:
    return at.timestamp() if isinstance(at, datetime) else float(at)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec='milliseconds').replace('+00:00', 'Z')


class StoreBuilder:
    """Writes synthetic records into an open store through the indexer, one commit per record.

    Records without `at` are made at the builder's clock: the present, moving forward by a millisecond per
    record, so every record is newer than the one before it. The indexer's clock (`indexed_at`) is the
    record's time, as if the firehose delivered it the moment it was made.
    """

    def __init__(self, db: peewee.Database, indexers: Sequence[RecordIndexer] = ()) -> None:
        """`indexers`: plugin indexers to run on what it writes and replays (their tables are created)."""
        self.db = db
        self._now = time.time()
        self._moment = self._now
        self.indexer = Indexer(db, BUILDER_FIREHOSE, clock=lambda: self._moment, indexers=indexers)
        self._seq = itertools.count((self.indexer.cursor or 0) + 1)

    def _next_moment(self, at: Moment | None) -> float:
        if at is not None:
            return _seconds(at)
        self._now = max(self._now + 0.001, time.time())
        return self._now

    def _commit(self, seq: int, author: str, seconds: float, ops: Iterable[Any]) -> None:
        self._moment = seconds
        commit = Commit(seq=seq, repo=author, time=_iso(seconds), time_ms=int(seconds * 1000))
        commit.ops.extend(ops)
        self.indexer.write([commit])

    def _new_record(self, author: str, collection: str) -> tuple[int, str]:
        """The sequence number of the commit that makes the record, and the record's URI (its rkey is unique)."""
        seq = next(self._seq)
        return seq, f'at://{author}/{collection}/b{seq:012d}'

    def make_record(self, author: str, record: dict[str, Any], at: Moment | None = None) -> str:
        """Indexes a raw record of any collection feedgen indexes (its `$type` names it) and returns its URI.

        The record goes through `feedgen.ingest.records`, the parser firehose records go through, so every field
        the indexer keeps (facets, embeds, self-labels, reply refs) is kept here too. `createdAt` defaults to the
        record's time.

        Raises:
            RecordError: the record breaks its lexicon's rules (the parser's reason, as for a firehose record).
        """
        author, seconds = did(author), self._next_moment(at)
        record = {'createdAt': _iso(seconds)} | record
        collection = record.get('$type')
        plugin_collections = self.indexer.plugins.collections
        if collection not in INDEXED_COLLECTIONS and collection not in plugin_collections:
            known = sorted(INDEXED_COLLECTIONS | set(plugin_collections))
            raise RecordError('unindexed_collection', f'$type {collection!r}: this store indexes {known}')
        seq, uri = self._new_record(author, collection)
        keep = collection in self.indexer.plugins.collections
        op = created_op(collection, uri, author, 'bafy' + uri[-12:], record, keep)
        self._commit(seq, author, seconds, [op])
        return uri

    def make_post(
        self,
        author: str,
        text: str = '',
        tags: Iterable[str] = (),
        langs: Iterable[str] = ('en',),
        at: Moment | None = None,
        reply_to: str | None = None,
        embed: str | dict[str, Any] | None = None,
        labels: Iterable[str] = (),
        facets: Iterable[dict[str, Any]] = (),
    ) -> str:
        """Indexes a post and returns its URI.

        Args:
            author: a DID, or a short name made into `did:plc:<name>`.
            tags: hashtags, with or without `#`.
            langs: the languages the author declares.
            at: when it was made (default: now, after every record made before).
            reply_to: the URI of the post this one replies to (its thread root is taken to be that post).
            embed: a raw embed (`images_embed('a cat')`, `link_card(url)`, `quote_embed(uri)`, ...), or only an
                embed lexicon type, e.g. `app.bsky.embed.images`.
            labels: self-label values the author puts on the post, e.g. `porn`.
            facets: raw rich-text facets (`link_facet(text, 'here', url)`, `mention_facet(...)`, ...).
        """
        record: dict[str, Any] = {'$type': POST, 'text': text, 'langs': list(langs)}
        if tags:
            record['tags'] = list(tags)
        if facets:
            record['facets'] = list(facets)
        if reply_to:
            record['reply'] = {'root': {'uri': reply_to, 'cid': 'x'}, 'parent': {'uri': reply_to, 'cid': 'x'}}
        if embed:
            record['embed'] = {'$type': embed} if isinstance(embed, str) else embed
        if labels:
            record['labels'] = {'$type': SELF_LABELS, 'values': [{'val': label} for label in labels]}
        return self.make_record(author, record, at)

    def _make_subject(self, collection: str, author: str, subject: str | dict[str, str], at: Moment | None) -> str:
        return self.make_record(author, {'$type': collection, 'subject': subject}, at)

    def make_like(self, author: str, post: str, at: Moment | None = None) -> str:
        """Indexes `author`'s like of the post `post` (a URI) and returns the like's URI."""
        return self._make_subject(LIKE, author, {'uri': post, 'cid': 'x'}, at)

    def make_repost(self, author: str, post: str, at: Moment | None = None) -> str:
        """Indexes `author`'s repost of the post `post` (a URI) and returns the repost's URI."""
        return self._make_subject(REPOST, author, {'uri': post, 'cid': 'x'}, at)

    def make_follow(self, author: str, subject: str, at: Moment | None = None) -> str:
        """Indexes `author` following the account `subject` (DIDs or short names) and returns the follow's URI."""
        return self._make_subject(FOLLOW, author, did(subject), at)

    def set_account(
        self, account: str, status: str = 'active', handle: str | None = None, at: Moment | None = None
    ) -> None:
        """Indexes the relay telling that `account` is now in `status` (and has `handle`, when given).

        `status` is one of `ACCOUNT_STATUSES`: `active`, or why the account is not (`deactivated`, `takendown`,
        `suspended` hide its records from feeds until it is active again; `deleted` purges them), as an `#account`
        frame of the firehose says it.

        Raises:
            ValueError: `status` is not one of `ACCOUNT_STATUSES`.
        """
        if status not in ACCOUNT_STATUSES:
            raise ValueError(f'account status {status!r}: expected one of {ACCOUNT_STATUSES}')
        account, seconds = did(account), self._next_moment(at)
        self._moment = seconds
        events: list[Event] = []
        if handle is not None:
            events.append(Identity(seq=next(self._seq), did=account, time=_iso(seconds), handle=handle))
        active = status == 'active'
        events.append(Account(next(self._seq), account, _iso(seconds), active, None if active else status))
        self.indexer.write(events)

    def delete(self, uri: str, at: Moment | None = None) -> None:
        """Indexes the deletion of the record at `uri` (a post, like, repost or follow made before)."""
        author, collection = uri.removeprefix('at://').split('/')[:2]
        self._commit(next(self._seq), author, self._next_moment(at), [RecordDelete(collection=collection, uri=uri)])

    def run_jobs(self, algorithm: Algorithm) -> None:
        """Runs each of the algorithm's scheduled jobs (`Algorithm.jobs`) once on this store, as the scheduler would."""
        for job in algorithm.jobs():
            job.run(self.db)

    def replay(self, capture: str | Path) -> IngestStats:
        """Indexes every message of an ATFH capture, as `feedgen replay` does."""
        indexers = self.indexer.plugins.indexers
        return replay(capture, Pipeline(Indexer(self.db, f'capture:{Path(capture).resolve()}', indexers=indexers)))
