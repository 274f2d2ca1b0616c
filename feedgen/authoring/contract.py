"""Contract: the checks every algorithm must pass to be served, runnable by authors on their own store.

Owns `check_contract`: pages a feed to its end and fails with a `ContractError` that names the broken rule
when the algorithm returns more items than asked, repeats a cursor, repeats or skips an item across pages
(compared with paging the same store 100 at a time), repeats or skips older items when new posts arrive
between page requests, serves an item without a short `context`, cannot `explain` an item it served (or
explains a post it does not serve: one never indexed, or an indexed post of the store it leaves out), accepts a
malformed cursor, or makes a trace that is not JSON. It reads the store through the algorithm and writes only
through the `StoreBuilder` it is given."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.algorithm import Algorithm, FeedRequest, InvalidCursor, Page
from feedgen.ranking.plugins import Feed
from feedgen.store.models import Post

MAX_CONTEXT = 2000
"""`app.bsky.feed.defs#skeletonFeedPost.feedContext` holds at most 2000 characters."""
MAX_PAGES = 1000
MAX_LEFT_OUT = 200
"""The most indexed posts the feed leaves out whose `explain` is checked (the newest ones)."""
UNKNOWN_POST = 'at://did:plc:feedgencontract/app.bsky.feed.post/notindexed'
BAD_CURSOR = 'not a cursor \x00'


class ContractError(AssertionError):
    """An algorithm broke its contract; the message names the rule and the evidence."""


@dataclass
class ContractReport:
    """What `check_contract` saw: the feed's items in order, and how it paged them."""

    items: list[str]
    pages: int
    page_sizes: list[int] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)
    """Posts made between page requests by the concurrent-insert check."""
    left_out: list[str] = field(default_factory=list)
    """Indexed posts the feed does not serve (the newest, at most `MAX_LEFT_OUT`), checked not to be explained."""


def _fail(algorithm: Algorithm, rule: str, evidence: str) -> ContractError:
    return ContractError(f'algorithm {algorithm.name!r} breaks "{rule}": {evidence}')


def _page(algorithm: Algorithm, request: FeedRequest) -> Page:
    page = algorithm.page(request)
    if len(page.items) > request.limit:
        raise _fail(algorithm, 'limit respected', f'asked for {request.limit} items, got {len(page.items)}')
    for item in page.items:
        if not isinstance(item.context, str) or not 0 < len(item.context) <= MAX_CONTEXT:
            raise _fail(algorithm, 'every item has a context', f'{item.post} has context {item.context!r}')
    try:
        json.dumps(page.trace)
    except (TypeError, ValueError) as error:
        raise _fail(algorithm, 'the trace is JSON', str(error)) from None
    return page


def _walk(
    algorithm: Algorithm,
    limit: int,
    viewer: str | None = None,
    langs: tuple[str, ...] = (),
    at_ms: int | None = None,
    between_pages: list[str] | None = None,
    builder: StoreBuilder | None = None,
) -> ContractReport:
    """Pages `algorithm` to its end, checking limits, cursors and repeats.

    Args:
        at_ms: the moment to rank as of (`FeedRequest.at_ms`); None: now.
        between_pages: when given with `builder`, after every page a new post is made (cloned from the page's
            first item: same author, tags and languages; its URI is appended here) and the algorithm's jobs
            run, as the scheduler would while a reader pages.
    """
    report = ContractReport(items=[], pages=0)
    seen: set[str] = set()
    cursors: set[str] = set()
    cursor = None
    while report.pages < MAX_PAGES:
        page = _page(algorithm, FeedRequest(limit=limit, cursor=cursor, viewer=viewer, langs=langs, at_ms=at_ms))
        report.pages += 1
        report.page_sizes.append(len(page.items))
        for item in page.items:
            if item.post in seen:
                rule = 'no repeats across pages' if between_pages is None else 'stable under concurrent inserts'
                raise _fail(algorithm, rule, f'{item.post} again on page {report.pages}')
            seen.add(item.post)
            report.items.append(item.post)
        if page.cursor is None:
            return report
        if page.cursor in cursors:
            raise _fail(algorithm, 'cursors unique', f'cursor {page.cursor!r} returned twice')
        if not page.items:
            raise _fail(algorithm, 'a page with a cursor has items', f'page {report.pages} is empty')
        cursors.add(page.cursor)
        cursor = page.cursor
        if between_pages is not None and builder is not None:
            between_pages.append(_clone_post(builder, page.items[0].post))
            builder.run_jobs(algorithm)
    raise _fail(algorithm, 'paging ends', f'still going after {MAX_PAGES} pages of {limit}')


def _clone_post(builder: StoreBuilder, uri: str) -> str:
    row = Post.get(Post.uri == uri)
    return builder.make_post(
        row.author,
        text=f'new post like {uri}',
        tags=row.tags.split(),
        langs=row.langs.split(),
        reply_to=row.reply_parent,
    )


def check_contract(
    feed: Feed | Algorithm,
    builder: StoreBuilder,
    viewer: str | None = None,
    langs: tuple[str, ...] = (),
    page_size: int = 3,
    at_ms: int | None = None,
) -> ContractReport:
    """Checks `feed` (a served feed, or an algorithm instance) on the store `builder` writes to.

    The store must already hold more than `page_size` posts the feed shows, or paging would not be checked.
    The algorithm's jobs run first; during the check, new posts are made in the store and the jobs run again.

    Args:
        viewer: the reader's DID; required for a personalized algorithm.
        langs: the reader's languages (`Accept-Language`).
        page_size: the small page size the feed is walked with (and compared with pages of 100).
        at_ms: the moment every request ranks as of (`FeedRequest.at_ms`); default: when the check starts.

    Returns:
        The report of walking the feed 100 at a time, before any post was added.

    Raises:
        ContractError: a rule is broken; the message names it.
    """
    algorithm = feed.algorithm if isinstance(feed, Feed) else feed
    if algorithm.personalized and viewer is None:
        raise ContractError(f'algorithm {algorithm.name!r} is personalized: check it with a viewer')
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    builder.run_jobs(algorithm)
    full = _walk(algorithm, 100, viewer, langs, at_ms)
    if len(full.items) <= page_size:
        raise ContractError(
            f'algorithm {algorithm.name!r} served {len(full.items)} items: fill the store with more than '
            f'{page_size} posts it shows, so that paging is checked'
        )
    small = _walk(algorithm, page_size, viewer, langs, at_ms)
    if small.items != full.items:
        raise _fail(algorithm, 'no skips', _difference(full.items, small.items, f'pages of {page_size}'))
    full.left_out = _left_out(full.items)
    request = FeedRequest(limit=1, viewer=viewer, langs=langs, at_ms=at_ms)
    _check_explanations(algorithm, full.items, full.left_out, request)
    try:
        algorithm.page(FeedRequest(limit=1, cursor=BAD_CURSOR, viewer=viewer, langs=langs, at_ms=at_ms))
    except InvalidCursor:
        pass
    else:
        raise _fail(algorithm, 'a malformed cursor raises InvalidCursor', f'page(cursor={BAD_CURSOR!r}) answered')
    inserted: list[str] = []
    during = _walk(algorithm, page_size, viewer, langs, at_ms, between_pages=inserted, builder=builder)
    new = set(inserted)
    older = [post for post in during.items if post not in new]
    if older != full.items:
        rule = 'stable under concurrent inserts'
        raise _fail(algorithm, rule, _difference(full.items, older, 'pages with new posts made between them'))
    full.inserted = inserted
    return full


def _left_out(served: list[str]) -> list[str]:
    """The newest indexed posts (at most `MAX_LEFT_OUT`) not in `served`."""
    shown = set(served)
    newest = Post.select(Post.uri).order_by(Post.sort_at.desc(), Post.id.desc()).limit(MAX_LEFT_OUT + len(shown))
    return [uri for (uri,) in newest.tuples() if uri not in shown][:MAX_LEFT_OUT]


def _check_explanations(algorithm: Algorithm, posts: list[str], left_out: list[str], request: FeedRequest) -> None:
    for post in posts:
        explanation = algorithm.explain(post, request)
        if not explanation:
            raise _fail(algorithm, 'every served item is explained', f'explain({post!r}) gave {explanation!r}')
        try:
            json.dumps(explanation)
        except (TypeError, ValueError) as error:
            raise _fail(algorithm, 'explanations are JSON', f'{post}: {error}') from None
    for post in [UNKNOWN_POST, *left_out]:
        if algorithm.explain(post, request) is not None:
            raise _fail(algorithm, 'a post not in the feed is not explained', f'explain({post!r}) is not None')


def _difference(expected: list[str], got: list[str], how: str) -> str:
    expected_set, got_set = set(expected), set(got)
    missing = [post for post in expected if post not in got_set]
    extra = [post for post in got if post not in expected_set]
    if missing or extra:
        return f'{how}: {len(missing)} missing (first {missing[:1]}), {len(extra)} extra (first {extra[:1]})'
    first = next(i for i, (a, b) in enumerate(zip(expected, got, strict=True)) if a != b)
    return f'{how}: same posts in another order, first difference at position {first}'
