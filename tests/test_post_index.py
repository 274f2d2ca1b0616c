"""The richer post index: links, mentions, quotes, images and alt text, video and reply authors, as columns and terms
(`feedgen.ingest.records`, `feedgen.store.terms`), read through `term_streams`, `terms_of` and `alt_complete`."""

from __future__ import annotations

from typing import Any

import peewee
import pytest

from feedgen.ingest.pipeline import Pipeline
from feedgen.ingest.records import parse_post
from feedgen.ranking import (
    FeedRequest,
    Post,
    alt_complete,
    domain_term,
    link_term,
    mention_term,
    quote_term,
    reply_to_term,
    streams_page,
    tag_term,
    term_streams,
    terms_of,
    thread_of_term,
)
from feedgen.store.models import PostTerm, open_database
from tests import frames

ALICE, BOB = 'did:plc:alice', 'did:plc:bob'
QUOTED = f'at://{BOB}/app.bsky.feed.post/q'


def _link(uri: Any) -> dict[str, Any]:
    return {'features': [{'$type': 'app.bsky.richtext.facet#link', 'uri': uri}]}


def _mention(did: Any) -> dict[str, Any]:
    return {'features': [{'$type': 'app.bsky.richtext.facet#mention', 'did': did}]}


def _images(*alts: Any) -> dict[str, Any]:
    return {'$type': 'app.bsky.embed.images', 'images': [{'alt': alt, 'image': {}} for alt in alts]}


def _external(uri: str) -> dict[str, Any]:
    return {'$type': 'app.bsky.embed.external', 'external': {'uri': uri, 'title': '', 'description': ''}}


def _with_media(media: dict[str, Any]) -> dict[str, Any]:
    return {'$type': 'app.bsky.embed.recordWithMedia', 'record': {'record': frames.strong_ref(QUOTED)}, 'media': media}


def test_links_come_from_facets_and_the_link_card_once_each() -> None:
    post = parse_post(
        frames.post_record(
            facets=[_link('https://arxiv.org/abs/1'), _link('https://arxiv.org/abs/1'), _mention(BOB)],
            embed=_external('https://www.Example.com/a?b=c'),
        )
    )
    assert post.links == ('https://arxiv.org/abs/1', 'https://www.Example.com/a?b=c')
    assert post.mentions == (BOB,)
    assert post.dropped == ()


def test_a_quote_with_images_counts_images_alt_texts_and_the_quote() -> None:
    post = parse_post(frames.post_record(embed=_with_media(_images('a cat', '  ', 'a dog'))))
    assert (post.quote, post.images, post.alt_texts, post.video) == (QUOTED, 3, 2, False)
    video = parse_post(frames.post_record(embed=_with_media({'$type': 'app.bsky.embed.video', 'video': {}})))
    assert (video.quote, video.video, video.images) == (QUOTED, True, 0)


@pytest.mark.parametrize(
    ('record', 'reason'),
    [
        ({'facets': [_link('javascript:alert(1)')]}, 'invalid_link'),
        ({'facets': [_link('https://' + 'a' * 3000)]}, 'invalid_link'),
        ({'facets': [_link(7)]}, 'invalid_link'),
        ({'facets': [_mention('bob')]}, 'invalid_mention'),
        ({'embed': {'$type': 'app.bsky.embed.images', 'images': 'many'}}, 'invalid_embed'),
        ({'embed': _images(*['x'] * 5)}, 'invalid_embed'),
        ({'embed': {'$type': 'app.bsky.embed.record', 'record': {'uri': 'https://x'}}}, 'invalid_embed'),
        ({'embed': {'$type': 'app.bsky.embed.recordWithMedia', 'record': {}, 'media': 3}}, 'invalid_embed'),
        ({'facets': [_link(f'https://x.org/{n}') for n in range(11)]}, 'too_many_links'),
    ],
)
def test_a_malformed_field_is_left_out_and_counted_and_the_post_kept(
    pipeline: Pipeline, record: dict[str, Any], reason: str
) -> None:
    pipeline.feed_all([frames.commit(1, ALICE, [('create', 'app.bsky.feed.post/a', frames.post_record(**record))])])
    pipeline.flush()
    assert Post.select().count() == 1
    assert pipeline.indexer.skipped[reason] >= 1


def _index(pipeline: Pipeline, *records: dict[str, Any]) -> list[str]:
    ops = [('create', f'app.bsky.feed.post/p{n}', record) for n, record in enumerate(records)]
    pipeline.feed_all([frames.commit(1, ALICE, ops)])
    pipeline.flush()
    return [f'at://{ALICE}/app.bsky.feed.post/p{n}' for n in range(len(records))]


def test_every_kind_of_term_is_indexed_and_leaves_with_the_post(pipeline: Pipeline) -> None:
    reply = {'root': frames.strong_ref(QUOTED), 'parent': frames.strong_ref(f'at://did:plc:carol/x/{"p"}')}
    (uri,) = _index(
        pipeline,
        frames.post_record(
            facets=[_link('https://export.arxiv.org/abs/1'), _mention(BOB)],
            embed={'$type': 'app.bsky.embed.record', 'record': frames.strong_ref(QUOTED)},
            reply=reply,
        ),
    )
    post = Post.get(Post.uri == uri)
    expected = {
        domain_term('export.arxiv.org'),
        domain_term('arxiv.org'),
        link_term('https://export.arxiv.org/abs/1'),
        mention_term(BOB),
        quote_term(QUOTED),
        reply_to_term('did:plc:carol'),
        thread_of_term(BOB),
    }
    assert set(terms_of(post)) == expected == {term for (term,) in PostTerm.select(PostTerm.term).tuples()}
    pipeline.feed_all([frames.commit(2, ALICE, [('delete', 'app.bsky.feed.post/p0', None)])])
    pipeline.flush()
    assert PostTerm.select().count() == 0


def test_term_streams_page_the_posts_linking_to_a_domain_and_the_described_art(pipeline: Pipeline) -> None:
    arxiv, www, _other, art_described, art_half, art_plain = _index(
        pipeline,
        frames.post_record(facets=[_link('https://arxiv.org/abs/1')]),
        frames.post_record(embed=_external('https://www.arxiv.org/abs/2')),
        frames.post_record(facets=[_link('https://notarxiv.org/')]),
        frames.post_record(tags=['art'], embed=_images('a red square')),
        frames.post_record(tags=['art'], embed=_images('a red square', '')),
        frames.post_record(tags=['art']),
    )
    request = FeedRequest(limit=10)
    linking = streams_page(term_streams([domain_term('arxiv.org')], Post.uri), request, lambda row: 'arxiv')
    assert [item.post for item in linking.items] == [www, arxiv]
    described = term_streams([tag_term('#Art')], Post.uri, where=alt_complete())
    assert [item.post for item in streams_page(described, request, lambda row: 'art').items] == [art_described]
    assert [Post.get(Post.uri == uri).alt_complete for uri in (art_described, art_half, art_plain)] == [1, 0, 0]


def test_an_older_store_gains_the_new_columns_with_empty_values(tmp_path: Any) -> None:
    path = tmp_path / 'old.db'
    old = peewee.SqliteDatabase(path)
    old.execute_sql(
        'CREATE TABLE post (id INTEGER PRIMARY KEY, uri TEXT UNIQUE, cid TEXT, author TEXT, text TEXT, langs TEXT,'
        ' tags TEXT, reply_root TEXT, reply_parent TEXT, embed TEXT, created_at INTEGER, sort_at INTEGER,'
        ' indexed_at INTEGER, seq INTEGER, like_count INTEGER, repost_count INTEGER, reply_count INTEGER,'
        ' hidden INTEGER, self_labels TEXT)'
    )
    old.execute_sql("INSERT INTO post VALUES (1, 'at://x/p/1', 'c', 'x', '', '', '', NULL, NULL, NULL, 1, 1, 1, 1,"
                    " 0, 0, 0, 0, '')")  # fmt: skip
    old.close()
    db = open_database(path)
    try:
        post = Post.get_by_id(1)
        assert (post.links, post.mentions, post.quote, post.image_count, post.alt_count, post.video) == (
            '', '', None, 0, 0, False,
        )  # fmt: skip
        assert terms_of(post) == []
    finally:
        db.close()
