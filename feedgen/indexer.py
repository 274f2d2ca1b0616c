"""Indexer: the single writer that applies decoded firehose events to the store, one transaction a batch.

Owns what each event does to the store and the exactly-once guarantee: the cursor is saved in the same
transaction as the writes it covers, so after a crash ingest resumes exactly after the last committed
batch (nothing lost, nothing doubled). Sequenced events at or below the saved cursor are skipped as
duplicates. Counters (likes, reposts, replies) are recounted from the rows for every post a batch
touches, so they stay exact whatever order or duplication the stream has.

Account status: `deleted` purges the account's posts, likes, reposts and follows; `deactivated`,
`takendown` and `suspended` hide its posts until an `#account` frame says it is active again.
It never reads the network; events come from `feedgen.events`.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import peewee

from feedgen.events import (
    SEQUENCED,
    Account,
    Commit,
    Event,
    Identity,
    PostCreate,
    RecordDelete,
    SubjectCreate,
)
from feedgen.records import FOLLOW, LIKE, POST, REPOST
from feedgen.store import Actor, Follow, Like, Post, PostTerm, Repost, get_cursor, save_cursor

HIDING_STATUSES = frozenset({'deactivated', 'takendown', 'suspended'})
_CHUNK = 500  # rows per statement: well under SQLite's bound-variable limit
_SUBJECT_MODELS: dict[str, type[Like] | type[Repost] | type[Follow]] = {LIKE: Like, REPOST: Repost, FOLLOW: Follow}


def _chunks(items: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def post_terms(tags: Iterable[str], langs: Iterable[str]) -> list[str]:
    """The `PostTerm` terms of a post: `tag:<tag>`, and `lang:<tag>` plus its base language (`pt-br` -> `pt`)."""
    terms = [f'tag:{tag}' for tag in tags]
    for lang in langs:
        terms.append(f'lang:{lang}')
        base = lang.split('-', 1)[0]
        if base != lang:
            terms.append(f'lang:{base}')
    return list(dict.fromkeys(terms))


@dataclass
class Recount:
    """Post URIs whose counters a batch may have changed."""

    likes: set[str] = field(default_factory=set)
    reposts: set[str] = field(default_factory=set)
    replies: set[str] = field(default_factory=set)

    def apply(self) -> None:
        """Recounts each noted post's counter from the rows, one raw `UPDATE` per counter and chunk of posts."""
        db = Post._meta.database
        post = Post._meta.table_name
        for column, table, key, uris in (
            ('like_count', Like._meta.table_name, 'subject', self.likes),
            ('repost_count', Repost._meta.table_name, 'subject', self.reposts),
            ('reply_count', post, 'reply_parent', self.replies),
        ):
            count = f'SELECT COUNT(*) FROM "{table}" AS counted WHERE counted."{key}" = "{post}".uri'
            for chunk in _chunks(sorted(uris)):
                marks = ', '.join([db.param] * len(chunk))
                db.execute_sql(f'UPDATE "{post}" SET "{column}" = ({count}) WHERE uri IN ({marks})', list(chunk))


POST_COLUMNS = (
    'uri', 'cid', 'author', 'text', 'langs', 'tags', 'reply_root', 'reply_parent', 'embed', 'created_at', 'sort_at',
    'indexed_at', 'seq', 'hidden',
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

    def __init__(self, db: peewee.Database, now_ms: int, inactive: set[str], recount: Recount) -> None:
        self.db = db
        self.now_ms = now_ms
        self.inactive = inactive
        self.recount = recount
        self.creates: dict[str, tuple[str, tuple]] = {}
        """uri -> (collection, row) of the create that decides the record's end state, in stream order."""
        self.deletes: dict[str, str] = {}
        """uri -> collection of the records to delete from the store."""
        self.authors: set[str] = set()
        """Repos with pending ops: an `#account` event of one of them must see those ops written first."""

    def add(self, op: PostCreate | SubjectCreate | RecordDelete, commit: Commit) -> None:
        uri = op.uri
        self.authors.add(commit.repo)
        if isinstance(op, RecordDelete):
            self.creates.pop(uri, None)
            self.deletes[uri] = op.collection
        elif uri not in self.creates:
            if isinstance(op, PostCreate):
                self.creates[uri] = (POST, self._post_row(op, commit))
            else:
                self.creates[uri] = (op.collection, (uri, op.author, op.subject, self.now_ms))

    def _post_row(self, op: PostCreate, commit: Commit) -> tuple:
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
            op.author in self.inactive,
        )

    def flush(self) -> None:
        if self.deletes:
            by_collection: dict[str, list[str]] = {}
            for uri, collection in self.deletes.items():
                by_collection.setdefault(collection, []).append(uri)
            for chunk in _chunks(by_collection.get(POST, [])):
                delete_posts(Post.uri.in_(chunk), self.recount)
            for collection in (LIKE, REPOST, FOLLOW):
                model = _SUBJECT_MODELS[collection]
                for chunk in _chunks(by_collection.get(collection, [])):
                    delete_subject_records(model, model.uri.in_(chunk), self.recount)
        if self.creates:
            rows: dict[str, list[tuple]] = {POST: [], LIKE: [], REPOST: [], FOLLOW: []}
            for collection, row in self.creates.values():
                rows[collection].append(row)
            if rows[POST]:
                self._insert_posts(rows[POST])
            for collection in (LIKE, REPOST, FOLLOW):
                if rows[collection]:
                    insert_ignore(self.db, _SUBJECT_MODELS[collection], SUBJECT_COLUMNS, rows[collection])
            self.recount.likes.update(row[2] for row in rows[LIKE])
            self.recount.reposts.update(row[2] for row in rows[REPOST])
        self.creates, self.deletes, self.authors = {}, {}, set()

    def _insert_posts(self, rows: list[tuple]) -> None:
        insert_ignore(self.db, Post, POST_COLUMNS, rows)
        uris = [row[0] for row in rows]
        terms = []
        for chunk in _chunks(uris):
            for post_id, sort_at, tags, langs in (
                Post.select(Post.id, Post.sort_at, Post.tags, Post.langs).where(Post.uri.in_(chunk)).tuples()
            ):
                terms.extend((term, sort_at, post_id) for term in post_terms(tags.split(), langs.split()))
        if terms:
            insert_ignore(self.db, PostTerm, ('term', 'sort_at', 'post_id'), terms)
        self.recount.likes.update(uris)
        self.recount.reposts.update(uris)
        self.recount.replies.update(uris)
        self.recount.replies.update(row[7] for row in rows if row[7])


def insert_ignore(db: peewee.Database, model: type[peewee.Model], columns: Sequence[str], rows: list[tuple]) -> None:
    """Inserts `rows` (values of `columns`; other columns get the model's defaults) into `model`'s table, skipping
    rows whose key is already stored.

    `ON CONFLICT DO NOTHING` on SQLite and PostgreSQL alike, without building a peewee query per row: one
    prepared statement run over all rows on SQLite, multi-row `VALUES` statements elsewhere.
    """
    defaults = {
        field.column_name: field.default
        for field in model._meta.sorted_fields
        if field.column_name not in columns and field.default is not None and not callable(field.default)
    }
    if defaults:
        columns, extra = (*columns, *defaults), tuple(defaults.values())
        rows = [(*row, *extra) for row in rows]
    names = ', '.join(f'"{column}"' for column in columns)
    table = model._meta.table_name
    if isinstance(db, peewee.SqliteDatabase):
        marks = ', '.join('?' * len(columns))
        db.cursor().executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING', rows)
        return
    row_marks = '(' + ', '.join([db.param] * len(columns)) + ')'
    for chunk in _chunks(rows):
        values = ', '.join([row_marks] * len(chunk))
        params = [value for row in chunk for value in row]
        db.execute_sql(f'INSERT INTO "{table}" ({names}) VALUES {values} ON CONFLICT DO NOTHING', params)


def delete_posts(where: peewee.Expression, recount: Recount) -> int:
    """Deletes the posts matching `where` with their terms, noting the parents whose reply counts change."""
    rows = list(Post.select(Post.id, Post.sort_at, Post.tags, Post.langs, Post.reply_parent).where(where).tuples())
    for post_id, sort_at, tags, langs, reply_parent in rows:
        terms = post_terms(tags.split(), langs.split())
        if terms:
            PostTerm.delete().where(
                PostTerm.term.in_(terms), PostTerm.sort_at == sort_at, PostTerm.post_id == post_id
            ).execute()
        if reply_parent:
            recount.replies.add(reply_parent)
    for chunk in _chunks([row[0] for row in rows]):
        Post.delete().where(Post.id.in_(chunk)).execute()
    return len(rows)


def delete_subject_records(
    model: type[Like] | type[Repost] | type[Follow], where: peewee.Expression, recount: Recount
) -> int:
    """Deletes the likes, reposts or follows matching `where`, noting the posts whose counters change."""
    if model is Like:
        recount.likes.update(uri for (uri,) in model.select(model.subject).where(where).tuples())
    elif model is Repost:
        recount.reposts.update(uri for (uri,) in model.select(model.subject).where(where).tuples())
    return model.delete().where(where).execute()


@dataclass
class BatchResult:
    events: int
    cursor: int | None
    skipped: Counter[str]


class Indexer:
    """Applies batches of events to the store. One instance per firehose; not thread-safe (one writer)."""

    def __init__(self, db: peewee.Database, firehose: str, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.firehose = firehose
        self.clock = clock
        if isinstance(db, peewee.SqliteDatabase):
            # The writer's pages are written, not read back: no memory map, and a 32 MB page cache keeps the ingest
            # process under 200 MB resident at no measured cost in speed (bench/ingest).
            db.execute_sql('PRAGMA mmap_size = 0')
            db.execute_sql('PRAGMA cache_size = -32000')
        self.cursor = get_cursor(firehose)
        self.inactive = {did for (did,) in Actor.select(Actor.did).where(Actor.status.in_(HIDING_STATUSES)).tuples()}
        self.skipped: Counter[str] = Counter()
        self.written: Counter[str] = Counter()

    def write(self, events: Sequence[Event]) -> BatchResult:
        """Writes `events` and the cursor of the last sequenced one in one transaction."""
        skipped: Counter[str] = Counter()
        recount = Recount()
        cursor, time_text = self.cursor, ''
        with self.db.atomic():
            batch = _Batch(self.db, int(self.clock() * 1000), self.inactive, recount)
            for event in events:
                if isinstance(event, SEQUENCED):
                    if cursor is not None and event.seq <= cursor:
                        skipped['duplicate_seq'] += 1
                        continue
                    cursor, time_text = event.seq, event.time
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
        if status == 'deleted':
            self.inactive.discard(event.did)
            purge_account(event.did, recount)
        elif status in HIDING_STATUSES:
            self.inactive.add(event.did)
            Post.update(hidden=True).where(Post.author == event.did).execute()
        elif event.active:
            self.inactive.discard(event.did)
            Post.update(hidden=False).where(Post.author == event.did).execute()


def purge_account(did: str, recount: Recount) -> None:
    """Deletes every post, like, repost and follow of the account `did`."""
    delete_posts(Post.author == did, recount)
    for model in (Like, Repost, Follow):
        delete_subject_records(model, model.author == did, recount)


def _op_name(op: PostCreate | SubjectCreate | RecordDelete) -> str:
    if isinstance(op, PostCreate):
        return 'create post'
    return _named(isinstance(op, RecordDelete), op.collection)


@functools.cache
def _named(delete: bool, collection: str) -> str:
    collection = collection.rsplit('.', 1)[-1]
    return f'delete {collection}' if delete else f'create {collection}'
