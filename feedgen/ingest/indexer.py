"""Indexer: the single writer that applies decoded firehose events to the store, one transaction a batch.

Owns what each event does to the store and the exactly-once guarantee: the cursor is saved in the same
transaction as the writes it covers, so after a crash ingest resumes exactly after the last committed
batch (nothing lost, nothing doubled). Sequenced events at or below the saved cursor are skipped as
duplicates. Counters (likes, reposts, replies) change by the rows a batch actually inserts and deletes, and a post
it inserts is recounted from the rows (`feedgen.store.writes`), so they stay exact whatever order or duplication the
stream has.

Each author's posts per hour (`PostCount`) are recounted for the hours a batch changes, in its transaction.

Account status: `deleted` purges the account's posts, likes, reposts and follows; `deactivated`,
`takendown` and `suspended` hide its posts until an `#account` frame says it is active again. An author who blocks
the publisher account (`PublisherBlock`; blocks of anyone else are not kept) opted out: their posts are hidden
until the last such block is deleted. A post is hidden while either reason holds. A follow delete
whose author's reader-graph sync is running is noted for that sync (`feedgen.store.reader_graphs`). Plugin
indexers (`feedgen.ingest.plugin_indexers`) run in the same batch and transaction, after feedgen's own writes.
It never reads the network; events come from `feedgen.ingest.events`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import peewee

from feedgen.ingest.events import (
    SEQUENCED,
    Account,
    Commit,
    Event,
    Identity,
    PostCreate,
    RecordCreate,
    RecordDelete,
    RecordOp,
    event_time_ms,
)
from feedgen.ingest.plugin_indexers import CreatedRecord, PluginIndexers, RecordIndexer, table_specs
from feedgen.ingest.records import BLOCK, FOLLOW, LIKE, POST, REPOST
from feedgen.store.likes import insert_likes
from feedgen.store.models import (
    Actor,
    Follow,
    Like,
    Post,
    PostTerm,
    PublisherBlock,
    Repost,
    get_cursor,
    save_cursor,
)
from feedgen.store.plugin_tables import prepare_plugin_tables
from feedgen.store.reader_graphs import note_follow_deletes
from feedgen.store.statements import chunks, insert_ignore
from feedgen.store.terms import POST_TERM_COLUMNS, row_terms
from feedgen.store.writes import (
    Recount,
    bucket,
    delete_posts,
    delete_subject_records,
    note_changes,
    purge_account,
    recount_authors,
)

log = logging.getLogger(__name__)
HIDING_STATUSES = frozenset({'deactivated', 'takendown', 'suspended'})
_SUBJECT_MODELS: dict[str, type[Like] | type[Repost] | type[Follow]] = {LIKE: Like, REPOST: Repost, FOLLOW: Follow}


POST_COLUMNS = (
    'uri', 'cid', 'author', 'text', 'langs', 'tags', 'reply_root', 'reply_parent', 'embed', 'created_at', 'sort_at',
    'indexed_at', 'seq', 'hidden', 'self_labels', 'links', 'mentions', 'quote', 'image_count', 'alt_count', 'video',
)  # fmt: skip
SUBJECT_COLUMNS = ('uri', 'author', 'subject', 'indexed_at')


class _Batch:
    """Pending record writes of one transaction, reduced to their net effect on each record.

    Applying ops one by one, a delete removes the record and undoes any pending create of it, and a create of a
    record that already exists is ignored. So a record's end state is: deleted from the store if the batch deletes
    it, then created by the first create after its last delete, if any. `flush` applies exactly that, deletes
    first, then the surviving creates in stream order (posts get ids in stream order), with one statement per
    table and chunk instead of one per run of ops.
    """

    def __init__(
        self, db: peewee.Database, now_ms: int, hiding: _Hiding, recount: Recount, plugins: PluginIndexers
    ) -> None:
        self.db = db
        self.now_ms = now_ms
        self.hiding = hiding
        self.recount = recount
        self.plugins = plugins
        self.plugin_creates: dict[str, CreatedRecord] = {}
        """uri -> the record plugin indexers get, for the creates that decide a record's end state."""
        self.creates: dict[str, tuple[str, tuple[Any, ...]]] = {}
        """uri -> (collection, row) of the create that decides the record's end state, in stream order."""
        self.deletes: dict[str, str] = {}
        """uri -> collection of the records to delete from the store."""
        self.authors: set[str] = set()
        """Repos with pending ops: an `#account` event of one of them must see those ops written first."""

    def add(self, op: RecordOp, commit: Commit) -> None:
        uri = op.uri
        self.authors.add(commit.repo)
        if isinstance(op, RecordDelete):
            self.creates.pop(uri, None)
            self.plugin_creates.pop(uri, None)
            self.deletes[uri] = op.collection
            return
        if op.record is not None and uri not in self.plugin_creates:
            collection = POST if isinstance(op, PostCreate) else op.collection
            self.plugin_creates[uri] = CreatedRecord(collection, uri, op.author, commit.time_ms, op.record)
        if isinstance(op, RecordCreate):
            return
        if uri not in self.creates:
            if isinstance(op, PostCreate):
                self.creates[uri] = (POST, self._post_row(op, commit))
            elif op.collection == BLOCK:
                if op.subject == self.hiding.publisher_did:
                    self.creates[uri] = (BLOCK, (uri, op.author))
            else:
                self.creates[uri] = (op.collection, (uri, op.author, op.subject, self.now_ms))

    def _post_row(self, op: PostCreate, commit: Commit) -> tuple[Any, ...]:
        post = op.post
        return (
            op.uri,
            op.cid,
            op.author,
            post.text,
            ' '.join(post.langs),
            ' '.join(post.tags),
            post.reply_root,
            post.reply_parent,
            post.embed,
            post.created_at,
            min(post.created_at, commit.time_ms),
            self.now_ms,
            commit.seq,
            self.hiding.hides(op.author),
            ' '.join(post.self_labels),
            ' '.join(post.links),
            ' '.join(post.mentions),
            post.quote,
            post.images,
            post.alt_texts,
            post.video,
        )

    def flush(self) -> None:
        if self.deletes:
            by_collection: dict[str, list[str]] = {}
            for uri, collection in self.deletes.items():
                by_collection.setdefault(collection, []).append(uri)
            for chunk in chunks(by_collection.get(POST, [])):
                delete_posts(Post.uri.in_(chunk), self.recount)
            if by_collection.get(FOLLOW):
                note_follow_deletes(self.db, by_collection[FOLLOW])  # before the delete: see reader_graphs
            for collection in (LIKE, REPOST, FOLLOW):
                delete_subject_records(
                    _SUBJECT_MODELS[collection], 'uri', by_collection.get(collection, []), self.recount
                )
            for chunk in chunks(by_collection.get(BLOCK, [])):
                self.hiding.unblock(chunk)
            self.plugins.delete(by_collection)
        if self.creates:
            rows: dict[str, list[tuple[Any, ...]]] = {POST: [], LIKE: [], REPOST: [], FOLLOW: [], BLOCK: []}
            for collection, row in self.creates.values():
                rows[collection].append(row)
            if rows[POST]:
                self._insert_posts(rows[POST])
            if rows[FOLLOW]:
                insert_ignore(self.db, Follow, SUBJECT_COLUMNS, rows[FOLLOW])
            if rows[LIKE]:
                self.recount.likes.update(insert_likes(self.db, rows[LIKE]))
            if rows[REPOST]:
                reposted = insert_ignore(self.db, Repost, SUBJECT_COLUMNS, rows[REPOST], ('subject',))
                self.recount.reposts.update(subject for (subject,) in reposted)
            if rows[BLOCK]:
                insert_ignore(self.db, PublisherBlock, ('uri', 'author'), rows[BLOCK])
                self.hiding.changed.update(row[1] for row in rows[BLOCK])
        if self.plugin_creates:
            self.plugins.write(self.db, list(self.plugin_creates.values()), self.now_ms)
        self.hiding.apply()
        self.creates, self.deletes, self.authors, self.plugin_creates = {}, {}, set(), {}

    def _insert_posts(self, rows: list[tuple[Any, ...]]) -> None:
        inserted = insert_ignore(self.db, Post, POST_COLUMNS, rows, ('uri', 'reply_parent'))
        self.recount.posts.update(uri for uri, _ in inserted)
        self.recount.replies.update(parent for _, parent in inserted if parent)
        uris = [row[0] for row in rows]
        terms: list[tuple[str, int, int]] = []
        term_columns = [getattr(Post, name) for name in POST_TERM_COLUMNS]
        for chunk in chunks(uris):
            query = Post.select(Post.id, Post.sort_at, *term_columns).where(Post.uri.in_(chunk))
            for post_id, sort_at, *values in query.tuples():
                terms.extend((term, sort_at, post_id) for term in row_terms(*values))
        if terms:
            insert_ignore(self.db, PostTerm, ('term', 'sort_at', 'post_id'), terms)
        self.recount.buckets.update(bucket(row[2], row[10]) for row in rows)


class _Hiding:
    """Which authors' posts are hidden, and why: an inactive account, or a block of the publisher (opted out).

    Both sets mirror the store; `changed` collects the authors whose reasons changed, and `apply` sets their posts'
    `hidden` to what the reasons say now.
    """

    def __init__(self, publisher_did: str | None) -> None:
        self.publisher_did = publisher_did
        self.inactive = {did for (did,) in Actor.select(Actor.did).where(Actor.status.in_(HIDING_STATUSES)).tuples()}
        self.opted_out = {author for (author,) in PublisherBlock.select(PublisherBlock.author).distinct().tuples()}
        self.changed: set[str] = set()

    def hides(self, author: str) -> bool:
        return author in self.inactive or author in self.opted_out

    def unblock(self, uris: Sequence[str]) -> None:
        """Deletes the kept blocks among `uris` (most block deletes are of blocks of someone else, never kept)."""
        kept = PublisherBlock.select(PublisherBlock.author).where(PublisherBlock.uri.in_(uris))
        self.changed.update(author for (author,) in kept.tuples())
        PublisherBlock.delete().where(PublisherBlock.uri.in_(uris)).execute()

    def apply(self) -> None:
        if not self.changed:
            return
        authors = sorted(self.changed)
        blocking = PublisherBlock.select(PublisherBlock.author).where(PublisherBlock.author.in_(authors)).distinct()
        blockers = {author for (author,) in blocking.tuples()}
        self.opted_out.difference_update(authors)
        self.opted_out.update(blockers)
        hidden = [author for author in authors if self.hides(author)]
        shown = [author for author in authors if not self.hides(author)]
        for value, group in ((True, hidden), (False, shown)):
            for chunk in chunks(group):
                note_changes(Post.author.in_(chunk) & (Post.hidden != value))
                if Post.update(hidden=value).where(Post.author.in_(chunk), Post.hidden != value).execute():
                    recount_authors(chunk)
        self.changed = set()


@dataclass
class BatchResult:
    events: int
    cursor: int | None
    skipped: Counter[str]


class Indexer:
    """Applies batches of events to the store. One instance per firehose; not thread-safe (one writer)."""

    def __init__(
        self,
        db: peewee.Database,
        firehose: str,
        clock: Callable[[], float] = time.time,
        publisher_did: str | None = None,
        indexers: Sequence[RecordIndexer] = (),
    ) -> None:
        """`publisher_did`: the account whose blockers opt out of the feeds; None keeps no block. `indexers`: the
        plugin indexers to run (their tables are created, or checked, here: `PluginTableError` when one differs)."""
        self.db = db
        self.firehose = firehose
        self.clock = clock
        if isinstance(db, peewee.SqliteDatabase):
            # The writer's pages are written, not read back: no memory map, and a 32 MB page cache keeps the ingest
            # process under 200 MB resident at no cost in speed (docs/design.md).
            db.execute_sql('PRAGMA mmap_size = 0')
            db.execute_sql('PRAGMA cache_size = -32000')
        self.cursor = get_cursor(firehose)
        self.plugins = PluginIndexers(indexers)
        for line in prepare_plugin_tables(db, table_specs(indexers)):
            log.info('%s', line)
        self.hiding = _Hiding(publisher_did)
        self.skipped: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.horizon_ms: int | None = None
        """During a backfill (`feedgen.ingest.backfill`): sequenced events whose `time` is older are skipped, counted
        as `before_horizon`, and the cursor still moves past them."""

    def write(self, events: Sequence[Event]) -> BatchResult:
        """Writes `events` and the cursor of the last sequenced one in one transaction."""
        skipped: Counter[str] = Counter()
        recount = Recount()
        cursor, time_text = self.cursor, ''
        with self.db.atomic():
            batch = _Batch(self.db, int(self.clock() * 1000), self.hiding, recount, self.plugins)
            for event in events:
                if isinstance(event, SEQUENCED):
                    if cursor is not None and event.seq <= cursor:
                        skipped['duplicate_seq'] += 1
                        continue
                    cursor, time_text = event.seq, event.time
                    if self.horizon_ms is not None and (event_time_ms(event) or self.horizon_ms) < self.horizon_ms:
                        skipped['before_horizon'] += 1
                        continue
                if isinstance(event, Commit):
                    if event.skipped:
                        skipped.update(event.skipped)
                    for op in event.ops:
                        batch.add(op, event)
                        self.written[_op_name(op)] += 1
                elif isinstance(event, Account):
                    if event.did in batch.authors:
                        batch.flush()
                    self._apply_account(event, recount)
                elif isinstance(event, Identity):
                    Actor.insert(did=event.did, handle=event.handle).on_conflict(
                        conflict_target=[Actor.did], update={Actor.handle: event.handle}
                    ).execute()
            batch.flush()
            recount.apply()
            if cursor is not None and cursor != self.cursor:
                save_cursor(self.firehose, cursor, time_text)
        self.cursor = cursor
        self.skipped.update(skipped)
        return BatchResult(events=len(events), cursor=cursor, skipped=skipped)

    def _apply_account(self, event: Account, recount: Recount) -> None:
        status = 'active' if event.active else (event.status or 'deactivated')
        Actor.insert(did=event.did, status=status).on_conflict(
            conflict_target=[Actor.did], update={Actor.status: status}
        ).execute()
        hidden = self.hiding.hides(event.did)
        if status == 'deleted':
            self.hiding.inactive.discard(event.did)
            self.hiding.opted_out.discard(event.did)
            purge_account(event.did, recount)
            self.plugins.purge(event.did)
        elif status in HIDING_STATUSES:
            self.hiding.inactive.add(event.did)
        elif event.active:
            self.hiding.inactive.discard(event.did)
        if status != 'deleted' and self.hiding.hides(event.did) != hidden:
            # Most account events announce an account active that already was: its posts stay as they are.
            self.hiding.changed.add(event.did)
            self.hiding.apply()


def _op_name(op: RecordOp) -> str:
    if isinstance(op, PostCreate):
        return 'create post'
    return _named(isinstance(op, RecordDelete), op.collection)


@functools.cache
def _named(delete: bool, collection: str) -> str:
    collection = collection.rsplit('.', 1)[-1]
    return f'delete {collection}' if delete else f'create {collection}'
