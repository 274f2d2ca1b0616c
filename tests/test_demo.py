"""`feedgen demo`: the README's first command runs the main job offline and serves the bundled capture's feeds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import httpx

from tests.conftest import CAPTURE_5, expected_posts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_demo_ingests_from_a_loopback_relay_and_serves_latest(tmp_path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith('FEEDGEN_')}
    process = subprocess.Popen(
        [sys.executable, '-m', 'feedgen', 'demo', '--port', str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    feed = quote(f'at://did:web:localhost%3A{port}/app.bsky.feed.generator/latest', safe='')
    url = f'http://127.0.0.1:{port}/xrpc/app.bsky.feed.getFeedSkeleton?feed={feed}&limit=100'
    posts: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                posts = [item['post'] for item in httpx.get(url, timeout=5).json()['feed']]
            except (httpx.HTTPError, KeyError, ValueError):
                posts = []
            if posts == expected_posts(CAPTURE_5):
                break
            time.sleep(0.3)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert posts == expected_posts(CAPTURE_5), stderr.decode()[-2000:]
    assert b'getFeedSkeleton?feed=' in stderr, 'the demo prints URLs to try'
