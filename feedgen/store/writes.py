"""Writes: the set-based statements every writer of the store shares (insert-or-skip, deletes, counters).

The indexer, the jobs and the receipts write through these, so a row inserted twice is skipped by its key and a
counter stays a function of the rows, on SQLite and PostgreSQL alike. A post's like, repost and reply counts change by
the rows pointing at it that a transaction actually inserted or deleted (read back with `RETURNING`: a skipped
duplicate, or a row another writer deleted first, counts for nothing), in the same transaction; recounting instead
would re-read all of a popular post's likes on every like. Recounted from the rows, where that is cheap: the counters
of a post the transaction inserted (rows may point at it already; a new post has few), and each author's posts per
hour (`PostCount`, a handful of posts per bucket; hiding and showing posts change these, never a post's counters).
Every post whose counters, visibility or existence a statement here may change is noted as a `PostChange` in the
same transaction.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from feedgen.store import likes
from feedgen.store.models import (
    HOUR_MS,
    Follow,
    Like,
    Post,
    PostChange,
    PostCount,
    PostTerm,
    PublisherBlock,
    Repost,
    VoteChange,
    visible_posts,
)
from feedgen.store.statements import chunks, delete_keys, run_in_chunks
from feedgen.store.terms import POST_TERM_COLUMNS, row_terms

Bucket = tuple[str, int]
"""An author and an hour (`PostCount`)."""
_BUCKETS = 300
"""Buckets per statement (four bound values each)."""
_COUNTED = (PostCount.author, PostCount.hour, PostCount.posts, PostCount.replies, PostCount.indexed_max)


@dataclass
class Recount:
    """What a transaction changed that counters depend on: the posts it inserted, the net change in like, repost and
    reply rows per post they point at, and the `(author, hour)` buckets whose post counts it may have changed."""

    posts: set[str] = field(default_factory=set)
    likes: Counter[str] = field(default_factory=Counter)
    reposts: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    buckets: set[Bucket] = field(default_factory=set)

    def apply(self) -> None:
        """Adds each post's net change to its counters, then recounts the inserted posts' counters from the rows
        (overriding the changes added to them), one raw `UPDATE` per counter, change and chunk of posts; notes the
        posts whose counters these statements set."""
        changed: set[int] = set()
        for column, changes in (('like_count', self.likes), ('repost_count', self.reposts),
                                ('reply_count', self.replies)):  # fmt: skip
            by_change: dict[int, list[str]] = {}
            for uri, change in changes.items():
                if change and uri not in self.posts:
                    by_change.setdefault(change, []).append(uri)
            for change, uris in by_change.items():
                changed.update(_update_posts(f'"{column}" = "{column}" + {change:d}', uris))
        changed.update(_update_posts(_RECOUNT, self.posts))
        note_posts(changed)
        recount_buckets(self.buckets)


def _pointing_at_post(model: type[peewee.Model], key: str) -> str:
    """The number of `model`'s rows whose `key` is the URI of the post being updated (raw SQL)."""
    post = Post._meta.table_name
    return f'(SELECT COUNT(*) FROM "{model._meta.table_name}" AS counted WHERE counted."{key}" = "{post}".uri)'


_RECOUNT = (
    f'"like_count" = {likes.RECOUNT}, "repost_count" = {_pointing_at_post(Repost, "subject")},'
    f' "reply_count" = {_pointing_at_post(Post, "reply_parent")}'
)
"""Sets a post's like, repost and reply counts to the rows that point at it (raw SQL for `_update_posts`)."""


def _update_posts(assignments: str, uris: Collection[str]) -> list[int]:
    """Sets `assignments` (raw SQL) on the posts `uris`, one raw `UPDATE` per chunk; returns the ids of the posts."""
    update = f'UPDATE "{Post._meta.table_name}" SET {assignments} WHERE uri IN'
    cursors = run_in_chunks(Post._meta.database, update, sorted(uris), ' RETURNING id')
    return [post_id for cursor in cursors for (post_id,) in cursor.fetchall()]


def bucket(author: str, sort_at: int) -> Bucket:
    """The `PostCount` bucket of a post."""
    return author, sort_at // HOUR_MS


def count_columns() -> list[Any]:
    """What a `PostCount` row holds after its author and hour, of the visible posts selected: posts, replies, newest
    `indexed_at`."""
    return [peewee.fn.COUNT(Post.id), peewee.fn.COUNT(Post.reply_parent), peewee.fn.MAX(Post.indexed_at)]


def recount_buckets(buckets: Collection[Bucket]) -> None:
    """Recounts the `PostCount` rows of `buckets` from the post rows; call it in the transaction that changed them.

    A row is kept only for a bucket with visible posts, so the table is a function of the post rows."""
    db = PostCount._meta.database
    for chunk in chunks(sorted(buckets), _BUCKETS):
        touched = peewee.ValuesList([(a, h, h * HOUR_MS, (h + 1) * HOUR_MS) for a, h in chunk], alias='touched')
        author, hour, low, high = touched.c.column1, touched.c.column2, touched.c.column3, touched.c.column4
        in_bucket = (Post.author == author) & (Post.sort_at >= low) & (Post.sort_at < high)
        query = visible_posts().select(author, hour, *count_columns()).join(touched, on=in_bucket)
        counted = db.execute(query.group_by(author, hour)).fetchall()
        emptied = set(chunk).difference((row[0], row[1]) for row in counted)
        delete_keys(db.obj, PostCount, ('author', 'hour'), sorted(emptied))  # a row-value IN would scan the table
        save_counts(counted)


def recount_authors(authors: Iterable[str]) -> None:
    """Recounts every `PostCount` bucket of `authors` (their posts were hidden or shown again)."""
    for chunk in chunks(sorted(set(authors))):
        kept = PostCount.select(PostCount.author, PostCount.hour).where(PostCount.author.in_(chunk)).tuples()
        posted = Post.select(Post.author, Post.sort_at).where(Post.author.in_(chunk)).tuples()
        recount_buckets({*kept, *(bucket(author, sort_at) for author, sort_at in posted)})


def save_counts(counted: Sequence[tuple[Any, ...]]) -> None:
    """Writes `PostCount` rows (author, hour, posts, replies, newest `indexed_at`), replacing those of their buckets."""
    for chunk in chunks(counted):
        PostCount.insert_many(chunk, fields=_COUNTED).on_conflict(
            conflict_target=[PostCount.author, PostCount.hour], preserve=list(_COUNTED[2:])
        ).execute()


def note_changes(where: peewee.Expression) -> None:
    """Notes the posts matching `where` as changed (`PostChange`); call it in the transaction that changes them."""
    now = int(time.time() * 1000)
    changed = Post.select(Post.id, peewee.Value(now)).where(where).order_by(Post.id)
    PostChange.insert_from(changed, fields=[PostChange.post_id, PostChange.at]).execute()


def note_posts(ids: Collection[int]) -> None:
    """Notes the posts `ids` as changed (`PostChange`); call it in the transaction that changes them."""
    _note(PostChange, 'post_id', sorted(ids))


def _note(model: type[PostChange] | type[VoteChange], column: str, values: Sequence[Any]) -> None:
    """Inserts a change note (`column` and the time) for each of `values`, a raw multi-row `INSERT` per chunk."""
    db = model._meta.database
    now = int(time.time() * 1000)
    for chunk in chunks(values):
        rows = ', '.join([f'({db.param}, {now:d})'] * len(chunk))
        db.execute_sql(f'INSERT INTO "{model._meta.table_name}" ("{column}", "at") VALUES {rows}', list(chunk))


def delete_posts(where: peewee.Expression, recount: Recount, max_rows: int | None = None) -> int:
    """Deletes the posts matching `where` with their terms, noting the parents whose reply counts change and the
    buckets whose post counts do; returns how many posts.

    With `max_rows`, only the first posts (at least one) whose deletion changes at most `max_rows` rows of all tables:
    each post's row, its terms, its `PostChange` note, its hour's `PostCount` row, and its parent's count and note.
    """
    term_columns = [getattr(Post, name) for name in POST_TERM_COLUMNS]
    query = Post.select(Post.id, Post.sort_at, Post.author, *term_columns).where(where)
    rows = list((query if max_rows is None else query.limit(max_rows)).tuples())
    terms: list[tuple[str, int, int]] = []
    ids: list[int] = []
    changed = 0
    for post_id, sort_at, author, *values in rows:
        post_terms = row_terms(*values)
        reply_parent = values[POST_TERM_COLUMNS.index('reply_parent')]
        hour = bucket(author, sort_at)
        changed += 2 + len(post_terms) + (2 if reply_parent else 0) + (hour not in recount.buckets)
        if max_rows is not None and ids and changed > max_rows:
            break
        ids.append(post_id)
        terms.extend((term, sort_at, post_id) for term in post_terms)
        recount.buckets.add(hour)
    delete_keys(Post._meta.database.obj, PostTerm, ('term', 'sort_at', 'post_id'), terms)
    for chunk in chunks(ids):
        note_changes(Post.id.in_(chunk))
        deleted = Post.delete().where(Post.id.in_(chunk)).returning(Post.reply_parent).tuples()
        recount.replies.subtract(parent for (parent,) in deleted if parent)
    return len(ids)


def delete_subject_records(
    model: type[Like] | type[Repost] | type[Follow],
    column: str,
    values: Sequence[Any],
    recount: Recount,
    note_voters: bool = True,
) -> int:
    """Deletes the likes (through `feedgen.store.likes`), reposts or follows whose `column` is one of `values`, noting
    the change in the counters of the posts they pointed at and, with `note_voters`, the accounts whose likes or
    reposts they were (`VoteChange`); returns how many."""
    delete = f'DELETE FROM "{model._meta.table_name}" WHERE "{column}" IN'
    db = model._meta.database
    if model is Follow:
        return sum(cursor.rowcount for cursor in run_in_chunks(db, delete, values))
    if model is Like:
        deleted = likes.delete_likes(db, column, values)
    else:
        deleted = [row for cursor in run_in_chunks(db, delete, values, ' RETURNING subject, author') for row in cursor]
    (recount.likes if model is Like else recount.reposts).subtract(subject for subject, _ in deleted)
    if note_voters:
        _note(VoteChange, 'account', sorted({author for _, author in deleted}))
    return len(deleted)


def purge_account(did: str, recount: Recount) -> None:
    """Deletes every post, like, repost, follow and block of the publisher of the account `did`."""
    delete_posts(Post.author == did, recount)
    for model in (Like, Repost, Follow):
        delete_subject_records(model, 'author', [did], recount)
    PublisherBlock.delete().where(PublisherBlock.author == did).execute()
