"""feedgen.authoring.contract: every served algorithm passes the contract, and each broken rule is caught and named."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from feedgen.authoring.builder import StoreBuilder
from feedgen.authoring.contract import ContractError, ContractReport, check_contract
from feedgen.ranking.algorithm import Algorithm, FeedRequest, InvalidCursor, Item, Job, Page
from feedgen.ranking.languages import reader_feed
from feedgen.ranking.pagination import keyset_page
from feedgen.ranking.plugins import Feed, discover_algorithms, load_feeds
from feedgen.store.models import Post, visible_posts

EXAMPLE_FEEDS = Path(__file__).parent.parent / 'feeds.example.toml'
READER = 'did:plc:reader'
FOLLOWED = [f'author{i}' for i in range(6)]
KEYWORDS = ('atproto', 'at protocol', 'feed generator')


def served_feeds() -> list[tuple[str, Feed]]:
    """Every algorithm's default feed, and every feed of feeds.example.toml when it is there."""
    algorithms = discover_algorithms()
    feeds = [(f'default:{rkey}', feed) for rkey, feed in load_feeds(algorithms).items()]
    if EXAMPLE_FEEDS.exists():
        feeds += [(f'example:{rkey}', feed) for rkey, feed in load_feeds(algorithms, EXAMPLE_FEEDS).items()]
    return feeds


def fill_world(store: StoreBuilder, now: float) -> list[str]:
    """Sixty posts of the last 15 hours by ten authors, in three languages, with hashtags, keywords, media,
    replies, likes and reposts; the reader follows six of the authors. Returns the posts, oldest first."""
    tags = ('atproto', 'python', 'pypi', 'cats')
    langs = ('en', 'pt', 'ja')
    for author in FOLLOWED:
        store.make_follow(READER, author, at=now - 16 * 3600)
    posts: list[str] = []
    for i in range(60):
        at = now - (60 - i) * 900
        text = f'post {i} about {KEYWORDS[i % 3]}' if i % 2 == 0 else f'post {i}'
        post = store.make_post(
            f'author{i % 10}',
            text,
            tags=[tags[i % 4]],
            langs=[langs[i % 3]],
            at=at,
            reply_to=posts[i - 3] if i % 7 == 3 else None,
            embed='app.bsky.embed.images' if i % 5 in (0, 2) else None,
        )
        posts.append(post)
        for j in range(1 + i % 4):
            store.make_like(f'author{(i + j + 1) % 10}', post, at=at + 60 + j)
        if i % 3 == 0:
            store.make_repost(FOLLOWED[i % 6], post, at=at + 120)
    return posts


@pytest.mark.parametrize(('label', 'feed'), served_feeds(), ids=[label for label, _ in served_feeds()])
def test_every_served_feed_passes_the_contract(feedgen_store: StoreBuilder, label: str, feed: Feed) -> None:
    now = time.time()
    posts = fill_world(feedgen_store, now)
    viewer = READER if feed.algorithm.personalized else None

    report = check_contract(feed, feedgen_store, viewer=viewer, at_ms=int(now * 1000))

    assert len(report.items) > 3
    assert set(report.items) | set(report.left_out) == set(posts)  # every post it leaves out was checked unexplained
    assert report.inserted, 'no post was made between pages: the concurrent-insert check did not run'


def reader_language_feeds() -> list[tuple[str, Feed]]:
    """The served feeds that leave `langs` empty, as a reader of English gets them."""
    request = FeedRequest(limit=1, langs=('en',))
    return [
        (label, reader_feed(feed, request)) for label, feed in served_feeds() if reader_feed(feed, request) is not feed
    ]


@pytest.mark.parametrize(
    ('label', 'feed'), reader_language_feeds(), ids=[label for label, _ in reader_language_feeds()]
)
def test_feeds_in_the_readers_languages_pass_the_contract(feedgen_store: StoreBuilder, label: str, feed: Feed) -> None:
    now = time.time()
    fill_world(feedgen_store, now)
    report = check_contract(feed, feedgen_store, langs=('en',), at_ms=int(now * 1000))
    langs = {row.langs for row in Post.select(Post.langs).where(Post.uri.in_(report.items))}
    assert langs == {'en'}


# Algorithms that break one rule each. They rank the whole store newest first, like `latest`.


class Newest(Algorithm):
    name = 'newest'
    display_name = 'Newest'
    description = 'Every post, newest first.'

    def page(self, request: FeedRequest) -> Page:
        query = visible_posts().select(Post.uri, Post.sort_at, Post.id)
        return keyset_page(query, request, Post.sort_at, Post.id, Post.uri, context=lambda _row: 'newest first')

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = visible_posts().where(Post.uri == post).first()
        return {'sort_at': row.sort_at} if row else None


class TooMany(Newest):
    def page(self, request: FeedRequest) -> Page:
        return super().page(replace(request, limit=request.limit + 1))


class NoContext(Newest):
    def page(self, request: FeedRequest) -> Page:
        page = super().page(request)
        return replace(page, items=[Item(item.post) for item in page.items])


class SameCursor(Newest):
    def page(self, request: FeedRequest) -> Page:
        post = Post.select().first().uri if request.cursor is None else 'at://did:plc:x/app.bsky.feed.post/y'
        return Page(items=[Item(post, 'always')], cursor='again')


class RepeatsLastItem(Newest):
    """Its cursor points at the last item of a page instead of after it."""

    def page(self, request: FeedRequest) -> Page:
        page = super().page(request)
        if page.cursor is None or len(page.items) < 2:
            return page
        before_last = page.items[-2].post
        row = Post.get(Post.uri == before_last)
        return replace(page, cursor=f'{row.sort_at}:{row.id}')


class OffsetPaging(Newest):
    """Pages by position: right on a still store, wrong when posts arrive between pages."""

    def page(self, request: FeedRequest) -> Page:
        try:
            offset = int(request.cursor or 0)
        except ValueError:
            raise InvalidCursor('not an offset') from None
        ordered = visible_posts().order_by(Post.sort_at.desc(), Post.id.desc())
        rows = list(ordered.offset(offset).limit(request.limit + 1))
        items = [Item(row.uri, 'newest first') for row in rows[: request.limit]]
        return Page(items=items, cursor=str(offset + request.limit) if len(rows) > request.limit else None)


class SkipsOnSmallPages(Newest):
    """Drops the first item of every page after the first."""

    def page(self, request: FeedRequest) -> Page:
        page = super().page(request)
        return replace(page, items=page.items[1:]) if request.cursor else page


class Unexplained(Newest):
    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        return None


class ExplainsAnything(Newest):
    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        return {'everything': 'is in this feed'}


class ExplainsPostsItLeavesOut(Newest):
    """Serves author0's posts only, but explains every indexed post."""

    def page(self, request: FeedRequest) -> Page:
        query = visible_posts().select(Post.uri, Post.sort_at, Post.id).where(Post.author == 'did:plc:author0')
        return keyset_page(query, request, Post.sort_at, Post.id, Post.uri, context=lambda _row: 'by author0')


class TakesAnyCursor(Newest):
    def page(self, request: FeedRequest) -> Page:
        if request.cursor is not None and not request.cursor[0].isdigit():
            request = replace(request, cursor=None)
        return super().page(request)


class UnjsonableTrace(Newest):
    def page(self, request: FeedRequest) -> Page:
        page = super().page(request)
        page.trace['seen'] = {item.post for item in page.items}
        return page


@dataclass(frozen=True)
class Broken:
    algorithm: type[Algorithm]
    rule: str


BROKEN = [
    Broken(TooMany, 'limit respected'),
    Broken(NoContext, 'every item has a context'),
    Broken(SameCursor, 'cursors unique'),
    Broken(RepeatsLastItem, 'no repeats across pages'),
    Broken(OffsetPaging, 'stable under concurrent inserts'),
    Broken(SkipsOnSmallPages, 'no skips'),
    Broken(Unexplained, 'every served item is explained'),
    Broken(ExplainsAnything, 'a post not in the feed is not explained'),
    Broken(ExplainsPostsItLeavesOut, 'a post not in the feed is not explained'),
    Broken(TakesAnyCursor, 'a malformed cursor raises InvalidCursor'),
    Broken(UnjsonableTrace, 'the trace is JSON'),
]


def make_posts(store: StoreBuilder, count: int = 10) -> None:
    for i in range(count):
        store.make_post(f'author{i % 3}', f'post {i}')
    for i in range(count // 2):  # enough of author0 for a feed of author0's posts to page
        store.make_post('author0', f'more {i}')


def test_a_correct_algorithm_passes(feedgen_store: StoreBuilder) -> None:
    make_posts(feedgen_store)
    report = check_contract(Newest(), feedgen_store)
    assert len(report.items) == 15
    assert report.pages == 1
    assert len(report.inserted) == 4  # after each of the pages of 3 that had a next page
    assert report.left_out == []  # it serves every post


def test_posts_the_feed_leaves_out_are_checked_unexplained(feedgen_store: StoreBuilder) -> None:
    make_posts(feedgen_store)

    class ByAuthor0(ExplainsPostsItLeavesOut):
        def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
            row = visible_posts().where(Post.uri == post, Post.author == 'did:plc:author0').first()
            return {'author': row.author} if row else None

    report = check_contract(ByAuthor0(), feedgen_store)
    assert len(report.items) == 9
    others = Post.select(Post.uri).where(Post.author != 'did:plc:author0')
    assert sorted(report.left_out) == sorted(uri for (uri,) in others.tuples())


@pytest.mark.parametrize('broken', BROKEN, ids=[b.algorithm.__name__ for b in BROKEN])
def test_a_broken_rule_is_named(feedgen_store: StoreBuilder, broken: Broken) -> None:
    make_posts(feedgen_store)
    with pytest.raises(ContractError, match=f'breaks "{broken.rule}"'):
        check_contract(broken.algorithm(), feedgen_store)


def test_too_few_posts_to_check_paging_fails(feedgen_store: StoreBuilder) -> None:
    feedgen_store.make_post('author0', 'one')
    with pytest.raises(ContractError, match='served 1 items'):
        check_contract(Newest(), feedgen_store)


def test_a_personalized_algorithm_needs_a_viewer(feedgen_store: StoreBuilder) -> None:
    personal = type('Personal', (Newest,), {'personalized': True})
    make_posts(feedgen_store)
    with pytest.raises(ContractError, match='personalized'):
        check_contract(personal(), feedgen_store)
    assert check_contract(personal(), feedgen_store, viewer=READER).items


def test_jobs_run_before_the_check_and_between_pages(feedgen_store: StoreBuilder) -> None:
    runs: list[int] = []

    class Scheduled(Newest):
        def jobs(self) -> list[Job]:
            return [Job('count', lambda _db: runs.append(Post.select().count()), 60)]

    make_posts(feedgen_store)
    check_contract(Scheduled(), feedgen_store)
    assert runs == [15, 16, 17, 18, 19]


def test_the_fixture_checks_on_the_fixture_store(
    feedgen_store: StoreBuilder, feedgen_contract: Callable[..., ContractReport]
) -> None:
    make_posts(feedgen_store)
    report = feedgen_contract(Newest())
    assert len(report.items) == 15
    assert Post.select().where(Post.uri.in_(report.inserted)).count() == 4
