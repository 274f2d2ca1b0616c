"""Pins: a feed declared with `pin = [...]` shows those posts, marked pinned, at the top of its first page only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import peewee
import pytest

from feedgen.authoring import StoreBuilder
from feedgen.ranking.plugins import PluginError, discover_algorithms, load_feeds
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from tests.test_server import SKELETON

FEED = 'at://did:plc:publisher0000000000000000/app.bsky.feed.generator/news'
PIN = 'app.bsky.feed.defs#skeletonReasonPin'


def config(tmp_path: Path, pins: str) -> Path:
    path = tmp_path / 'feeds.toml'
    path.write_text(f'[[feed]]\nrkey = "news"\nalgorithm = "latest"\npin = {pins}\n')
    return path


@pytest.mark.parametrize(
    ('pins', 'message'),
    [
        ('"at://did:plc:a/app.bsky.feed.post/1"', "feed 'news': pin must be a list of at most 3 post at-uris"),
        (
            '["at://did:plc:a/app.bsky.feed.post/1", "at://did:plc:a/app.bsky.feed.post/2", '
            '"at://did:plc:a/app.bsky.feed.post/3", "at://did:plc:a/app.bsky.feed.post/4"]',
            "feed 'news': pin must be a list of at most 3 post at-uris",
        ),
        ('["at://did:plc:a/app.bsky.feed.like/1"]', "feed 'news': pin 'at://did:plc:a/app.bsky.feed.like/1' is not a"),
        ('["https://bsky.app/profile/a/post/1"]', "feed 'news': pin 'https://bsky.app/profile/a/post/1' is not a"),
        ('[1]', "feed 'news': pin 1 is not a post at-uri"),
        (
            '["at://did:plc:a/app.bsky.feed.post/1", "at://did:plc:a/app.bsky.feed.post/1"]',
            "feed 'news': a post is pinned twice",
        ),
    ],
)
def test_bad_pins_stop_startup_with_a_one_line_error(tmp_path: Path, pins: str, message: str) -> None:
    with pytest.raises(PluginError) as error:
        load_feeds(discover_algorithms(), config(tmp_path, pins))
    assert str(error.value).startswith(message)
    assert '\n' not in str(error.value)


@pytest.fixture
def posts(db: peewee.Database) -> list[str]:
    """Ten posts, oldest first."""
    builder = StoreBuilder(db)
    return [builder.make_post('alice', f'post {n}', at=1_790_000_000 + 60 * n) for n in range(10)]


def read(settings: Settings, db: peewee.Database, limit: int, cursor: str | None = None) -> dict:
    client = create_app(settings, db=db).test_client()
    query = {'feed': FEED, 'limit': limit} | ({'cursor': cursor} if cursor else {})
    response = client.get(SKELETON, query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def test_pins_top_the_first_page_only(
    tmp_path: Path, settings: Settings, db: peewee.Database, posts: list[str]
) -> None:
    # Pinned: an old post and one that would be on the first page anyway (it is not shown twice on that page).
    pinned = [posts[2], posts[8]]
    settings = dataclasses.replace(settings, feeds_config=config(tmp_path, str(pinned).replace("'", '"')))
    first = read(settings, db, limit=4)
    assert first['feed'][:2] == [{'post': post, 'reason': {'$type': PIN}} for post in pinned]
    assert [item['post'] for item in first['feed'][2:]] == [posts[9]]
    assert all('reason' not in item for item in first['feed'][2:])
    seen = [item['post'] for item in first['feed']]
    cursor = first.get('cursor')
    while cursor:
        page = read(settings, db, limit=4, cursor=cursor)
        assert all('reason' not in item for item in page['feed'])
        seen += [item['post'] for item in page['feed']]
        cursor = page.get('cursor')
    # Later pages are the algorithm's own: the pinned old post is in its place too, nothing else repeats or is lost.
    assert seen == [*pinned, posts[9], *posts[7::-1]]


def test_a_page_of_one_is_the_algorithms(
    tmp_path: Path, settings: Settings, db: peewee.Database, posts: list[str]
) -> None:
    settings = dataclasses.replace(settings, feeds_config=config(tmp_path, f'["{posts[0]}"]'))
    (item,) = read(settings, db, limit=1)['feed']
    assert item['post'] == posts[9]
    assert 'reason' not in item
