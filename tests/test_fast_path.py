"""The indexer's batched write path against a one-op-at-a-time reference, on a synthetic capture with the live mix.

The reference applies every op as it comes with one peewee statement each and recounts every post (and each author's
posts per hour) at the end;
the fast path (`feedgen.ingest.indexer`, batches reduced to their net effect, raw multi-row statements) must leave the
same rows in every table, whatever the batch size, on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import peewee
import pytest

from bench.ingest.synth import Synthesizer
from feedgen.ingest.events import SEQUENCED, Account, Commit, Event, Identity, PostCreate, RecordDelete, decode_frame
from feedgen.ingest.indexer import HIDING_STATUSES, BatchResult, Indexer
from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import BLOCK, FOLLOW, LIKE, POST, REPOST
from feedgen.settings import Settings
from feedgen.store.likes import insert_likes
from feedgen.store.models import (
    Actor,
    Follow,
    IngestState,
    Like,
    Post,
    PostCount,
    PostTerm,
    PublisherBlock,
    Repost,
    open_database,
    save_cursor,
)
from feedgen.store.terms import post_terms
from feedgen.store.writes import Recount, delete_posts, delete_subject_records, save_counts
from tests.stores import counted_from_rows, stored_counts

FRAMES = 6_000
ACCOUNTS = 300
NOW = 1_800_000_000.0
SUBJECT_MODELS = {LIKE: Like, REPOST: Repost, FOLLOW: Follow}
PUBLISHER = 'did:plc:publisher'


@pytest.fixture(scope='module')
def capture() -> tuple[list[bytes], dict[str, Any]]:
    synthesizer = Synthesizer(FRAMES, ACCOUNTS, seed=7)
    messages = list(synthesizer.messages())
    return messages, synthesizer.truth()


class ReferenceIndexer(Indexer):
    """Applies each op in stream order, one statement at a time; counters are recounted for all posts at the end."""

    def write(self, events: Sequence[Event]) -> BatchResult:
        with self.db.atomic():
            for event in events:
                if isinstance(event, SEQUENCED):
                    if self.cursor is not None and event.seq <= self.cursor:
                        continue
                    self.cursor = event.seq
                    save_cursor(self.firehose, event.seq, event.time)
                if isinstance(event, Commit):
                    for op in event.ops:
                        self._apply(op, event)
                elif isinstance(event, Account):
                    self._apply_account(event, Recount())
                elif isinstance(event, Identity):
                    Actor.insert(did=event.did, handle=event.handle).on_conflict(
                        conflict_target=[Actor.did], update={Actor.handle: event.handle}
                    ).execute()
        return BatchResult(events=len(events), cursor=self.cursor, skipped=self.skipped)

    def _apply(self, op: Any, commit: Commit) -> None:
        if getattr(op, 'collection', POST) == BLOCK:
            self._apply_block(op, commit.repo)
        elif isinstance(op, RecordDelete):
            if op.collection == POST:
                delete_posts(Post.uri == op.uri, Recount())
            else:
                model = SUBJECT_MODELS[op.collection]
                delete_subject_records(model, 'uri', [op.uri], Recount())
        elif isinstance(op, PostCreate):
            if Post.get_or_none(Post.uri == op.uri) is not None:
                return
            post = op.post
            row = Post.create(
                uri=op.uri, cid=op.cid, author=op.author, text=post.text, langs=' '.join(post.langs),
                tags=' '.join(post.tags), reply_root=post.reply_root, reply_parent=post.reply_parent,
                embed=post.embed, created_at=post.created_at, sort_at=min(post.created_at, commit.time_ms),
                indexed_at=int(NOW * 1000), seq=commit.seq, hidden=self.hiding.hides(op.author),
                self_labels=' '.join(post.self_labels), links=' '.join(post.links), mentions=' '.join(post.mentions),
                quote=post.quote, image_count=post.images, alt_count=post.alt_texts, video=post.video,
            )  # fmt: skip
            terms = post_terms(post.tags, post.langs, post.links, post.mentions, post.quote, post.reply_parent,
                               post.reply_root)  # fmt: skip
            for term in terms:
                PostTerm.create(term=term, sort_at=row.sort_at, post_id=row.id)
        elif op.collection == LIKE:
            insert_likes(self.db, [(op.uri, op.author, op.subject, int(NOW * 1000))])
        else:
            model = SUBJECT_MODELS[op.collection]
            model.insert(
                uri=op.uri, author=op.author, subject=op.subject, indexed_at=int(NOW * 1000)
            ).on_conflict_ignore().execute()

    def _apply_block(self, op: Any, author: str) -> None:
        if isinstance(op, RecordDelete):
            PublisherBlock.delete().where(PublisherBlock.uri == op.uri).execute()
        elif op.subject == PUBLISHER:
            PublisherBlock.insert(uri=op.uri, author=author).on_conflict_ignore().execute()
        blocking = PublisherBlock.select().where(PublisherBlock.author == author).exists()
        hiding = blocking or Actor.select().where(Actor.did == author, Actor.status.in_(HIDING_STATUSES)).exists()
        Post.update(hidden=hiding).where(Post.author == author).execute()
        self.hiding.opted_out.discard(author)
        if blocking:
            self.hiding.opted_out.add(author)


def recount_all() -> None:
    replies = Post.alias()
    Post.update(
        like_count=Like.select(peewee.fn.COUNT(Like.uri)).where(Like.subject == Post.uri),
        repost_count=Repost.select(peewee.fn.COUNT(Repost.uri)).where(Repost.subject == Post.uri),
        reply_count=replies.select(peewee.fn.COUNT(replies.id)).where(replies.reply_parent == Post.uri),
    ).execute()


def tables() -> dict[str, list[tuple]]:
    """Every row of every table, ids replaced by what they stand for, sorted; plus the order `latest` shows."""
    columns = [field for field in Post._meta.sorted_fields if field.name != 'id']
    posts = [tuple(bool(v) if f.name in ('hidden', 'video') else v for f, v in zip(columns, row, strict=True))
             for row in Post.select(*columns).tuples()]  # fmt: skip
    terms = PostTerm.select(PostTerm.term, PostTerm.sort_at, Post.uri).join(Post, on=Post.id == PostTerm.post_id)
    return {
        'post': sorted(posts),
        'latest': [uri for (uri,) in Post.select(Post.uri).order_by(Post.sort_at.desc(), Post.id.desc()).tuples()],
        'post_term': sorted(terms.tuples()),
        'orphan_terms': list(PostTerm.select().where(PostTerm.post_id.not_in(Post.select(Post.id))).tuples()),
        **{
            model._meta.table_name: sorted(model.select().tuples())
            for model in (Like, Repost, Follow, PublisherBlock, Actor)
        },
        'ingest_state': sorted(IngestState.select().tuples()),
        'post_count': stored_counts(),
    }


def index(database: str | Path, messages: list[bytes], indexer_type: type[Indexer], batch_size: int) -> dict:
    db = open_database(database)
    try:
        pipeline = Pipeline(
            indexer_type(db, 'synthetic', clock=lambda: NOW, publisher_did=PUBLISHER), batch_size=batch_size
        )
        pipeline.feed_all(messages)
        if indexer_type is ReferenceIndexer:
            recount_all()
            PostCount.delete().execute()
            save_counts(counted_from_rows())
        return tables()
    finally:
        db.close()


@pytest.fixture(scope='module')
def reference(capture: tuple[list[bytes], dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return index(tmp_path_factory.mktemp('reference') / 'ref.db', capture[0], ReferenceIndexer, 1)


@pytest.mark.parametrize('batch_size', [1, 7, 500, 5000])
def test_batches_leave_the_same_store_as_one_op_at_a_time(
    capture: tuple[list[bytes], dict], reference: dict, settings: Settings, batch_size: int
) -> None:
    fast = index(settings.database, capture[0], Indexer, batch_size)
    assert fast.keys() == reference.keys()
    for table in reference:
        assert fast[table] == reference[table], table
    assert fast['orphan_terms'] == []


def test_the_capture_exercises_every_kind_of_write(capture: tuple[list[bytes], dict]) -> None:
    events = [decode_frame(message) for message in capture[0]]
    ops = [type(op).__name__ + ' ' + op.collection.rsplit('.', 1)[-1] for e in events if isinstance(e, Commit)
           for op in e.ops if hasattr(op, 'collection')]  # fmt: skip
    kinds = set(ops) | {type(op).__name__ for e in events if isinstance(e, Commit) for op in e.ops}
    assert {'PostCreate', 'SubjectCreate like', 'SubjectCreate repost', 'SubjectCreate follow'} <= kinds
    assert {'RecordDelete post', 'RecordDelete like', 'RecordDelete repost', 'RecordDelete follow'} <= kinds
    assert {type(e).__name__ for e in events} >= {'Account', 'Identity'}


def test_the_fast_path_matches_the_synthetic_truth(capture: tuple[list[bytes], dict], settings: Settings) -> None:
    messages, truth = capture
    db = open_database(settings.database)
    Pipeline(Indexer(db, 'synthetic'), batch_size=500).feed_all(messages)
    visible = {uri: (likes, reposts) for uri, likes, reposts in
               Post.select(Post.uri, Post.like_count, Post.repost_count).where(Post.hidden == False).tuples()}  # noqa: E712  # fmt: skip
    assert visible == {uri: (post['likes'], post['reposts']) for uri, post in truth['posts'].items()}
    assert sorted(list(row) for row in Follow.select(Follow.author, Follow.subject).tuples()) == truth['follows']
    db.close()


def _edge_cases() -> list[bytes]:
    """Ops whose outcome depends on stream order: repeated creates, create-delete-create, account events mid-batch."""
    from tests import frames

    alice, bob = 'did:plc:alice', 'did:plc:bob'
    post_a = f'at://{alice}/app.bsky.feed.post/a'
    like = frames.subject_record(LIKE, frames.strong_ref(post_a))
    reply = frames.post_record('re', reply={'root': frames.strong_ref(post_a), 'parent': frames.strong_ref(post_a)})
    ops = [
        (alice, [('create', 'app.bsky.feed.post/a', frames.post_record('one', tags=['x'], langs=['pt-BR']))]),
        (alice, [('create', 'app.bsky.feed.post/a', frames.post_record('two'))]),
        (bob, [('create', 'app.bsky.feed.like/l', like), ('delete', 'app.bsky.feed.like/l', None)]),
        (bob, [('create', 'app.bsky.feed.like/l', like), ('create', 'app.bsky.feed.post/r', reply)]),
        (bob, [('delete', 'app.bsky.feed.post/never', None), ('delete', 'app.bsky.feed.post/r', None)]),
        (bob, [('create', 'app.bsky.feed.post/r', reply), ('create', 'app.bsky.feed.post/b', frames.post_record())]),
        (bob, [('create', 'app.bsky.feed.post/b', frames.post_record('a second create is ignored'))]),
        (
            alice,
            [('delete', 'app.bsky.feed.post/a', None), ('create', 'app.bsky.feed.post/a', frames.post_record('3'))],
        ),
    ]
    block = frames.subject_record(BLOCK, PUBLISHER)
    ops += [
        (bob, [('create', 'app.bsky.graph.block/x', block), ('create', 'app.bsky.feed.post/e', frames.post_record())]),
        (bob, [('delete', 'app.bsky.graph.block/x', None), ('create', 'app.bsky.graph.block/y', block)]),
        (alice, [('create', 'app.bsky.graph.block/z', frames.subject_record(BLOCK, bob))]),
    ]
    messages = [frames.commit(seq, repo, repo_ops) for seq, (repo, repo_ops) in enumerate(ops, 1)]
    seq = len(messages)
    messages += [
        frames.account(seq + 1, bob, active=False, status='deactivated'),
        frames.commit(seq + 2, bob, [('create', 'app.bsky.feed.post/c', frames.post_record('hidden'))]),
        frames.commit(seq + 3, alice, [('create', 'app.bsky.feed.like/m', like)]),
        frames.account(seq + 4, bob, active=True),
        frames.commit(seq + 5, bob, [('delete', 'app.bsky.graph.block/y', None)]),
        frames.account(seq + 6, alice, active=False, status='deleted'),
        frames.commit(seq + 7, alice, [('create', 'app.bsky.feed.post/d', frames.post_record('after'))]),
    ]
    return messages


@pytest.mark.parametrize('batch_size', [1, 3, 100])
def test_order_dependent_ops_end_as_applied_one_by_one(settings: Settings, tmp_path: Path, batch_size: int) -> None:
    messages = _edge_cases()
    expected = index(tmp_path / 'ref.db', messages, ReferenceIndexer, 1)
    assert index(settings.database, messages, Indexer, batch_size) == expected
    assert sorted(row[3] for row in expected['post']) == ['after', 'hello', 'hello', 'hidden', 're']
