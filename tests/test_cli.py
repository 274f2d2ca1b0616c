"""feedgen.cli: replay with its summary, resuming after SIGKILL, listing algorithms, one-line setting errors."""

from __future__ import annotations

import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from flask import Flask

from feedgen.cli import main
from feedgen.serve.server import frozen
from tests.conftest import CAPTURE_20, expected_posts

ENV = {k: v for k, v in os.environ.items() if not k.startswith('FEEDGEN_')}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', 'feedgen', *args], env=ENV | env, capture_output=True, text=True, timeout=120
    )


def _store_snapshot(path: Path) -> dict[str, list]:
    """Every table's rows that do not depend on wall-clock time (indexed_at and row ids differ between runs)."""
    with sqlite3.connect(path) as conn:
        return {
            'post': conn.execute(
                'SELECT uri, cid, author, text, langs, tags, reply_parent, sort_at, like_count, repost_count,'
                ' reply_count, hidden FROM post ORDER BY uri'
            ).fetchall(),
            'post_term': conn.execute(
                'SELECT t.term, p.uri FROM post_term t JOIN post p ON p.id = t.post_id ORDER BY 1, 2'
            ).fetchall(),
            'like': conn.execute('SELECT uri, author, subject FROM "like" ORDER BY uri').fetchall(),
            'repost': conn.execute('SELECT uri, author, subject FROM repost ORDER BY uri').fetchall(),
            'follow': conn.execute('SELECT uri, author, subject FROM follow ORDER BY uri').fetchall(),
            'actor': conn.execute('SELECT did, handle, status FROM actor ORDER BY did').fetchall(),
            'cursor': conn.execute('SELECT cursor FROM ingest_state').fetchall(),
        }


def _cursor(path: Path) -> int:
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            row = conn.execute('SELECT cursor FROM ingest_state').fetchone()
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0
    return row[0] if row else 0


def test_replay_prints_a_summary_and_indexes_the_capture(tmp_path: Path) -> None:
    database = tmp_path / 'x.db'
    result = _run(['replay', str(CAPTURE_20)], {'FEEDGEN_DATABASE': str(database)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary['frames'] == 1311
    assert summary['cursor'] == 1311
    assert summary['indexed']['create post'] == 503
    assert summary['posts_in_store'] == len(expected_posts(CAPTURE_20))
    again = json.loads(_run(['replay', str(CAPTURE_20)], {'FEEDGEN_DATABASE': str(database)}).stdout)
    assert again['skipped'] == {'duplicate_seq': 1311}
    assert again['posts_in_store'] == summary['posts_in_store']


def test_replay_killed_midway_resumes_without_loss_or_doubles(tmp_path: Path) -> None:
    clean = tmp_path / 'clean.db'
    assert _run(['replay', str(CAPTURE_20)], {'FEEDGEN_DATABASE': str(clean)}).returncode == 0

    killed = tmp_path / 'killed.db'
    env = ENV | {'FEEDGEN_DATABASE': str(killed), 'FEEDGEN_BATCH_SIZE': '1'}
    kill_points = []
    for threshold in (200, 600, 1000):
        process = subprocess.Popen(
            [sys.executable, '-m', 'feedgen', 'replay', str(CAPTURE_20)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while _cursor(killed) < threshold and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kill_points.append(_cursor(killed))
    assert any(point < 1311 for point in kill_points), f'every run finished before its kill: {kill_points}'
    result = _run(['replay', str(CAPTURE_20)], {'FEEDGEN_DATABASE': str(killed)})
    assert result.returncode == 0, result.stderr
    assert _store_snapshot(killed) == _store_snapshot(clean)


def test_algorithms_lists_every_feed_with_its_version(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ['algorithms', '--json'], env={'FEEDGEN_DATABASE': str(tmp_path / 'db')})
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    assert {'latest', 'topic'} <= set(listing['algorithms'])
    latest = next(feed for feed in listing['feeds'] if feed['rkey'] == 'latest')
    assert len(latest['version']) == 12
    assert latest['source'].endswith('latest.py')


def test_an_invalid_setting_is_one_line_naming_it() -> None:
    result = _run(['algorithms'], {'FEEDGEN_PUBLISHER_DID': 'not-a-did'})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: FEEDGEN_PUBLISHER_DID: 'not-a-did' is not a DID (expected did:plc:... or did:web:...)"
    ]


def test_a_bad_feeds_config_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / 'feeds.toml'
    config.write_text('[[feed]]\nalgorithm = "nope"\n')
    result = _run(['algorithms'], {'FEEDGEN_FEEDS_CONFIG': str(config)})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unknown algorithm 'nope'" in result.stderr


def test_replay_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(['replay', str(tmp_path / 'missing.atfh')], {'FEEDGEN_DATABASE': str(tmp_path / 'db')})
    assert result.returncode == 2
    assert 'does not exist' in result.stderr


def test_a_serving_worker_freezes_its_loaded_app_out_of_the_cyclic_collector() -> None:
    """What a worker loads lives as long as it does; frozen, full collections no longer rescan it between requests."""
    app = Flask('probe')
    frozen_before = gc.get_freeze_count()
    try:
        assert frozen(lambda: app)() is app
        assert gc.get_freeze_count() > frozen_before
    finally:
        gc.unfreeze()
    # Only a worker takes its stop signals (`worker_loader`): blocked here, they would stay blocked in this process
    # and in every process it starts.
    assert not {signal.SIGINT, signal.SIGTERM} & signal.pthread_sigmask(signal.SIG_BLOCK, [])
