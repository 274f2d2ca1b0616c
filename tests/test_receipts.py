"""receipts: every skeleton carries a reqId and its algorithm; receipts and counters are stored, kept a day."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import replace

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.plugins import discover_algorithms, load_feeds
from feedgen.serve.app import create_app
from feedgen.serve.receipts import ReceiptSampler, flush_requests, get_receipt, prune_receipts, request_counts
from feedgen.settings import ReceiptPolicy, Settings, SettingsError
from feedgen.store.models import FeedStat, Receipt
from tests.conftest import PUBLISHER, feed_uri

SKELETON = '/xrpc/app.bsky.feed.getFeedSkeleton'


@pytest.fixture
def posts(db: peewee.Database) -> list[str]:
    store = StoreBuilder(db)
    return [store.make_post(f'author{i % 3}', f'post {i} #atproto', tags=['atproto']) for i in range(7)]


def skeleton(client: FlaskClient, rkey: str, **query: object) -> dict:
    with client.get(SKELETON, query_string={'feed': feed_uri(rkey), **query}) as response:
        assert response.status_code == 200, response.json
        return response.json


def test_a_skeleton_carries_a_req_id_and_its_algorithm(client: FlaskClient, posts: list[str]) -> None:
    first = skeleton(client, 'latest', limit=3)
    second = skeleton(client, 'latest', limit=3)
    latest = load_feeds(discover_algorithms())['latest']
    assert first['algorithm'] == {'name': 'latest', 'version': latest.version}
    assert re.fullmatch(r'[0-9a-f]{16}', first['reqId'])
    assert first['reqId'] != second['reqId']


def test_the_receipt_shows_how_the_page_was_made(client: FlaskClient, posts: list[str]) -> None:
    body = skeleton(client, 'topic', limit=3)
    following = skeleton(client, 'topic', limit=3, cursor=body['cursor'])
    receipt = client.get(f'/receipts/{following["reqId"]}').json
    assert receipt['reqId'] == following['reqId']
    assert receipt['feed'] == feed_uri('topic')
    assert receipt['algorithm'] == following['algorithm']
    assert receipt['params']['tags'] == ['atproto']
    assert receipt['viewer'] == 'anonymous'
    assert receipt['request'] == {'limit': 3, 'cursor': body['cursor'].split(':', 1)[1], 'langs': []}
    assert receipt['items'] == following['feed']
    assert receipt['cursor'] == following['cursor']
    assert receipt['trace']['filters'] == ['has #atproto']
    assert receipt['trace']['candidates'] >= 3


def test_receipts_can_be_switched_off_while_requests_are_still_counted(
    settings: Settings, db: peewee.Database, posts: list[str]
) -> None:
    client = create_app(replace(settings, receipts=ReceiptPolicy(share=0.0)), db=db).test_client()
    body = skeleton(client, 'latest')
    response = client.get(f'/receipts/{body["reqId"]}')
    assert response.status_code == 404
    assert response.json['error'] == 'ReceiptNotFound'
    assert Receipt.select().count() == 0
    assert request_counts()['latest']['requests'] == 1


WORKER = """
import sys
from feedgen.serve.app import create_app
from feedgen.settings import Settings
settings = Settings(hostname='feeds.example.test', publisher_did=sys.argv[1], database=sys.argv[2])
client = create_app(settings).test_client()
for rkey in ('latest', 'topic', 'latest'):
    feed = f'at://{sys.argv[1]}/app.bsky.feed.generator/{rkey}'
    client.get('/xrpc/app.bsky.feed.getFeedSkeleton', query_string={'feed': feed}).close()
"""


def test_counts_add_up_over_serving_processes(client: FlaskClient, settings: Settings, posts: list[str]) -> None:
    # Another process stands for a second serving worker on the same store.
    subprocess.run([sys.executable, '-c', WORKER, PUBLISHER, settings.database], check=True, timeout=60)
    skeleton(client, 'latest')
    skeleton(client, 'topic')
    counts = request_counts()
    assert (counts['latest']['requests'], counts['topic']['requests']) == (3, 2)
    assert counts['latest']['since'] <= time.time() * 1000


def test_an_error_is_not_counted(client: FlaskClient, posts: list[str]) -> None:
    with client.get(SKELETON, query_string={'feed': feed_uri('latest'), 'limit': 0}) as response:
        assert response.status_code == 400
    assert FeedStat.select().count() == 0


@pytest.mark.parametrize(('req_id', 'status'), [('zz', 400), ('0123456789ABCDEF', 400), ('0123456789abcdef', 404)])
def test_an_unknown_or_malformed_req_id_is_an_xrpc_error(client: FlaskClient, req_id: str, status: int) -> None:
    response = client.get(f'/receipts/{req_id}')
    assert response.status_code == status
    assert response.json['message']


def test_receipts_are_kept_for_a_day_then_pruned(client: FlaskClient, db: peewee.Database, posts: list[str]) -> None:
    old, new = skeleton(client, 'latest')['reqId'], skeleton(client, 'latest')['reqId']
    flush_requests()  # the receipts are written in the background, within 0.2 s
    day_ago_ms = int((time.time() - 25 * 3600) * 1000)
    Receipt.update(created_at=day_ago_ms).where(Receipt.req_id == old).execute()
    assert get_receipt(old) is None, 'a receipt older than a day is not served even before pruning'
    assert prune_receipts(db) == 1
    assert [r.req_id for r in Receipt.select()] == [new]
    assert get_receipt(new) is not None


@pytest.mark.parametrize(
    ('raw', 'policy'),
    [
        ('on', ReceiptPolicy()),
        ('off', ReceiptPolicy(share=0.0)),
        ('0.1', ReceiptPolicy(share=0.1)),
        ('false', ReceiptPolicy(share=0.0)),
        ('1', ReceiptPolicy()),
        ('20/s', ReceiptPolicy(per_second=20.0)),
        ('0.5/s', ReceiptPolicy(per_second=0.5)),
    ],
)
def test_feedgen_receipts_setting(raw: str, policy: ReceiptPolicy) -> None:
    assert Settings.from_env({'FEEDGEN_RECEIPTS': raw}, env_file=None).receipts == policy
    assert Settings.from_env({}, env_file=None).receipts == ReceiptPolicy(per_second=50.0)


@pytest.mark.parametrize('raw', ['sometimes', '1.5', '-0.1', '0/s', 'x/s', '-3/s'])
def test_a_bad_feedgen_receipts_setting_is_named(raw: str) -> None:
    with pytest.raises(SettingsError, match='FEEDGEN_RECEIPTS'):
        Settings.from_env({'FEEDGEN_RECEIPTS': raw}, env_file=None)


def test_a_rate_keeps_every_receipt_below_it_and_that_many_a_second_above_it() -> None:
    now = [0.0]
    sampler = ReceiptSampler(ReceiptPolicy(per_second=10.0), clock=lambda: now[0])
    assert all(sampler.keep() for _ in range(10)), 'a burst of up to one second of requests is kept whole'
    assert not sampler.keep()
    kept = 0
    for _ in range(1000):  # 100 requests a second for 10 s
        now[0] += 0.01
        kept += sampler.keep()
    assert kept == pytest.approx(100, abs=2)
    now[0] += 5.0
    assert sum(sampler.keep() for _ in range(12)) == 10
    assert all(ReceiptSampler(ReceiptPolicy()).keep() for _ in range(1000))
    assert not any(ReceiptSampler(ReceiptPolicy(share=0.0)).keep() for _ in range(1000))
