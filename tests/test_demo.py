"""`feedgen demo`: the README's first command runs the main job offline and serves every feed of the bundled capture
full, whatever its age, then stops cleanly and removes its temporary store."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from feedgen.demo import read_story
from feedgen.ingest.capture import read_capture
from feedgen.serve.auth import AuthError, StandInAuth
from tests.conftest import CAPTURE_20, expected_posts, load_session
from tests.jwts import FakeKeys, SigningKey, service_claims
from tests.processes import FeedgenProcess, free_port

FEED_SKELETON = '/xrpc/app.bsky.feed.getFeedSkeleton?'
BUILT_IN_FEEDS = {'latest', 'topic', 'hot', 'catch-up', 'following', 'network', 'quiet'}


def _demo(tmp_path: Path) -> tuple[FeedgenProcess, int]:
    port = free_port()
    demo = FeedgenProcess(['demo', '--port', str(port)], {}, tmp_path, name='demo').start()
    demo.wait_http(f'http://127.0.0.1:{port}/xrpc/_health')
    return demo, port


def _printed_urls(demo: FeedgenProcess) -> list[str]:
    return re.findall(r'^ {2}(http://\S+)$', demo.log(), flags=re.MULTILINE)


def _store(demo: FeedgenProcess) -> Path:
    """The temporary store folder the demo names in its first lines."""
    found = re.search(r'^demo: .*; store (/\S+)$', demo.log(), flags=re.MULTILINE)
    assert found is not None, demo.log()[-3000:]
    return Path(found[1])


def _first_page(url: str, timeout: float = 90.0) -> list[str]:
    """The posts of the feed page at `url` once it has any (the demo is still ingesting at first); [] at timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, response.text
        if posts := [item['post'] for item in response.json()['feed']]:
            return posts
        time.sleep(0.3)
    return []


def _assert_stopped_cleanly(demo: FeedgenProcess) -> None:
    assert demo.process is not None
    assert demo.process.wait(timeout=30) == 0, demo.log()[-3000:]
    assert demo.left_behind() == []
    assert 'Traceback' not in demo.log(), demo.log()[-3000:]
    assert 'restarting' not in demo.log()
    assert 'refused to gracefully stop' not in demo.log(), 'every serving worker stops on the signal, none is killed'


def test_demo_serves_every_feed_full_then_stops_and_removes_its_store(tmp_path: Path) -> None:
    demo, port = _demo(tmp_path)
    try:
        urls = _printed_urls(demo)
        feeds = {re.search(r'generator%2F([^&]+)', url)[1]: url for url in urls if FEED_SKELETON in url}
        assert set(feeds) == BUILT_IN_FEEDS, urls
        empty = [rkey for rkey, url in feeds.items() if not _first_page(url)]
        assert not empty, f'empty feeds: {empty}\n{demo.log()[-3000:]}'
        assert f'http://127.0.0.1:{port}/algorithms' in urls
        assert httpx.get(f'http://127.0.0.1:{port}/algorithms', timeout=10).status_code == 200
        explain = [url for url in urls if '/explain?' in url]
        assert len(explain) == 1, urls
        answer = httpx.get(explain[0], timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()['inFeed'], answer.text
        assert _store(demo).is_dir()
        assert 'times are moved' in demo.log()
    finally:
        demo.send(signal.SIGTERM)
    _assert_stopped_cleanly(demo)
    assert not _store(demo).exists(), 'the temporary store is removed on exit'


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['ctrl-c', 'sigterm-to-the-group'])
def test_demo_stops_cleanly_on_a_signal_to_its_process_group(tmp_path: Path, signum: int) -> None:
    demo, _port = _demo(tmp_path)
    try:
        latest = next(url for url in _printed_urls(demo) if 'generator%2Flatest' in url)
        assert _first_page(latest), 'ingest runs before the signal'
    finally:
        demo.send(signum, group=True)
    _assert_stopped_cleanly(demo)
    assert not _store(demo).exists()


def test_the_story_picks_a_viewer_who_follows_and_a_surviving_post() -> None:
    story = read_story(read_capture(CAPTURE_20))
    session = load_session(CAPTURE_20)
    deleted = session['account_events']['admin_deleted']
    assert story.viewer is not None and story.viewer != deleted
    assert story.follows >= 3
    assert story.viewer_handle.endswith('.test')
    assert story.example_post in expected_posts(CAPTURE_20)


def test_demo_auth_reads_an_anonymous_request_as_the_demo_viewer_and_still_checks_tokens() -> None:
    key = SigningKey()
    reader = 'did:plc:reader'
    auth = StandInAuth('did:web:localhost', FakeKeys(published={reader: key.did_key}), 'did:plc:demo')
    assert auth.viewer(None) == 'did:plc:demo'
    token = key.jwt(service_claims(reader, 'did:web:localhost'))
    assert auth.viewer(f'Bearer {token}') == reader
    with pytest.raises(AuthError):
        auth.viewer('Bearer not-a-token')
