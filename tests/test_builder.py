"""feedgen.authoring.builder: synthetic records land in the store exactly as the indexer writes firehose events."""

from __future__ import annotations

from datetime import UTC, datetime

import peewee
import pytest
from playhouse.shortcuts import model_to_dict

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.post_parts import (
    images_embed,
    link_card,
    link_facet,
    mention_facet,
    quote_embed,
    quote_with_media,
    tag_facet,
    video_embed,
)
from feedgen.ingest.events import decode_frame
from feedgen.ingest.indexer import Indexer
from feedgen.ingest.records import RecordError
from feedgen.ranking.algorithm import Algorithm, Job
from feedgen.store.models import Actor, Follow, IngestState, Like, Post, PostTerm, Repost, visible_posts
from tests.conftest import CAPTURE_5, expected_posts
from tests.frames import NOW, commit


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


RICH_TEXT = 'café: see the paper https://arxiv.org/abs/1 with @alice.test #science'


def rich_post() -> dict:
    text = RICH_TEXT
    return {
        '$type': 'app.bsky.feed.post',
        'text': text,
        'createdAt': '2026-03-01T12:00:00.000Z',
        'langs': ['en'],
        'facets': [
            link_facet(text, 'https://arxiv.org/abs/1', 'https://arxiv.org/abs/1'),
            mention_facet(text, '@alice.test', 'did:plc:alice'),
            tag_facet(text, '#science'),
        ],
        'embed': quote_with_media('at://did:plc:carol/app.bsky.feed.post/q1', images_embed('a chart', '')),
        'labels': {'$type': 'com.atproto.label.defs#selfLabels', 'values': [{'val': 'graphic-media'}]},
    }


def test_facets_point_at_utf8_byte_ranges() -> None:
    facet = link_facet(RICH_TEXT, 'https://arxiv.org/abs/1', 'https://arxiv.org/abs/1')
    start, end = facet['index']['byteStart'], facet['index']['byteEnd']
    assert RICH_TEXT.encode()[start:end] == b'https://arxiv.org/abs/1'
    assert start == RICH_TEXT.index('https') + 1  # 'é' is two bytes
    with pytest.raises(ValueError, match='is not in the text'):
        tag_facet(RICH_TEXT, '#missing')


def test_a_raw_record_is_indexed_as_the_firehose_indexes_the_same_record(feedgen_store: StoreBuilder) -> None:
    built = feedgen_store.make_record('did:plc:bob', rich_post(), at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    frame = commit(10**9, 'did:plc:dave', [('create', 'app.bsky.feed.post/f1', rich_post())], time=NOW)
    Indexer(feedgen_store.db, 'frames', clock=lambda: datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()).write(
        [decode_frame(frame)]
    )
    rows = [Post.get(Post.uri == uri) for uri in (built, 'at://did:plc:dave/app.bsky.feed.post/f1')]
    kept = [
        {k: v for k, v in model_to_dict(row).items() if k not in ('id', 'uri', 'author', 'cid', 'seq')} for row in rows
    ]
    assert kept[0] == kept[1]
    assert (rows[0].tags, rows[0].embed, rows[0].self_labels) == ('science', 'recordWithMedia', 'graphic-media')


@pytest.mark.parametrize(
    ('embed', 'kind'),
    [
        (images_embed('a cat', 'a dog'), 'images'),
        (video_embed('a cat running'), 'video'),
        (link_card('https://example.test/a', 'A page'), 'external'),
        (quote_embed('at://did:plc:carol/app.bsky.feed.post/q1'), 'record'),
        (
            quote_with_media('at://did:plc:carol/app.bsky.feed.post/q1', link_card('https://example.test')),
            'recordWithMedia',
        ),
    ],
)
def test_make_post_takes_raw_embeds_and_facets(feedgen_store: StoreBuilder, embed: dict, kind: str) -> None:
    text = 'look #here'
    uri = feedgen_store.make_post('alice', text, embed=embed, facets=[tag_facet(text, '#here')])
    row = Post.get(Post.uri == uri)
    assert (row.embed, row.tags) == (kind, 'here')


def test_raw_records_of_every_indexed_collection_go_through_the_parser(feedgen_store: StoreBuilder) -> None:
    post = feedgen_store.make_record('alice', {'$type': 'app.bsky.feed.post', 'text': 'hi'})
    feedgen_store.make_record('bob', {'$type': 'app.bsky.feed.like', 'subject': {'uri': post, 'cid': 'x'}})
    feedgen_store.make_record('bob', {'$type': 'app.bsky.feed.repost', 'subject': {'uri': post, 'cid': 'x'}})
    feedgen_store.make_record('bob', {'$type': 'app.bsky.graph.follow', 'subject': 'did:plc:alice'})
    row = Post.get(Post.uri == post)
    assert (row.like_count, row.repost_count) == (1, 1)
    assert Follow.get(Follow.author == 'did:plc:bob').subject == 'did:plc:alice'
    refused = [
        ({'$type': 'app.bsky.feed.like', 'subject': {'uri': 'https://not.at.uri'}}, 'invalid_ref'),
        ({'$type': 'app.bsky.graph.follow', 'subject': 'alice'}, 'invalid_subject'),
        ({'$type': 'app.bsky.feed.post', 'text': 'x', 'facets': 'not a list'}, 'invalid_facet'),
        ({'$type': 'app.bsky.feed.post', 'text': 'x', 'createdAt': 'yesterday'}, 'invalid_datetime'),
        ({'$type': 'app.bsky.actor.profile'}, 'unindexed_collection'),
    ]
    for record, reason in refused:
        with pytest.raises(RecordError) as caught:
            feedgen_store.make_record('bob', record)
        assert caught.value.reason == reason


@pytest.mark.parametrize('status', ['deactivated', 'takendown', 'suspended'])
def test_an_account_hidden_by_its_status_hides_its_posts_until_active(feedgen_store: StoreBuilder, status: str) -> None:
    post = feedgen_store.make_post('alice', 'hello')
    feedgen_store.set_account('alice', status)
    assert Actor.get(Actor.did == 'did:plc:alice').status == status
    assert not visible_posts().where(Post.uri == post).exists()
    feedgen_store.set_account('alice', 'active', handle='alice.test')
    assert (Actor.get(Actor.did == 'did:plc:alice').status, Actor.get(Actor.did == 'did:plc:alice').handle) == (
        'active',
        'alice.test',
    )
    assert visible_posts().where(Post.uri == post).exists()


@pytest.mark.parametrize('status', ['desynchronized', 'throttled'])
def test_an_account_merely_desynchronized_or_throttled_stays_visible(feedgen_store: StoreBuilder, status: str) -> None:
    post = feedgen_store.make_post('alice', 'hello')
    feedgen_store.set_account('alice', status)
    assert Actor.get(Actor.did == 'did:plc:alice').status == status
    assert visible_posts().where(Post.uri == post).exists()


def test_a_deleted_account_is_purged(feedgen_store: StoreBuilder) -> None:
    kept = feedgen_store.make_post('bob', 'stays')
    feedgen_store.make_post('alice', 'goes')
    feedgen_store.make_like('alice', kept)
    feedgen_store.make_follow('alice', 'bob')
    feedgen_store.set_account('alice', 'deleted')
    assert Actor.get(Actor.did == 'did:plc:alice').status == 'deleted'
    assert [row.uri for row in Post.select()] == [kept]
    assert Post.get(Post.uri == kept).like_count == 0
    assert Like.select().count() == Follow.select().count() == 0


def test_an_unknown_account_status_is_refused(feedgen_store: StoreBuilder) -> None:
    with pytest.raises(ValueError, match='account status'):
        feedgen_store.set_account('alice', 'asleep')
