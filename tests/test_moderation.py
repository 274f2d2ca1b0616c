"""A feed's label policy: labelers' labels in force leave posts and accounts out of the feeds whose policy hides
them; `/explain` names the label, `/algorithms` shows each policy, `/metrics` counts labels."""

from __future__ import annotations

from collections import Counter
from typing import Any

import peewee
import pytest
from flask.testing import FlaskClient

from feedgen.authoring.builder import StoreBuilder
from feedgen.ranking.moderation import DEFAULT_HIDE
from feedgen.ranking.plugins import PluginError, discover_algorithms, make_feed
from feedgen.settings import Settings
from feedgen.store.labels import LabelState, store_labels
from tests.conftest import configured_client, feed_uri, skeleton

LABELER = 'did:plc:labeler00000000000000000'
COMMUNITY = 'did:plc:community000000000000000'
FEEDS = {
    'latest': {'algorithm': 'latest'},
    'strict': {'algorithm': 'latest', 'moderation': {'hide': ['!hide'], 'labelers': {COMMUNITY: ['spam']}}},
    'open': {'algorithm': 'topic', 'params': {'tags': []}, 'moderation': {'hide': []}},
}


@pytest.fixture
def client(settings: Settings, db: peewee.Database) -> FlaskClient:
    return configured_client(settings, db, FEEDS)


def label(db: peewee.Database, src: str, uri: str, val: str, cts: str, **fields: Any) -> None:
    state = LabelState(src, uri, val, cts, int(cts[11:13]) * 3_600_000, **fields)
    kind = 'negated' if state.neg else 'applied'
    store_labels(db, src, None, [state], {'received': Counter([val]), kind: Counter([val])})


def test_labels_in_force_leave_posts_and_accounts_out_of_the_feeds_whose_policy_hides_them(
    client: FlaskClient, db: peewee.Database
) -> None:
    store = StoreBuilder(db)
    plain = store.make_post('alice', 'a sketch')
    adult = store.make_post('alice', 'not for work')
    spam = store.make_post('bob', 'buy now')
    hidden = [store.make_post('carol', f'post {n}') for n in range(2)]
    carol = hidden[0].split('/')[2]
    everything = [*hidden[::-1], spam, adult, plain]
    assert skeleton(client, 'latest') == everything

    label(db, LABELER, adult, 'porn', '2026-12-06T10:00:00.000Z')
    label(db, COMMUNITY, spam, 'spam', '2026-12-06T10:00:00.000Z')
    label(db, LABELER, plain, 'spam', '2026-12-06T10:00:00.000Z')  # spam hides in `strict` only from COMMUNITY
    label(db, LABELER, carol, '!hide', '2026-12-06T10:00:00.000Z')
    assert skeleton(client, 'latest') == [spam, plain]
    assert skeleton(client, 'strict') == [adult, plain]
    assert skeleton(client, 'open') == everything

    body = client.get('/explain', query_string={'feed': feed_uri('latest'), 'post': adult}).json
    assert body['inFeed'] is False
    assert body['excludedBy']['rule'] == 'labelled'
    assert body['excludedBy']['value'] == {
        'src': LABELER,
        'uri': adult,
        'val': 'porn',
        'cts': '2026-12-06T10:00:00.000Z',
    }
    assert f'labeler {LABELER} labelled it porn at 2026-12-06T10:00:00.000Z' in body['message']
    body = client.get('/explain', query_string={'feed': feed_uri('strict'), 'post': hidden[1]}).json
    assert body['excludedBy']['value']['uri'] == carol
    assert "labelled its author's account !hide" in body['message']
    assert client.get('/explain', query_string={'feed': feed_uri('open'), 'post': adult}).json['inFeed'] is True

    label(db, LABELER, adult, 'porn', '2026-12-06T11:00:00.000Z', neg=True)
    label(db, LABELER, carol, '!hide', '2026-12-06T09:00:00.000Z')  # older than the label in force: no change
    label(db, LABELER, carol, '!hide', '2026-12-06T12:00:00.000Z', exp_ms=1)  # newer, but expired
    assert skeleton(client, 'latest') == everything

    metrics = client.get('/metrics').get_data(as_text=True)
    assert f'feedgen_labels_received_total{{labeler="{LABELER}",val="porn"}} 2.0' in metrics
    assert f'feedgen_labels_negated_total{{labeler="{LABELER}",val="porn"}} 1.0' in metrics
    assert f'feedgen_labels_applied_total{{labeler="{COMMUNITY}",val="spam"}} 1.0' in metrics


def test_a_page_reads_no_subjects_labels_while_no_labeler_has_labelled_anything(
    client: FlaskClient, db: peewee.Database
) -> None:
    """Without labels (no `FEEDGEN_LABELERS`) a page costs one step of the label table, not a lookup of its posts
    and authors; the first stored label turns the lookup on."""
    store = StoreBuilder(db)
    posts = [store.make_post(f'author{n}', f'post {n}') for n in range(3)]
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    try:
        assert skeleton(client, 'latest') == posts[::-1]
        unlabelled = [s for s in statements if 'FROM "label"' in s]
        label(db, LABELER, posts[0], 'porn', '2026-12-06T10:00:00.000Z')
        statements.clear()
        assert skeleton(client, 'latest') == posts[:0:-1]
        labelled = [s for s in statements if 'FROM "label"' in s]
    finally:
        db.connection().set_trace_callback(None)
    assert len(unlabelled) == 1 and ' IN (' not in unlabelled[0]
    assert len(labelled) == 2 and ' IN (' in labelled[1]


def test_algorithms_shows_each_feeds_label_policy(client: FlaskClient) -> None:
    feeds = {feed['rkey']: feed for feed in client.get('/algorithms?format=json').json['feeds']}
    assert feeds['latest']['moderation'] == {'hide': list(DEFAULT_HIDE), 'labelers': {}}
    assert feeds['strict']['moderation'] == {'hide': ['!hide'], 'labelers': {COMMUNITY: ['spam']}}
    page = client.get('/algorithms?format=html').get_data(as_text=True)
    assert '<code>!hide</code> from every subscribed labeler' in page
    assert f'<code>spam</code> from <code>{COMMUNITY}</code>' in page


@pytest.mark.parametrize(
    'moderation',
    [{'hide': 'porn'}, {'hide': ['']}, {'labelers': {'not-a-did': ['spam']}}, {'show': ['porn']}, 'porn'],
)
def test_a_bad_moderation_table_names_the_feed(moderation: object) -> None:
    with pytest.raises(PluginError, match="feed 'bad': moderation"):
        make_feed(discover_algorithms(), {'rkey': 'bad', 'algorithm': 'latest', 'moderation': moderation})
