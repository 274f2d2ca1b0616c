"""following: posts of the accounts the reader follows and what they repost, newest first. A plain, honest timeline.

A post is in the feed once: as itself when the reader follows its author (at the time it was made), otherwise at the
newest repost of it by an account the reader follows (at the moment that repost was indexed), sent with that repost
as its reason so the app shows "Reposted by". Two streams make a page: the followed accounts' posts by
`(sort_at, id)` and their reposts by `(indexed_at, uri)`. A worker keeps each reader's newest candidates of both and
adds what is indexed since (`feedgen.ranking.timelines`), so a page near the top is a check of a few dozen rows. Below
what it keeps, each stream is walked in the store: the newest rows kept when followed, or else sought account by
account; a seek reads time ranges widened until one fills the page, so the database sorts about a page's rows, not
every match. A reader whose newest rows did not fill their last page is sought straight away for the next
`RETRY_PAGES` pages (a worker remembers the latest `READERS` readers): the rows are the same either way. They are
merged by time, a post before a repost of the same millisecond. The cursor names the last item's place in that
order: `<time>:1:<post id>` after a post, `<time>:0:<repost uri>` after a repost, so no page repeats or skips an
item while new ones arrive.
"""

from __future__ import annotations

import heapq
import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import peewee

from feedgen.ranking import (
    MAX_LIMIT,
    Actor,
    Algorithm,
    FeedRequest,
    Follow,
    InvalidCursor,
    Item,
    Page,
    Post,
    Prepared,
    Repost,
    Reposted,
    Row,
    Stream,
    Timelines,
    TimelineSource,
    marker,
    visible_posts,
)

SCAN_ROWS = 2000
"""How many of the newest posts (or reposts) below the cursor a page walks for followed accounts before seeking them
one by one."""
WINDOW_MS = 15 * 60_000
"""How far back in time the first seek of the followed accounts reads (widened until it fills the page): the
database sorts what the seeks find, so a narrow range keeps the sort to about a page's rows."""
RETRY_PAGES = 8
"""After the newest rows did not fill a reader's page, the next this many pages of that reader (posts and reposts
apart) seek the followed accounts without walking them; the one after walks them again, in case that changed."""
READERS = 10_000
"""How many readers' last way of filling a page a worker remembers."""
_VIEWER = marker('viewer')
_VIEWERS = tuple(marker(f'viewer {n}') for n in range(3))
_TOP = 2**63 - 1
_CURSOR = re.compile(r'(-?[0-9]{1,19}):([01]):(.{1,8192})', re.DOTALL)
_POST, _REPOST = 1, 0
"""The kinds of items, in the order they take within one millisecond (descending)."""


def followed(viewer: str | None, account: peewee.Field) -> peewee.Expression:
    """True when `viewer` follows `account` (one probe of the follows index)."""
    return peewee.fn.EXISTS(Follow.select(peewee.SQL('1')).where(Follow.author == viewer, Follow.subject == account))


def _follows(viewer: str | None) -> peewee.ModelSelect:
    return Follow.select(Follow.subject).where(Follow.author == viewer)


def followed_posts(viewer: str | None) -> peewee.ModelSelect:
    """Visible posts whose author `viewer` follows.

    `author IN (follows)` lets the database seek the `(author, sort_at, id)` index once per followed account and
    stop reading an account's posts as soon as they are older than the page being filled.
    """
    return visible_posts().select(Post.uri, Post.sort_at, Post.id, Post.author).where(Post.author.in_(_follows(viewer)))


def followed_reposts(viewers: tuple[Any, ...], by_author: bool = False, newest: bool = True) -> peewee.ModelSelect:
    """Reposts by accounts the viewer follows of visible posts whose author they do not follow, each post at its
    newest such repost. `viewers` holds the viewer's DID three times (or three markers standing for it; two
    without `newest`).

    With `by_author`, the reposters are sought as `author IN (follows)`, on the `(author, indexed_at, uri)` index.
    Without `newest`, every such repost (for reposts known to be the newest of their post: `TIMELINE_SOURCES`).
    """
    reposter = Repost.author.in_(_follows(viewers[0])) if by_author else followed(viewers[0], Repost.author)
    query = (
        visible_posts()
        .select(Post.uri, Repost.uri.alias('repost'), Repost.author.alias('account'))
        .join(Repost, on=(Repost.subject == Post.uri))
        .where(reposter, ~followed(viewers[1], Post.author))
    )
    if not newest:
        return query
    newer = Repost.alias('newer')
    return query.where(
        ~peewee.fn.EXISTS(
            newer.select(peewee.SQL('1')).where(
                newer.subject == Repost.subject,
                newer.indexed_at >= Repost.indexed_at,  # a range of the `(subject, indexed_at)` index
                peewee.Tuple(newer.indexed_at, newer.uri) > peewee.Tuple(Repost.indexed_at, Repost.uri),
                followed(viewers[2], newer.author),
            )
        )
    )


RECENT = Stream(
    visible_posts().select(Post.uri, Post.author.alias('account')).where(followed(_VIEWER, Post.author)),
    Post.sort_at,
    Post.id,
    markers=(_VIEWER,),
)
"""The newest posts, walked by time, each kept when the reader follows its author (one probe of the follows index).
`account` is the account an item's context names: a post's author, a repost's reposter."""
BY_AUTHOR = Stream(
    followed_posts(_VIEWER).select_extend(Post.author.alias('account')), Post.sort_at, Post.id, markers=(_VIEWER,)
)
"""The same posts, sought author by author: for readers whose followed accounts seldom post."""
RECENT_REPOSTS = Stream(followed_reposts(_VIEWERS), Repost.indexed_at, Repost.uri, markers=_VIEWERS)
"""The newest reposts, walked by time, each kept when the reader follows the reposter and not the post's author."""
REPOSTS_BY_AUTHOR = Stream(followed_reposts(_VIEWERS, by_author=True), Repost.indexed_at, Repost.uri, markers=_VIEWERS)
"""The same reposts, sought reposter by reposter."""
TIMELINE_SOURCES = (
    TimelineSource.of(
        Stream(Post.select().where(Post.author.in_(_follows(_VIEWER))), Post.sort_at, Post.id, markers=(_VIEWER,)),
        Post.indexed_at,
        (RECENT.query.where(Post.id.in_(TimelineSource.ids())), (_VIEWER,)),
    ),
    TimelineSource.of(
        Stream(
            Repost.select().where(Repost.author.in_(_follows(_VIEWER))),
            Repost.indexed_at,
            Repost.uri,
            markers=(_VIEWER,),
        ),
        Repost.indexed_at,
        (RECENT_REPOSTS.query.where(Repost.uri.in_(TimelineSource.ids(text_ids=True))), _VIEWERS),
        group=(
            Repost.subject,
            followed_reposts(_VIEWERS[:2], newest=False).where(Repost.uri.in_(TimelineSource.ids(text_ids=True))),
            _VIEWERS[:2],
        ),
        text_ids=True,
    ),
)
"""What a worker keeps of each reader's posts and reposts stream (`feedgen.ranking.timelines`): every post, every
repost of the followed accounts, checked against the streams' filters when a page reads them."""
_AUTHORS = [marker(f'author {n}') for n in range(MAX_LIMIT)]
HANDLES = Prepared(Actor.select(Actor.did, Actor.handle).where(Actor.did.in_(_AUTHORS)), _AUTHORS)
"""The handles of up to a page's accounts; unused places hold '' (no account has that DID)."""


@dataclass(frozen=True)
class Place:
    """Where a page starts: below this `(time, kind, id)` in the feed's order."""

    time: int
    kind: int
    id: int | str

    @classmethod
    def parse(cls, cursor: str) -> Place:
        """The place a cursor names (`<time>:<kind>:<id>`).

        Raises:
            InvalidCursor: a malformed cursor.
        """
        found = _CURSOR.fullmatch(cursor)
        if found is None:
            raise InvalidCursor(f'malformed cursor {cursor[:40]!r}')
        time, kind, last = int(found[1]), int(found[2]), found[3]
        if kind == _POST and not re.fullmatch(r'-?[0-9]{1,19}', last):
            raise InvalidCursor(f'malformed cursor {cursor[:40]!r}')
        if not -_TOP <= time <= _TOP or (kind == _POST and not -_TOP <= int(last) <= _TOP):
            raise InvalidCursor(f'cursor out of range {cursor[:40]!r}')
        return cls(time, kind, int(last) if kind == _POST else last)

    def below_posts(self) -> tuple[int, int]:
        """The `(sort_at, id)` to walk the posts from."""
        return (self.time, int(self.id)) if self.kind == _POST else (self.time, -_TOP - 1)

    def below_reposts(self) -> tuple[int, str]:
        """The `(indexed_at, uri)` to walk the reposts from."""
        return (self.time, str(self.id)) if self.kind == _REPOST else (min(self.time + 1, _TOP), '')


class Seeking:
    """The readers whose followed accounts a worker seeks straight away, and for how many more pages; safe to share
    between a server's threads. Keyed by reader and kind (posts or reposts); the latest `READERS` are kept."""

    def __init__(self) -> None:
        self._left: OrderedDict[tuple[str | None, int], int] = OrderedDict()
        self._lock = threading.Lock()

    def seek(self, key: tuple[str | None, int]) -> bool:
        """Whether this page of `key` seeks straight away (and counts it)."""
        with self._lock:
            left = self._left.get(key, 0)
            if left:
                self._left[key] = left - 1
                self._left.move_to_end(key)
            return left > 0

    def walked(self, key: tuple[str | None, int], filled: bool) -> None:
        """Notes whether walking the newest rows filled `key`'s page."""
        with self._lock:
            if filled:
                self._left.pop(key, None)
                return
            self._left[key] = RETRY_PAGES
            self._left.move_to_end(key)
            while len(self._left) > READERS:
                self._left.popitem(last=False)


class Following(Algorithm):
    name = 'following'
    display_name = 'Following'
    description = 'Posts of the accounts you follow and the posts they repost, newest first, and nothing else.'
    ranking = (
        'Newest first by the time the post was made (createdAt, capped at the moment the network saw it), or for '
        'a repost, the moment it was indexed; only posts whose author you follow, and posts reposted by accounts '
        'you follow (each once: as itself when you follow its author, else at its newest such repost). Your '
        'follows are read from your PDS when you first open a feed, then kept up to date from the firehose.'
    )
    personalized = True

    def page(self, request: FeedRequest) -> Page:
        # For a reader whose followed accounts post often, walking the newest rows and keeping the followed ones fills
        # a page in a few hundred rows; when SCAN_ROWS rows do not, the followed accounts are sought one by one, and
        # for that reader's next pages straight away (`_rows`).
        place = Place.parse(request.cursor) if request.cursor is not None else None
        count = request.limit + 1
        viewer = request.viewer
        below_posts = place.below_posts() if place else None
        below_reposts = place.below_reposts() if place else (_TOP, '')
        kept = self._timelines.rows(viewer, count, (below_posts, below_reposts)) if viewer is not None else None
        if kept is not None:
            read = [(row.rank_key, _POST if index == 0 else _REPOST, row) for index, row in kept]
            trace: dict[str, Any] = {'read': 'kept timeline'}
        else:
            posts = self._rows(_POST, viewer, below_posts, count, (viewer,))
            reposts = self._rows(_REPOST, viewer, below_reposts, count, (viewer,) * 3)
            merged = heapq.merge(
                ((row.rank_key, _POST, row) for row in posts),
                ((row.rank_key, _REPOST, row) for row in reposts),
                key=lambda entry: entry[:2],
                reverse=True,
            )
            read = list(itertools.islice(merged, count))
            trace = {'read': 'store', 'candidates': len(posts) + len(reposts)}
        entries = read[: request.limit]
        cursor = None
        if len(read) > request.limit and entries:
            time, kind, row = entries[-1]
            cursor = f'{time}:{kind}:{row.item_id}'
        # Name the page's accounts by handle, in one query for the page.
        accounts = list({row.account for _, _, row in entries})
        handles = dict(HANDLES.run(*accounts, *[''] * (MAX_LIMIT - len(accounts)))) if accounts else {}
        items = [_item(kind, row, handles.get(row.account)) for _, kind, row in entries]
        return Page(items=items, cursor=cursor, trace=trace)

    @cached_property
    def _timelines(self) -> Timelines:
        return Timelines(TIMELINE_SOURCES)

    @cached_property
    def _seeking(self) -> Seeking:
        return Seeking()

    def _rows(self, kind: int, viewer: str | None, after: Any, count: int, values: tuple[Any, ...]) -> list[Row]:
        """The first `count` posts (`kind` 1) or reposts (0) of the reader's page below `after`: the newest rows walked
        when they may fill it, else the followed accounts sought."""
        recent, by_author = (RECENT, BY_AUTHOR) if kind == _POST else (RECENT_REPOSTS, REPOSTS_BY_AUTHOR)
        rows = None
        if not self._seeking.seek((viewer, kind)):
            rows = recent.bounded_rows(after, count, SCAN_ROWS, values)
            self._seeking.walked((viewer, kind), rows is not None)
        return by_author.widening_rows(after, count, WINDOW_MS, values) if rows is None else rows

    def explain(self, post: str, request: FeedRequest) -> dict[str, Any] | None:
        row = (
            visible_posts()
            .select(Post.author, Post.sort_at, Follow.uri.alias('follow'))
            .join(Follow, on=(Follow.subject == Post.author) & (Follow.author == request.viewer))
            .where(Post.uri == post)
            .objects()
            .first()
        )
        if row is not None:
            filters = {'author followed by the reader': row.follow}
            return {'filters': filters, 'author': row.author, 'sort_at': row.sort_at}
        viewer = request.viewer
        repost = followed_reposts((viewer, viewer, viewer)).where(Post.uri == post)
        found = repost.select_extend(Repost.indexed_at).objects().first()
        if found is None:
            return None
        filters = {'reposted by an account the reader follows': found.repost}
        return {'filters': filters, 'reposter': found.account, 'sort_at': found.indexed_at}


def _item(kind: int, row: Row, handle: str | None) -> Item:
    if kind == _POST:
        return Item(row.uri, f'you follow @{handle}' if handle else 'from an account you follow')
    context = f'reposted by @{handle}, whom you follow' if handle else 'reposted by an account you follow'
    return Item(row.uri, context, Reposted(row.repost))
