"""The scale benchmark (`python -m bench.scale`) at a tiny fraction, without serving: it runs end to end, and its
store and numbers hold together (the network's ratios, likes on the store's own posts, exact counters)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from bench.scale import run
from bench.scale.store import FOLLOWS_PER_POST, LIKES_PER_POST, REPOSTS_PER_POST, Volumes
from bench.serve.fill import did_of
from tests.conftest import POSTGRES_URL

FRACTION = 0.0005
FRAMES = 2000


@pytest.fixture(scope='module')
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp('scale')
    argv = [
        '--fraction',
        str(FRACTION),
        '--frames',
        str(FRAMES),
        '--paced-seconds',
        '0.5',
        '--no-serve',
        '--out',
        str(out),
    ]
    assert run.main(argv) == 0
    return json.loads((out / f'scale-{FRACTION:g}.json').read_text()), out / f'scale-{FRACTION:g}.db'


def test_the_store_holds_the_network_ratios(results: tuple[dict, Path]) -> None:
    report, _ = results
    rows, posts = report['rows'], Volumes.at(FRACTION).posts
    assert rows['post'] == posts == round(2_200_000 * 3 * FRACTION)
    assert rows['like'] == pytest.approx(LIKES_PER_POST * posts, rel=0.01)
    assert rows['repost'] == pytest.approx(REPOSTS_PER_POST * posts, rel=0.01)
    follows = rows['follow'] - report['fill']['viewer_follows']
    assert follows == pytest.approx(FOLLOWS_PER_POST * posts, rel=0.1)


def test_engagement_is_heavy_tailed(results: tuple[dict, Path]) -> None:
    engagement = results[0]['engagement']
    assert engagement['unliked_share'] > 0.5
    assert engagement['max'] > 100 * LIKES_PER_POST


def test_ingested_events_land_on_the_stores_own_posts_and_accounts(results: tuple[dict, Path]) -> None:
    report, store = results
    accounts = {did_of(i) for i in range(report['fill']['accounts'])}
    with sqlite3.connect(store) as conn:
        likes = conn.execute('SELECT count(*) FROM "like"').fetchone()[0]
        dangling = conn.execute('SELECT count(*) FROM "like" WHERE subject NOT IN (SELECT uri FROM post)').fetchone()[0]
        followed = {subject for (subject,) in conn.execute('SELECT DISTINCT subject FROM follow')}
        wrong = conn.execute(
            'SELECT count(*) FROM post WHERE like_count != (SELECT count(*) FROM "like" WHERE subject = post.uri) '
            'OR repost_count != (SELECT count(*) FROM repost WHERE subject = post.uri)'
        ).fetchone()[0]
    assert likes > report['rows']['like']  # the capture's likes were added
    assert dangling < 0.1 * likes  # likes of posts since pruned (`Shape.steady`): a few hours of a 72-hour window
    assert followed <= accounts
    assert wrong == 0


def test_ingest_is_measured_on_both_stores(results: tuple[dict, Path]) -> None:
    report, _ = results
    for store in ('fresh', 'filled'):
        fast, paced = report['ingest'][store]['fast'], report['ingest'][store]['paced']
        assert fast['frames'] == FRAMES
        assert paced['frames'] == 1000
        assert fast['frames_per_s'] > 0 and fast['write_mb'] > 0 and fast['peak_rss_mb'] > 0
        # measured once the jobs' first runs ended: each of them, and the prune, ran before the frames came
        for run_ in (fast, paced):
            assert run_['warm_up_seconds'] is not None
            assert set(run_['jobs_in_process']) >= {'prune', *report['jobs']}
    assert set(report['jobs']) == set(report['jobs_first'])
    assert report['prune']['removed']['posts'] >= 0


def test_every_table_and_index_is_weighed(results: tuple[dict, Path]) -> None:
    stored = {item['name']: item for item in results[0]['storage']}
    assert {
        'post',
        'like_record',
        'account_number',
        'repost',
        'follow',
        'post_uri',
        'like_record_subject_author_subject_rkey',
    } <= stored.keys()
    assert all(item['bytes'] > 0 and item['per_row'] > 0 for item in stored.values())
    assert sum(item['bytes'] for item in stored.values()) <= results[0]['store_bytes']


@pytest.mark.skipif(not POSTGRES_URL, reason='FEEDGEN_TEST_DATABASE_URL is not set')
def test_the_same_benchmark_runs_on_postgresql(tmp_path: Path) -> None:
    argv = ['--fraction', str(FRACTION), '--frames', '1000', '--paced-seconds', '0', '--no-serve', '--out',
            str(tmp_path), '--database', POSTGRES_URL]  # fmt: skip
    assert run.main(argv) == 0
    report = json.loads((tmp_path / f'scale-{FRACTION:g}-postgres.json').read_text())
    assert [report['ingest'][store]['fast']['frames'] for store in ('fresh', 'filled')] == [1000, 1000]
    stored = {item['name']: item for item in report['storage']}
    assert stored['post']['rows'] > report['rows']['post']  # the filled store, and the capture's posts on top
    assert stored['like_record_pkey']['bytes'] > 0
