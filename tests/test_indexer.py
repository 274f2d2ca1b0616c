"""feedgen.ingest.indexer: what each event does to the store, counters, account status, and exactly-once writes."""

from __future__ import annotations

import logging

import peewee
import pytest

from feedgen.ingest.indexer import Indexer
from feedgen.ingest.pipeline import Pipeline, replay
from feedgen.store.models import Actor, Follow, Like, Post, PostTerm, Repost, get_cursor
from tests import frames
from tests.conftest import CAPTURE_20, expected_posts, load_session

ALICE, BOB, CAROL = 'did:plc:alice', 'did:plc:bob', 'did:plc:carol'
POST_A = f'at://{ALICE}/app.bsky.feed.post/a'


def _like(uri: str) -> dict:
    return frames.subject_record('app.bsky.feed.like', frames.strong_ref(uri))


def _repost(uri: str) -> dict:
    return frames.subject_record('app.bsky.feed.repost', frames.strong_ref(uri))


def _feed(pipeline: Pipeline, *messages: bytes) -> None:
    pipeline.feed_all(messages)


def _post(uri: str) -> Post:
    return Post.get(Post.uri == uri)


def test_capture_indexes_exactly_the_live_posts_newest_first(pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    latest = [uri for (uri,) in Post.select(Post.uri).order_by(Post.sort_at.desc(), Post.id.desc()).tuples()]
    assert latest == expected_posts(CAPTURE_20)
    assert get_cursor('test') == 1311


def test_capture_counters_match_the_records(pipeline: Pipeline) -> None:
    replay(CAPTURE_20, pipeline)
    for post in Post.select():
        assert post.like_count == Like.select().where(Like.subject == post.uri).count()
        assert post.repost_count == Repost.select().where(Repost.subject == post.uri).count()
        assert post.reply_count == Post.select().where(Post.reply_parent == post.uri).count()
    assert Post.select(peewee.fn.SUM(Post.like_count)).scalar() > 0
    deleted = load_session(CAPTURE_20)['account_events']['admin_deleted']
    for model in (Like, Repost, Follow):
        assert model.select().where(model.author == deleted).count() == 0


def test_multi_op_commit_replaces_a_like_and_counts_once(pipeline: Pipeline) -> None:
    _feed(
        pipeline,
        frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record('hi'))]),
        frames.commit(2, BOB, [('create', 'app.bsky.feed.like/l1', _like(POST_A))]),
        frames.commit(
            3, BOB, [('delete', 'app.bsky.feed.like/l1', None), ('create', 'app.bsky.feed.like/l2', _like(POST_A))]
        ),
    )
    assert [like.uri for like in Like.select()] == [f'at://{BOB}/app.bsky.feed.like/l2']
    assert _post(POST_A).like_count == 1


def test_likes_of_a_feed_or_of_a_repeated_record_are_skipped_and_deletes_of_unknown_likes_change_nothing(
    pipeline: Pipeline,
) -> None:
    feed = f'at://{ALICE}/app.bsky.feed.generator/news'
    _feed(
        pipeline,
        frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record('hi'))]),
        frames.commit(2, BOB, [('create', 'app.bsky.feed.like/l1', _like(POST_A)), ('create', 'app.bsky.feed.like/f',
                                                                                      _like(feed))]),
        frames.commit(3, CAROL, [('create', 'app.bsky.feed.like/l1', _like(POST_A))]),
        frames.commit(4, BOB, [('create', 'app.bsky.feed.like/l1', _like(POST_A))]),  # already stored
        frames.commit(5, BOB, [('delete', 'app.bsky.feed.like/f', None), ('delete', 'app.bsky.feed.like/x', None)]),
        frames.commit(6, 'did:plc:nobody', [('delete', 'app.bsky.feed.like/l1', None)]),
    )  # fmt: skip
    assert sorted(Like.select().tuples()) == [
        (f'at://{BOB}/app.bsky.feed.like/l1', BOB, POST_A, Like.get(Like.author == BOB).indexed_at),
        (f'at://{CAROL}/app.bsky.feed.like/l1', CAROL, POST_A, Like.get(Like.author == CAROL).indexed_at),
    ]
    assert _post(POST_A).like_count == 2
    _feed(pipeline, frames.commit(7, CAROL, [('delete', 'app.bsky.feed.like/l1', None)]))
    assert [like.author for like in Like.select()] == [BOB]
    assert _post(POST_A).like_count == 1


def test_a_post_created_and_deleted_in_one_commit_is_gone(pipeline: Pipeline) -> None:
    _feed(
        pipeline,
        frames.commit(
            1,
            ALICE,
            [('create', 'app.bsky.feed.post/a', frames.post_record('#tmp')), ('delete', 'app.bsky.feed.post/a', None)],
        ),
    )
    assert Post.select().count() == 0
    assert PostTerm.select().count() == 0


def test_each_delete_kind(pipeline: Pipeline) -> None:
    reply = frames.post_record('re', reply={'root': frames.strong_ref(POST_A), 'parent': frames.strong_ref(POST_A)})
    _feed(
        pipeline,
        frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record('#x hi', langs=['en']))]),
        frames.commit(2, BOB, [('create', 'app.bsky.feed.like/l', _like(POST_A))]),
        frames.commit(3, BOB, [('create', 'app.bsky.feed.repost/r', _repost(POST_A))]),
        frames.commit(
            4, BOB, [('create', 'app.bsky.graph.follow/f', frames.subject_record('app.bsky.graph.follow', ALICE))]
        ),
        frames.commit(5, BOB, [('create', 'app.bsky.feed.post/reply', reply)]),
    )
    post = _post(POST_A)
    assert (post.like_count, post.repost_count, post.reply_count) == (1, 1, 1)
    assert {t.term for t in PostTerm.select()} == {'lang:en', f'reply-to:{ALICE}', f'thread-of:{ALICE}'}
    _feed(
        pipeline,
        frames.commit(6, BOB, [('delete', 'app.bsky.feed.like/l', None)]),
        frames.commit(7, BOB, [('delete', 'app.bsky.feed.repost/r', None)]),
        frames.commit(8, BOB, [('delete', 'app.bsky.graph.follow/f', None)]),
        frames.commit(9, BOB, [('delete', 'app.bsky.feed.post/reply', None)]),
    )
    post = _post(POST_A)
    assert (post.like_count, post.repost_count, post.reply_count) == (0, 0, 0)
    assert Like.select().count() == Repost.select().count() == Follow.select().count() == 0
    _feed(pipeline, frames.commit(10, ALICE, [('delete', 'app.bsky.feed.post/a', None)]))
    assert Post.select().count() == 0
    assert PostTerm.select().count() == 0


def test_tags_and_langs_become_terms(pipeline: Pipeline) -> None:
    record = frames.post_record(
        'hi', langs=['pt-BR'], facets=[{'features': [{'$type': 'app.bsky.richtext.facet#tag', 'tag': 'Cats'}]}]
    )
    _feed(pipeline, frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', record)]))
    assert {t.term for t in PostTerm.select()} == {'tag:cats', 'lang:pt-br', 'lang:pt'}


def test_deleted_account_is_purged(pipeline: Pipeline) -> None:
    _feed(
        pipeline,
        frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())]),
        frames.commit(2, BOB, [('create', 'app.bsky.feed.post/b', frames.post_record())]),
        frames.commit(3, BOB, [('create', 'app.bsky.feed.like/l', _like(POST_A))]),
        frames.commit(
            4, BOB, [('create', 'app.bsky.graph.follow/f', frames.subject_record('app.bsky.graph.follow', ALICE))]
        ),
        frames.account(5, BOB, False, 'deleted'),
    )
    assert [p.author for p in Post.select()] == [ALICE]
    assert _post(POST_A).like_count == 0
    assert Like.select().count() == Follow.select().count() == 0
    assert Actor.get_by_id(BOB).status == 'deleted'


def test_deactivated_account_is_hidden_until_active_again(pipeline: Pipeline) -> None:
    _feed(
        pipeline,
        frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())]),
        frames.account(2, ALICE, False, 'deactivated'),
    )
    assert _post(POST_A).hidden
    _feed(pipeline, frames.account(3, ALICE, True))
    assert not _post(POST_A).hidden
    _feed(pipeline, frames.account(4, ALICE, False, 'takendown'))
    assert _post(POST_A).hidden
    assert Actor.get_by_id(ALICE).status == 'takendown'


def test_an_account_announced_as_it_already_was_leaves_its_posts_alone(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    _feed(pipeline, frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())]))
    with caplog.at_level(logging.DEBUG, logger='peewee'):  # peewee logs each statement it runs
        _feed(pipeline, frames.account(2, ALICE, True))  # the relay announces active accounts over and over
        _feed(pipeline, frames.account(3, ALICE, False, 'deactivated'))
        _feed(pipeline, frames.account(4, ALICE, False, 'suspended'))  # still inactive: still hidden
    statements = [record.msg[0] for record in caplog.records if record.name == 'peewee']
    post_writes = [sql for sql in statements if sql.startswith(('UPDATE "post"', 'INSERT INTO "post_change"'))]
    assert len(post_writes) == 2, 'only the event that hides the posts writes them (and notes the change)'
    assert _post(POST_A).hidden
    assert Actor.get_by_id(ALICE).status == 'suspended'


def test_posts_of_a_hidden_account_stay_hidden_across_restarts(db: peewee.Database) -> None:
    Pipeline(Indexer(db, 'test')).feed_all([frames.account(1, ALICE, False, 'suspended')])
    Pipeline(Indexer(db, 'test')).feed_all(
        [frames.commit(2, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())])]
    )
    assert _post(POST_A).hidden


def test_duplicate_sequence_numbers_are_skipped(pipeline: Pipeline) -> None:
    message = frames.commit(1, BOB, [('create', 'app.bsky.feed.like/l', _like(POST_A))])
    _feed(pipeline, frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record())]))
    _feed(pipeline, message)
    assert pipeline.stats.skipped['duplicate_seq'] == 1
    assert Like.select().count() == 0


def test_sort_time_is_capped_at_the_commit_time(pipeline: Pipeline) -> None:
    future = frames.post_record(created_at='2099-01-01T00:00:00.000Z')
    _feed(
        pipeline, frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', future)], time='2026-11-24T12:00:00.000Z')
    )
    post = _post(POST_A)
    assert post.sort_at == 1795521600000 < post.created_at


def test_cursor_is_saved_with_the_batch_and_resumes(db: peewee.Database) -> None:
    messages = [
        frames.commit(seq, ALICE, [('create', f'app.bsky.feed.post/p{seq}', frames.post_record())])
        for seq in range(1, 6)
    ]
    first = Pipeline(Indexer(db, 'test'), batch_size=2)
    for message in messages[:3]:
        first.feed(message)
    # Only the first full batch (seq 1-2) is committed; seq 3 is pending when the "crash" happens.
    assert get_cursor('test') == 2
    assert Post.select().count() == 2
    resumed = Pipeline(Indexer(db, 'test'), batch_size=2)
    resumed.feed_all(messages)
    assert resumed.stats.skipped['duplicate_seq'] == 2
    assert Post.select().count() == 5
    assert get_cursor('test') == 5
