"""feedgen.authoring.builder: synthetic records land in the store exactly as the indexer writes firehose events."""

from __future__ import annotations

from datetime import UTC, datetime

import peewee
import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.ingest.records import RecordError
from feedgen.ranking.algorithm import Algorithm, Job
from feedgen.store.models import Follow, IngestState, Like, Post, PostTerm, Repost
from tests.conftest import CAPTURE_5, expected_posts


def test_make_post_indexes_every_field(feedgen_store: StoreBuilder) -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    uri = feedgen_store.make_post('alice', 'hello #cats', tags=['#Cats', 'pets'], langs=['en', 'pt-BR'], at=at)
    post = Post.get(Post.uri == uri)
    assert uri.startswith('at://did:plc:alice/app.bsky.feed.post/')
    assert (post.author, post.text, post.tags, post.langs) == ('did:plc:alice', 'hello #cats', 'cats pets', 'en pt-br')
    assert post.created_at == post.sort_at == post.indexed_at == int(at.timestamp() * 1000)
    terms = {t for (t,) in PostTerm.select(PostTerm.term).where(PostTerm.post_id == post.id).tuples()}
    assert terms == {'tag:cats', 'tag:pets', 'lang:en', 'lang:pt-br', 'lang:pt'}


def test_records_without_a_time_are_made_now_in_order(feedgen_store: StoreBuilder) -> None:
    uris = [feedgen_store.make_post('did:plc:bob', f'post {i}') for i in range(5)]
    times = [Post.get(Post.uri == uri).sort_at for uri in uris]
    assert times == sorted(set(times))
    assert abs(times[-1] / 1000 - datetime.now(UTC).timestamp()) < 60


def test_replies_and_embeds(feedgen_store: StoreBuilder) -> None:
    parent = feedgen_store.make_post('alice', 'question')
    reply = feedgen_store.make_post('bob', 'answer', reply_to=parent, embed='app.bsky.embed.images')
    row = Post.get(Post.uri == reply)
    assert (row.reply_parent, row.reply_root, row.embed) == (parent, parent, 'images')
    assert Post.get(Post.uri == parent).reply_count == 1


def test_likes_reposts_and_follows_update_counts_and_deletes_undo_them(feedgen_store: StoreBuilder) -> None:
    post = feedgen_store.make_post('alice', 'liked')
    like = feedgen_store.make_like('bob', post)
    feedgen_store.make_like('carol', post)
    feedgen_store.make_repost('carol', post)
    follow = feedgen_store.make_follow('bob', 'alice')
    row = Post.get(Post.uri == post)
    assert (row.like_count, row.repost_count) == (2, 1)
    assert Follow.get(Follow.uri == follow).subject == 'did:plc:alice'
    feedgen_store.delete(like)
    feedgen_store.delete(follow)
    assert Post.get(Post.uri == post).like_count == 1
    assert Like.select().count() == 1 and Repost.select().count() == 1 and Follow.select().count() == 0
    feedgen_store.delete(post)
    assert not Post.select().where(Post.uri == post).exists()


def test_an_invalid_record_is_refused_by_the_real_parser(feedgen_store: StoreBuilder) -> None:
    with pytest.raises(RecordError):
        feedgen_store.make_post('alice', 'x' * 3001)


def test_replay_indexes_a_capture(feedgen_store: StoreBuilder) -> None:
    feedgen_store.replay(CAPTURE_5)
    order = Post.select(Post.uri).order_by(Post.sort_at.desc(), Post.id.desc()).tuples()
    assert [uri for (uri,) in order] == expected_posts(CAPTURE_5)


def test_a_second_builder_on_the_same_store_goes_on_after_the_saved_cursor(feedgen_db: peewee.Database) -> None:
    StoreBuilder(feedgen_db).make_post('alice', 'first')
    StoreBuilder(feedgen_db).make_post('alice', 'second')
    assert Post.select().count() == 2
    assert IngestState.get().cursor == 2


def test_run_jobs_runs_each_job_once_with_the_store(feedgen_store: StoreBuilder) -> None:
    calls: list[peewee.Database] = []

    class WithJobs(Algorithm):
        name = 'with-jobs'
        display_name = description = 'x'

        def jobs(self) -> list[Job]:
            return [Job('a', calls.append, 60), Job('b', calls.append, 60)]

    feedgen_store.run_jobs(WithJobs())
    assert calls == [feedgen_store.db, feedgen_store.db]
