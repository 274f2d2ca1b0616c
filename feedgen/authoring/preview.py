"""Preview: the top of a feed on a recorded capture, with why each post is there, before publishing it.

Owns `preview_feed` (index a capture into a temporary store, page the feed once, explain each item) and
parsing `--param k=v` values. Feeds are chosen as the server chooses them: a record key of the feeds
config, or an algorithm's name for its default feed. It writes only its own temporary store.
"""

from __future__ import annotations

import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.algorithm import Algorithm, FeedRequest, Page
from feedgen.ranking.feed_catalog import algorithm_stamp, effective_params
from feedgen.ranking.plugins import Feed, PluginError, feed_indexers, load_feeds, make_feed
from feedgen.settings import is_did
from feedgen.store.models import Post, open_database

TEXT_SHOWN = 100
"""Characters of each post's text a preview shows."""


@dataclass
class Preview:
    """One previewed page: the feed, the capture's size, and each item with its text and explanation."""

    feed: dict[str, Any]
    posts_indexed: int
    items: list[dict[str, Any]] = field(default_factory=list)
    trace: dict[str, Any] = field(default_factory=dict)
    cursor: str | None = None


def parse_param(text: str) -> tuple[str, Any]:
    """Parses `k=v`: `v` as a TOML value when it is one (`3`, `true`, `["a", "b"]`), else as a plain string.

    Raises:
        PluginError: there is no `=` or no key.
    """
    key, sep, raw = text.partition('=')
    if not sep or not key.strip():
        raise PluginError(f'--param {text!r}: expected key=value')
    try:
        value = tomllib.loads(f'v = {raw}')['v']
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value


def choose_feed(
    algorithms: dict[str, type[Algorithm]], feeds_config: Path | None, name: str, overrides: dict[str, Any]
) -> Feed:
    """The feed called `name` (a record key in `feeds_config`, or an algorithm name), with `overrides` applied.

    Raises:
        PluginError: no feed or algorithm has that name, or a parameter does not fit.
    """
    declared = load_feeds(algorithms, feeds_config) if feeds_config is not None else {}
    if name in declared:
        feed = declared[name]
        spec = {'rkey': feed.rkey, 'algorithm': feed.algorithm.name, 'params': feed.params | overrides}
        return make_feed(algorithms, spec | {'display_name': feed.display_name, 'description': feed.description})
    if name not in algorithms:
        known = sorted(set(declared) | set(algorithms))
        raise PluginError(f'no feed or algorithm named {name!r}; known: {known}')
    return make_feed(algorithms, {'rkey': name, 'algorithm': name, 'params': overrides})


def preview_feed(feed: Feed, capture: Path, limit: int = 10, viewer: str | None = None) -> Preview:
    """Indexes `capture` into a temporary store, runs the feed's jobs, and returns its first page explained.

    The page is ranked as of the capture's newest post, so an old capture previews as it looked live.

    Raises:
        PluginError: the feed is personalized and `viewer` is None, or `viewer` is not a DID.
    """
    if viewer is not None and not is_did(viewer):
        raise PluginError(f'--viewer {viewer[:80]!r} is not a DID (expected did:plc:... or did:web:...)')
    if feed.algorithm.personalized and viewer is None:
        raise PluginError(
            f'feed {feed.rkey} is personalized: its pages depend on who reads them; give --viewer <did of a reader>'
        )
    with tempfile.TemporaryDirectory(prefix='feedgen-preview-') as folder:
        db = open_database(Path(folder) / 'preview.db')
        try:
            builder = StoreBuilder(db, indexers=feed_indexers([feed]))  # the feed's plugin tables fill too
            builder.replay(capture)
            builder.run_jobs(feed.algorithm)
            newest = Post.select(Post.sort_at).order_by(Post.sort_at.desc()).tuples().first()
            request = FeedRequest(limit=limit, viewer=viewer, at_ms=newest[0] if newest else None)
            page = feed.algorithm.page(request)
            return Preview(
                feed={'rkey': feed.rkey, 'algorithm': algorithm_stamp(feed), 'params': effective_params(feed)}
                | {'viewer': viewer or 'anonymous'},
                posts_indexed=Post.select().count(),
                items=_explained(feed, page, request),
                trace=page.trace,
                cursor=page.cursor,
            )
        finally:
            db.close()


def _explained(feed: Feed, page: Page, request: FeedRequest) -> list[dict[str, Any]]:
    texts = dict(Post.select(Post.uri, Post.text).where(Post.uri.in_([i.post for i in page.items])).tuples())
    return [
        {
            'post': item.post,
            'feedContext': item.context,
            'text': texts.get(item.post, '')[:TEXT_SHOWN],
            'explanation': feed.algorithm.explain(item.post, request),
        }
        for item in page.items
    ]
