"""Store: the peewee models feedgen indexes into, and opening the database they live in.

Owns the schema (posts and their search terms, likes, reposts, follows, blocks of the publisher, labelers' labels,
actors, the firehose cursor and backfill) and the connection setup (SQLite in WAL mode by default, any peewee
`db_url` otherwise).
The indexer is the only writer of posts, likes, reposts and blocks; follows have one more writer, the reader-graph sync
(`feedgen.store.reader_graphs` says how the two agree); labels have one, the label subscriber
(`feedgen.ingest.labelers`, through `feedgen.store.labels`). Algorithms read through these models and never
write. Other writers keep to their own tables, in a `write_transaction`: algorithms' jobs (score
snapshots, feed entries) and the serving process (receipts, reader feedback, reader-graph syncs).
Nothing here knows about the firehose or HTTP.

Times are integer milliseconds since the Unix epoch. `Post.sort_at` is the time a feed sorts by: the
record's `createdAt`, but never later than the moment the network saw the post (a post cannot jump to
the top of `latest` by claiming a future date). Every page query walks an index on `(sort_at, id)`, so
ties in `sort_at` are broken by the unique, insertion-ordered `id`.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from collections.abc import Collection, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import peewee
from playhouse.db_url import connect as connect_url

from feedgen.store.database import SqliteDatabase
from feedgen.store.schema import add_missing_columns, drop_replaced_indexes

database = peewee.DatabaseProxy()

MIN_SQLITE = (3, 35)
"""The oldest SQLite library the store runs on: its writers use `RETURNING`."""

PAGE_BYTES = 1024
"""The page size of a new SQLite store (an existing one keeps its own). Most of what ingest writes into a filled store
are index entries at random places: each dirties a whole page, written to the WAL at each commit and again at each
checkpoint, so a smaller page writes less WAL for the same entry (the checkpoint writes the database file in the
kernel's 4 KB pages all the same: `CHECKPOINT_BYTES`) (docs/design.md, "Ingest")."""

CHECKPOINT_BYTES = 256 * 1024 * 1024
"""How much WAL a writer lets grow before copying it into the database (SQLite's default is 1,000 pages). Most pages
ingest dirties in a filled store are index entries at random places, each written to the database file at the next
checkpoint as a whole 4 KB page of the kernel's, and synced there: the longer between checkpoints, the more of them
(the popular posts' rows and index ranges, the upper levels of every index) are written once for many records. 256 MB
(about 25 s of the live network) against 40 MB: 40% fewer bytes written a frame (bench/RESULTS.md, "Checkpoints every
256 MB"), for a WAL file of about 256 MB and a checkpoint of 1-2 s on the committing thread."""

SQLITE_PRAGMAS = {
    'page_size': PAGE_BYTES,  # first: it takes effect only before the store's first table (and before WAL mode)
    'journal_mode': 'wal',
    'synchronous': 'normal',
    'busy_timeout': 15000,
    'cache_size': -64000,
    'temp_store': 'memory',
    'mmap_size': 268435456,
    'foreign_keys': 0,
    'wal_autocheckpoint': CHECKPOINT_BYTES // PAGE_BYTES,
}
"""`wal_autocheckpoint`: copy the WAL into the database every `CHECKPOINT_BYTES` of pages instead of SQLite's 1,000
pages (docs/design.md, "Ingest")."""

SERVING_PRAGMAS = SQLITE_PRAGMAS | {
    'cache_size': -8000,
    'mmap_size': 0,
    'wal_autocheckpoint': 2 * CHECKPOINT_BYTES // PAGE_BYTES,
}
"""A serving connection's: 8 MB of page cache and no memory map. A worker holds one connection per thread; pages it
reads come from the kernel's page cache (shared by every process and reclaimable), so a worker's own memory stays
bounded whatever it reads (docs/design.md, "Serving"). Its few writes (receipts, a reader's follows) checkpoint only
a WAL twice `CHECKPOINT_BYTES` long, which the ingest process checkpoints well before: a request does not wait for a
checkpoint while ingest runs, and without ingest the WAL stays bounded all the same."""


class BaseModel(peewee.Model):  # type: ignore[misc]  # peewee is untyped (see pyproject.toml)
    class Meta:
        database = database
        legacy_table_names = False


class Post(BaseModel):
    """An indexed `app.bsky.feed.post` record with the counters ranking needs."""

    id = peewee.BigAutoField()
    uri = peewee.TextField(unique=True)
    cid = peewee.TextField()
    author = peewee.TextField()
    text = peewee.TextField(default='')
    langs = peewee.TextField(default='')
    """Space-separated language tags as the author declared them (`en pt-BR`)."""
    tags = peewee.TextField(default='')
    """Space-separated lower-case hashtags, from facets and the record's `tags`."""
    reply_root = peewee.TextField(null=True)
    reply_parent = peewee.TextField(null=True, index=True)
    embed = peewee.TextField(null=True)
    """Kind of embed: `images`, `video`, `external`, `record`, `recordWithMedia`, or null."""
    created_at = peewee.BigIntegerField()
    sort_at = peewee.BigIntegerField()
    indexed_at = peewee.BigIntegerField(index=True)
    seq = peewee.BigIntegerField(default=0)
    like_count = peewee.IntegerField(default=0)
    repost_count = peewee.IntegerField(default=0)
    reply_count = peewee.IntegerField(default=0)
    hidden = peewee.BooleanField(default=False)
    """True while the author's account is not active (deactivated, taken down, suspended) or the author blocks the
    publisher (`PublisherBlock`): no feed shows it."""
    self_labels = peewee.TextField(default='')
    """Space-separated label values the author put on the post (`porn nudity`); feeds leave out `HIDING_SELF_LABELS`."""
    links = peewee.TextField(default='')
    """Space-separated `http(s)` URLs of its link facets and link card, as written (terms `domain:`, `link:`)."""
    mentions = peewee.TextField(default='')
    """Space-separated DIDs its mention facets name (terms `mention:`)."""
    quote = peewee.TextField(null=True)
    """The at-uri of the record it quotes, or null (term `quote:`)."""
    image_count = peewee.IntegerField(default=0)
    """Images it embeds (directly or beside a quote)."""
    alt_count = peewee.IntegerField(default=0)
    """How many of its images have a non-blank alt text."""
    video = peewee.BooleanField(default=False)
    """True when it embeds a video (directly or beside a quote)."""

    class Meta:
        indexes = ((('sort_at', 'id'), False), (('author', 'sort_at', 'id'), False))

    @property
    def has_media(self) -> bool:
        return self.embed in ('images', 'video', 'recordWithMedia')

    @property
    def alt_complete(self) -> bool:
        """True when it has images and every one has an alt text (`alt_complete()` is the same as a condition)."""
        return bool(0 < self.image_count == self.alt_count)


HOUR_MS = 3_600_000


class PostCount(BaseModel):
    """How many posts a feed may show (`visible_posts`) an author made in one hour, by `sort_at`: `quiet`'s rates.

    Every writer of posts recounts the rows of the hours it changed, in its transaction (`feedgen.store.writes`);
    `feedgen.store.post_counts` fills them for a store made before them."""

    author = peewee.TextField()
    hour = peewee.BigIntegerField()
    """`sort_at // HOUR_MS`: the bucket holds the posts with `hour * HOUR_MS <= sort_at < (hour + 1) * HOUR_MS`."""
    posts = peewee.IntegerField()
    replies = peewee.IntegerField()
    """How many of `posts` are replies."""
    indexed_max = peewee.BigIntegerField()
    """The newest `indexed_at` of the posts counted: a session counting up to an earlier moment cannot use the row."""

    class Meta:
        primary_key = peewee.CompositeKey('author', 'hour')
        without_rowid = True


class PostTerm(BaseModel):
    """One searchable term of a post (`tag:python`, `lang:en`, `domain:arxiv.org`: `feedgen.store.terms`), ordered
    like the feeds that filter by it."""

    term = peewee.TextField()
    sort_at = peewee.BigIntegerField()
    post_id = peewee.BigIntegerField()

    class Meta:
        primary_key = peewee.CompositeKey('term', 'sort_at', 'post_id')
        without_rowid = True


class AccountNumber(BaseModel):
    """Each account a like names (its author, or the author of the post it likes), stored once and referred to by
    number: a like keeps two numbers where it kept two DIDs and two URIs (docs/design.md, "Likes by number")."""

    id = peewee.BigAutoField()
    did = peewee.TextField(unique=True)


class LikeRecord(BaseModel):
    """The stored form of a like: `author`'s record `rkey` likes the post `subject_rkey` of `subject_author` (both
    `AccountNumber` ids). Only likes of posts are kept (nothing ranks a like of a feed or a list). Writers go through
    `feedgen.store.likes`; readers use the `Like` view, which spells them as URIs and DIDs."""

    id = peewee.BigAutoField()
    author = peewee.BigIntegerField()
    rkey = peewee.TextField()
    subject_author = peewee.BigIntegerField()
    subject_rkey = peewee.TextField()
    indexed_at = peewee.BigIntegerField(index=True)

    class Meta:
        indexes = (
            (('author', 'rkey'), True),
            (('subject_author', 'subject_rkey'), False),
            (('author', 'indexed_at'), False),
        )
        """A like's key; what counts a post's likes; what `network` walks for the newest likes of each account a
        reader follows."""


LIKE_COLLECTION = 'app.bsky.feed.like'
POST_COLLECTION = 'app.bsky.feed.post'


class Like(BaseModel):
    """An `app.bsky.feed.like` record: `author` liked the post `subject`. A view of `LikeRecord` (read-only):
    selecting by `author` or `indexed_at` walks `LikeRecord`'s indexes; `uri` and `subject` are spelled out from the
    numbers, so a condition on them reads every like (`feedgen.store.likes` finds likes by URI)."""

    uri = peewee.TextField(primary_key=True)
    author = peewee.TextField()
    subject = peewee.TextField()
    indexed_at = peewee.BigIntegerField()


def _like_view() -> str:
    """The `CREATE VIEW` statement of `Like`. The author is a join, so a condition on it walks the accounts'
    DID index and then `(author, indexed_at)`; the subject's DID is a subquery, read only when it is selected."""
    accounts = AccountNumber._meta.table_name
    subject_did = f'(SELECT did FROM "{accounts}" WHERE id = l.subject_author)'
    return (
        f'CREATE VIEW "{Like._meta.table_name}" AS SELECT'
        f" 'at://' || a.did || '/{LIKE_COLLECTION}/' || l.rkey AS uri, a.did AS author,"
        f" 'at://' || {subject_did} || '/{POST_COLLECTION}/' || l.subject_rkey AS subject, l.indexed_at AS indexed_at"
        f' FROM "{LikeRecord._meta.table_name}" AS l JOIN "{accounts}" AS a ON a.id = l.author'
    )


class Repost(BaseModel):
    """An `app.bsky.feed.repost` record: `author` reposted the post `subject`."""

    uri = peewee.TextField(primary_key=True)
    author = peewee.TextField()
    subject = peewee.TextField()
    indexed_at = peewee.BigIntegerField()

    class Meta:
        indexes = (
            (('indexed_at', 'uri'), False),
            (('author', 'indexed_at', 'uri'), False),
            (('subject', 'indexed_at'), False),
        )
        """What `following` walks for the reposts of the accounts a reader follows, newest first (the first also
        serves pruning by time), and where it looks for a newer repost of the same post."""


class Follow(BaseModel):
    """An `app.bsky.graph.follow` record: `author` follows the account `subject`."""

    uri = peewee.TextField(primary_key=True)
    author = peewee.TextField()
    subject = peewee.TextField()
    indexed_at = peewee.BigIntegerField(index=True)
    """What pruning walks: follows of accounts that are not readers go after the retention (`feedgen.jobs`)."""

    class Meta:
        indexes = ((('author', 'subject'), False),)


class PublisherBlock(BaseModel):
    """An `app.bsky.graph.block` record whose subject is the publisher account: `author` opted out of its feeds.

    Blocks of anyone else are not kept. A block delete names only the record, so the record's URI is the key."""

    uri = peewee.TextField(primary_key=True)
    author = peewee.TextField(index=True)


class Actor(BaseModel):
    """An account the firehose told us about through `#identity` or `#account` frames."""

    did = peewee.TextField(primary_key=True)
    handle = peewee.TextField(null=True)
    status = peewee.TextField(default='active')
    """`active`, or the relay's status for an inactive account (`deactivated`, `takendown`, ...)."""


class IngestState(BaseModel):
    """The cursor of each firehose, written in the same transaction as the events it covers."""

    firehose = peewee.TextField(primary_key=True)
    cursor = peewee.BigIntegerField()
    time = peewee.TextField(default='')
    """The `time` of the event at `cursor`, as the relay stamped it."""


class BackfillState(BaseModel):
    """A firehose's history backfill (`feedgen.ingest.backfill`): its horizon, fixed when it starts, and its progress,
    updated in each batch's transaction. `finished_at` set: ingest is live and the backfill never starts again."""

    firehose = peewee.TextField(primary_key=True)
    hours = peewee.FloatField()
    """How far back it was asked to reach (`FEEDGEN_BACKFILL_HOURS`, at most the retention)."""
    horizon = peewee.BigIntegerField()
    """Events older than this (their `time`, in milliseconds) are skipped."""
    started_at = peewee.BigIntegerField()
    finished_at = peewee.BigIntegerField(null=True)
    first_event_time = peewee.BigIntegerField(null=True)
    """Where the source's history begins for this backfill: the `time` of its oldest event, or the horizon if older."""
    event_time = peewee.BigIntegerField(null=True)
    """The `time` of the newest event committed."""
    events = peewee.BigIntegerField(default=0)
    """Events read from the source (skipped ones included) in committed batches."""
    rate = peewee.FloatField(default=0.0)
    """Events read per second by the running backfill."""
    eta_seconds = peewee.FloatField(null=True)
    """Estimated seconds until ingest is live, at the rate the event times advance; None when unknown."""


class IngestStat(BaseModel):
    """Running totals of what ingest read from each firehose, updated in each batch's transaction."""

    firehose = peewee.TextField(primary_key=True)
    totals = peewee.TextField(default='{}')
    """JSON: `frames`, `batches`, `relay_resets`, and counts by label: `events`, `skipped`, `ops`, `reconnects`."""
    rate = peewee.FloatField(default=0.0)
    """Frames read per second over the last seconds before `updated_at`."""
    updated_at = peewee.BigIntegerField(default=0)
    """When the last batch committed, in milliseconds."""


class Label(BaseModel):
    """The current state of one label a labeler put on a subject (`feedgen.store.labels` owns the rules).

    One row per (labeler `src`, subject `uri`, value `val`): a newer label (by `cts`) replaces it, a negation included,
    so a replayed older label never undoes a newer one. A label applies while `neg` is false and `exp_ms` is unset or
    later than now; one with a `cid` applies only to that version of the post.
    """

    src = peewee.TextField()
    uri = peewee.TextField()
    """The subject: a post's at-uri, or an account's DID (covering all its posts)."""
    val = peewee.TextField()
    cid = peewee.TextField(default='')
    neg = peewee.BooleanField(default=False)
    cts = peewee.TextField()
    """The label's creation time as the labeler wrote it (ISO 8601)."""
    cts_ms = peewee.BigIntegerField()
    exp_ms = peewee.BigIntegerField(null=True)
    seq = peewee.BigIntegerField(default=0)
    """The labeler's stream sequence number the label came with."""

    class Meta:
        primary_key = peewee.CompositeKey('src', 'uri', 'val')
        indexes = ((('uri', 'val'), False),)


class LabelerState(BaseModel):
    """A labeler's stream cursor, saved in the transaction that stores the labels it covers, and running totals."""

    did = peewee.TextField(primary_key=True)
    cursor = peewee.BigIntegerField(null=True)
    totals = peewee.TextField(default='{}')
    """JSON: `received`, `applied` and `negated` by label value, `rejected` by reason."""
    updated_at = peewee.BigIntegerField(default=0)


class Receipt(BaseModel):
    """How one served page was made (`feedgen.serve.receipts`), kept for a day; written by the serving process."""

    req_id = peewee.TextField(primary_key=True)
    feed = peewee.TextField()
    """Record key of the feed that served the page."""
    created_at = peewee.BigIntegerField(index=True)
    viewer = peewee.TextField(null=True, index=True)
    """The reader of a personalized page (only their service JWT reads the receipt); null for a public receipt."""
    payload = peewee.BlobField()
    """The receipt as zlib-compressed JSON (a page's receipt is ~3.5 KB of JSON, ~0.5 KB compressed)."""


class FeedStat(BaseModel):
    """Skeleton requests served per feed, added up over every serving process (`feedgen.serve.receipts`)."""

    rkey = peewee.TextField(primary_key=True)
    requests = peewee.BigIntegerField(default=0)
    since = peewee.BigIntegerField()
    """When the first request of this feed was counted."""


class ScoreSnapshot(BaseModel):
    """One run of a scoring job (`feedgen.ranking.scores`): a feed's candidate posts ranked as of `made_at`."""

    id = peewee.BigAutoField()
    key = peewee.TextField()
    """`Algorithm.state_key()` of the ranking feed."""
    made_at = peewee.BigIntegerField()
    candidates = peewee.IntegerField(default=0)
    """Posts the job scored (in the window, passing the filters); the best of them are kept."""

    class Meta:
        indexes = ((('key', 'id'), False),)


class ScoredPost(BaseModel):
    """A post's place in a `ScoreSnapshot`, with the counters its score was computed from."""

    snapshot = peewee.BigIntegerField()
    score = peewee.BigIntegerField()
    post_id = peewee.BigIntegerField()
    likes = peewee.IntegerField()
    reposts = peewee.IntegerField()
    replies = peewee.IntegerField()

    class Meta:
        primary_key = peewee.CompositeKey('snapshot', 'score', 'post_id')
        without_rowid = True
        indexes = ((('snapshot', 'post_id'), True),)


class FeedEntry(BaseModel):
    """A post a job put in a feed whose filter no index answers (keywords: `feedgen.ranking.keyword_matches`)."""

    key = peewee.TextField()
    """`Algorithm.state_key()` of the feed."""
    sort_at = peewee.BigIntegerField()
    post_id = peewee.BigIntegerField()

    class Meta:
        primary_key = peewee.CompositeKey('key', 'sort_at', 'post_id')
        without_rowid = True


class JobState(BaseModel):
    """How far a piece of periodic work has come, by name: the last post id a keyword job tested
    (`feedgen.ranking.keyword_matches`), the last `PostChange` pruned, the next hour of posts to count
    (`feedgen.store.post_counts`)."""

    name = peewee.TextField(primary_key=True)
    position = peewee.BigIntegerField()


def job_position(name: str) -> int | None:
    """The position of the `JobState` row `name`, or None when there is none."""
    position: int | None = JobState.select(JobState.position).where(JobState.name == name).scalar()
    return position


def save_job_position(name: str, position: int) -> None:
    """Sets the `JobState` row `name` to `position`, creating it if needed."""
    JobState.insert(name=name, position=position).on_conflict(
        conflict_target=[JobState.name], update={JobState.position: position}
    ).execute()


class PostChange(BaseModel):
    """A post whose counters, visibility or existence a writer changed, in the order of the changes.

    The writers note each post they change, in the same transaction; incremental score jobs
    (`feedgen.ranking.score_changes`) read the rows after the last id they read. Pruning drops rows older than
    `CHANGES_KEEP_SECONDS` and notes the highest id dropped as the `JobState` row `CHANGES_PRUNED`, so a job that
    missed rows knows to rescan."""

    id = peewee.BigAutoField()
    post_id = peewee.BigIntegerField()
    at = peewee.BigIntegerField()


class VoteChange(BaseModel):
    """An account some of whose likes or reposts a writer deleted (one of its records, or all with its account), in
    the order of the deletes.

    The writers note it in the same transaction (`feedgen.store.writes.delete_subject_records`); a serving worker
    that keeps accounts' newest votes (`feedgen.ranking.kept_votes`) reads the rows after the last id it read and
    forgets those accounts' votes. The prune's deletes are not noted: they delete votes older than the retention, which
    count only in a window longer than it, and a worker keeps an account's votes `REBUILD_SECONDS` at most. Pruning
    drops these rows with the `PostChange` rows."""

    id = peewee.BigAutoField()
    account = peewee.TextField()
    at = peewee.BigIntegerField()


CHANGES_PRUNED = 'post changes pruned'
"""The `JobState` row whose position is the highest `PostChange.id` pruning dropped."""
CHANGES_KEEP_SECONDS = 3600
"""How long pruning keeps a `PostChange` row: far longer than a score job's period."""


class Interaction(BaseModel):
    """Reader feedback (`app.bsky.feed.sendInteractions`), the latest of each kind per post; written by serving."""

    viewer = peewee.TextField()
    event = peewee.TextField()
    """`requestLess`, `requestMore` or `interactionSeen` (the `app.bsky.feed.defs` token's name)."""
    post = peewee.TextField()
    author = peewee.TextField()
    """The post's author, from its URI: feedback about a post is feedback about its author."""
    feed_context = peewee.TextField(null=True)
    at = peewee.BigIntegerField(index=True)

    class Meta:
        primary_key = peewee.CompositeKey('viewer', 'event', 'post')
        without_rowid = True
        indexes = ((('viewer', 'at'), False),)  # a reader's latest feedback, newest first, without a sort


class ReaderGraph(BaseModel):
    """Where the sync of one reader's follows from their own repository stands (`feedgen.store.reader_graphs`)."""

    did = peewee.TextField(primary_key=True)
    state = peewee.TextField()
    """`pending` (a sync runs, or ran in a process that died), `synced` or `failed`."""
    reason = peewee.TextField(default='')
    """Why the last sync failed (`pds_down`, `timeout`, ...), or `truncated` for a sync that stopped at the cap."""
    follows = peewee.IntegerField(default=0)
    """Follow records the last sync read from the repository."""
    attempts = peewee.IntegerField(default=0)
    """Syncs started since the last success."""
    next_at = peewee.BigIntegerField(default=0)
    """Pending: when the running sync's claim lapses; failed: the earliest retry (milliseconds)."""
    updated_at = peewee.BigIntegerField(default=0)


class ReaderGraphDelete(BaseModel):
    """A follow delete the firehose delivered while its author's graph sync was pending: the sync must not keep it."""

    uri = peewee.TextField(primary_key=True)
    reader = peewee.TextField(index=True)


class PluginSchema(BaseModel):
    """The schema a plugin indexer's table was created with (`feedgen.store.plugin_tables`)."""

    table = peewee.TextField(primary_key=True)
    owner = peewee.TextField()
    """The name of the plugin indexer that writes the table."""
    version = peewee.IntegerField()
    columns = peewee.TextField()
    """JSON list of the table's columns as `name type`, as declared when it was created or last migrated."""


MODELS: tuple[type[BaseModel], ...] = (
    *(
        Post,
        PostCount,
        PostTerm,
        AccountNumber,
        LikeRecord,
        Repost,
        Follow,
        PublisherBlock,
        Label,
        LabelerState,
        Actor,
        IngestState,
        BackfillState,
        IngestStat,
        Receipt,
        FeedStat,
    ),
    *(
        ScoreSnapshot,
        ScoredPost,
        FeedEntry,
        JobState,
        PostChange,
        VoteChange,
        Interaction,
        ReaderGraph,
        ReaderGraphDelete,
        PluginSchema,
    ),
)


def open_database(url: str | Path, pragmas: Mapping[str, object] = SQLITE_PRAGMAS) -> peewee.Database:
    """Opens (and creates if needed) the store at `url`, binds the models to it and returns it.

    Args:
        url: a SQLite file path, `:memory:`, or a peewee database URL (`sqlite:///x.db`, `postgresql://...`).
        pragmas: set on each SQLite connection (`SQLITE_PRAGMAS`, or `SERVING_PRAGMAS` for a serving worker).

    Raises:
        RuntimeError: the store is SQLite and the SQLite library Python uses is older than `MIN_SQLITE` (the writers
            read back what they changed with `RETURNING`).
    """
    url = str(url)
    if not url.startswith('postgres') and sqlite3.sqlite_version_info < MIN_SQLITE:
        wanted = '.'.join(map(str, MIN_SQLITE))
        raise RuntimeError(f'SQLite {sqlite3.sqlite_version} is too old for the store: {wanted} or newer is needed')
    if '://' in url:
        db = connect_url(url)
        if isinstance(db, peewee.SqliteDatabase):
            db = SqliteDatabase(db.database, pragmas=dict(pragmas), timeout=15)
    else:
        db = SqliteDatabase(url, pragmas=dict(pragmas), timeout=15)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    create_tables(db)
    from feedgen.store.post_counts import fill_post_counts  # here: it reads the models defined above

    fill_post_counts(db)
    return db


def create_tables(db: peewee.Database) -> None:
    """Creates the missing tables of `MODELS` and the `Like` view (moving the likes of a store written before likes were
    numbered: `feedgen.store.likes`); `WITHOUT ROWID` (a SQLite storage option) only on SQLite."""
    declared = {model: model._meta.without_rowid for model in MODELS}
    try:
        for model in MODELS:
            model._meta.without_rowid = declared[model] and isinstance(db, peewee.SqliteDatabase)
        add_missing_columns(db, MODELS)
        db.create_tables(MODELS, safe=True)
        drop_replaced_indexes(db)
        from feedgen.store.likes import number_stored_likes  # here: it reads the models defined above

        number_stored_likes(db)
        if Like._meta.table_name not in {view.name for view in db.get_views()}:
            db.execute_sql(_like_view())
    finally:
        for model, without_rowid in declared.items():
            model._meta.without_rowid = without_rowid


def get_cursor(firehose: str) -> int | None:
    """Returns the saved cursor of `firehose`, or None when ingest never committed anything from it."""
    state = IngestState.get_or_none(IngestState.firehose == firehose)
    return state.cursor if state else None


def save_cursor(firehose: str, cursor: int, time: str = '') -> None:
    """Saves the cursor; call it inside the transaction that wrote the events up to `cursor`."""
    IngestState.insert(firehose=firehose, cursor=cursor, time=time).on_conflict(
        conflict_target=[IngestState.firehose], update={IngestState.cursor: cursor, IngestState.time: time}
    ).execute()


def write_transaction(db: peewee.Database) -> AbstractContextManager[Any]:
    """A write transaction (the ingest pipeline's batches, jobs, reader feedback): on SQLite it takes the write
    lock at once (`BEGIN IMMEDIATE`), so it waits out the busy timeout rather than fail to upgrade a read lock."""
    transaction: AbstractContextManager[Any] = (
        db.atomic('IMMEDIATE') if isinstance(db, peewee.SqliteDatabase) else db.atomic()
    )
    return transaction


def visible_posts(allow_labels: Collection[str] = ()) -> peewee.ModelSelect:
    """Posts a feed may show: not hidden (their author's account is inactive or their author opted out), nor
    self-labelled (see `self_labels_shown`)."""
    return Post.select().where(Post.hidden == False, self_labels_shown(allow_labels))  # noqa: E712 (peewee expression)


HIDING_SELF_LABELS = ('porn', 'sexual', 'nudity', 'graphic-media')
"""Self-labels that keep a post out of every feed unless the feed's parameters allow them."""


def alt_complete() -> peewee.Expression:
    """The condition of posts with images that all have an alt text (`Post.alt_complete` of one row)."""
    return (Post.image_count > 0) & (Post.alt_count == Post.image_count)


def hiding_self_labels(labels: str, allow_labels: Collection[str] = ()) -> list[str]:
    """Which of the space-separated `labels` of a post keep it out of a feed allowing `allow_labels`."""
    return [label for label in labels.split() if label in HIDING_SELF_LABELS and label not in allow_labels]


def self_labels_shown(allow_labels: Collection[str] = ()) -> peewee.Expression:
    """The condition a post's self-labels pass in a feed allowing `allow_labels` (tested on each row a page walks)."""
    shown: peewee.Expression = Post.self_labels == ''
    hiding = [label for label in HIDING_SELF_LABELS if label not in allow_labels]
    if not hiding:
        return peewee.Value(True)
    spaced = peewee.Value(' ').concat(Post.self_labels).concat(' ')
    none_hiding = functools.reduce(operator.and_, [~spaced.contains(f' {label} ') for label in hiding])
    return shown | none_hiding
