"""End to end on ../shared/atnet with Bluesky's Ozone labeler (`start.sh --ozone`): moderation reaches the feeds.

A moderator labels a post `porn` through Ozone: it leaves the feeds a reader gets from their PDS and the AppView, and
the negation brings it back; `!hide` on the account removes all its posts. A stand-in in front of Ozone that alters
a label gets it rejected and counted; a labeler that restarts, and a `feedgen run` killed with SIGKILL, lose and
double no label.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from atproto import models
from atproto_identity.resolver import IdResolver

from feedgen.ingest.labelers import LabelSubscription
from feedgen.serve.app import create_app
from feedgen.settings import Settings
from feedgen.store.labels import labeler_totals
from feedgen.store.models import Label, open_database
from tests.atnet import (
    RETRY_XRPC,
    Account,
    Feedgen,
    Network,
    Ozone,
    account_subject,
    create_account,
    eventually,
    feed_through_pds,
    find_network,
    find_ozone,
    post_subject,
    running_feedgen,
)
from tests.labelers import Redirecting, TamperingProxy
from tests.processes import FeedgenProcess, free_port

pytestmark = pytest.mark.atnet
FEEDS = ('latest', 'topic')


@pytest.fixture(scope='module')
def ozone() -> Ozone:
    return find_ozone()


@pytest.fixture(scope='module')
def people(ozone: Ozone) -> dict[str, Account]:
    network: Network = find_network()
    return {name: create_account(network, name) for name in ('publisher', 'author', 'reader')}


@pytest.fixture(scope='module')
def feedgen(ozone: Ozone, people: dict[str, Account], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feedgen]:
    folder = tmp_path_factory.mktemp('labelers')
    yield from running_feedgen(find_network(), people['publisher'], folder, env={'FEEDGEN_LABELERS': ozone.did})


def shown(reader: Account, feedgen: Feedgen, author: Account) -> dict[str, list[str]]:
    """The author's posts in each feed, as the reader's PDS and the AppView serve them."""
    return {
        rkey: sorted(
            item.post.uri
            for item in feed_through_pds(reader, feedgen.feed_uri(rkey))
            if item.post.author.did == author.did
        )
        for rkey in FEEDS
    }


def expect_shown(reader: Account, feedgen: Feedgen, author: Account, *posts: str) -> None:
    expected = {rkey: sorted(posts) for rkey in FEEDS}
    eventually(lambda: _equal(shown(reader, feedgen, author), expected), retry=RETRY_XRPC)


def test_a_moderators_label_takes_a_post_out_of_the_feeds_its_negation_brings_it_back_and_hide_takes_an_account(
    ozone: Ozone, feedgen: Feedgen, people: dict[str, Account]
) -> None:
    author, reader = people['author'], people['reader']
    flagged = author.post('a post a moderator will label #atproto', tags=['atproto'])
    other = author.post('another post of the same author #atproto', tags=['atproto'])
    expect_shown(reader, feedgen, author, flagged.uri, other.uri)

    ozone.label(post_subject(flagged), create=('porn',))
    expect_shown(reader, feedgen, author, other.uri)
    explained = feedgen.explain('latest', flagged.uri)
    assert explained['inFeed'] is False
    assert explained['excludedBy']['rule'] == 'labelled'
    assert explained['excludedBy']['value'] | {'cts': ''} == {
        'src': ozone.did,
        'uri': flagged.uri,
        'cid': flagged.cid,
        'val': 'porn',
        'cts': '',
    }

    ozone.label(post_subject(flagged), negate=('porn',))
    expect_shown(reader, feedgen, author, flagged.uri, other.uri)

    ozone.label(account_subject(author.did), create=('!hide',))
    expect_shown(reader, feedgen, author)
    assert feedgen.explain('topic', other.uri)['excludedBy']['value']['uri'] == author.did
    ozone.label(account_subject(author.did), negate=('!hide',))
    expect_shown(reader, feedgen, author, flagged.uri, other.uri)


class Subscribed:
    """A `LabelSubscription` to Ozone through `proxy`, on a thread, into its own store."""

    def __init__(self, ozone: Ozone, proxy: TamperingProxy, folder: Path) -> None:
        self.ozone = ozone
        self.db = open_database(folder / 'labels.db')
        network = find_network()
        resolver = Redirecting(IdResolver(plc_url=network.plc, timeout=10).did, proxy.endpoint)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=LabelSubscription(ozone.did, self.db, resolver, self.stop).run, daemon=True
        )
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def stored(self, uri: str) -> list[str]:
        return sorted(label.val for label in Label.select().where(Label.uri == uri, Label.neg == False))  # noqa: E712


@pytest.fixture
def author(ozone: Ozone) -> Account:
    return create_account(find_network(), 'labelled')


def test_a_label_altered_by_a_stand_in_in_front_of_ozone_is_rejected_and_counted(
    ozone: Ozone, author: Account, tmp_path: Path
) -> None:
    target, control = author.post('to be tampered with'), author.post('passed through as it is')
    proxy = TamperingProxy(
        ozone.url, lambda label: label | {'val': 'sexual'} if label['uri'] == target.uri else label
    ).start()
    subscribed = Subscribed(ozone, proxy, tmp_path)
    try:
        ozone.label(post_subject(target), create=('porn',))
        ozone.label(post_subject(control), create=('porn',))
        eventually(lambda: _equal(subscribed.stored(control.uri), ['porn']), timeout=60)
        assert subscribed.stored(target.uri) == []
        totals = labeler_totals()[ozone.did]
        assert totals['rejected']['bad_signature'] >= 1
        settings = Settings(hostname='feeds.example.test', database=str(tmp_path / 'labels.db'))
        metrics = create_app(settings, db=subscribed.db).test_client().get('/metrics').get_data(as_text=True)
        line = f'feedgen_labels_rejected_total{{labeler="{ozone.did}",reason="bad_signature"}}'
        assert f'{line} {float(totals["rejected"]["bad_signature"])}' in metrics
    finally:
        subscribed.end()
        proxy.stop()


def test_a_restarting_labeler_loses_and_doubles_no_label(ozone: Ozone, author: Account, tmp_path: Path) -> None:
    post = author.post('labelled while the labeler restarts')
    values = [f'restart-{secrets.token_hex(2)}-{n}' for n in range(12)]
    proxy = TamperingProxy(ozone.url).start()
    subscribed = Subscribed(ozone, proxy, tmp_path)
    try:
        ozone.label(post_subject(post), create=tuple(values[:4]))
        eventually(lambda: _equal(subscribed.stored(post.uri), sorted(values[:4])), timeout=60)
        proxy.stop()  # the labeler goes away: the subscription's connection drops and it retries
        ozone.label(post_subject(post), create=tuple(values[4:8]))
        proxy.start()
        ozone.label(post_subject(post), create=tuple(values[8:]))
        eventually(lambda: _equal(subscribed.stored(post.uri), sorted(values)), timeout=120)
    finally:
        subscribed.end()
        proxy.stop()
    received = labeler_totals()[ozone.did]['received']
    assert {value: received.get(value) for value in values} == dict.fromkeys(values, 1)
    assert len(proxy.connections) >= 2


class Labelling:
    """A moderator labelling one post with a new value after another, on a thread, until `after` more labels
    follow the moment `stop` is set (at most `MAX_LABELS` in all)."""

    MAX_LABELS = 200

    def __init__(self, ozone: Ozone, post: models.AppBskyFeedPost.CreateRecordResponse, after: int) -> None:
        self.values: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ozone, post_subject(post), after), daemon=True)
        self.thread.start()

    def _run(self, ozone: Ozone, subject: dict[str, str], after: int) -> None:
        prefix = f'kill-{secrets.token_hex(2)}'
        while len(self.values) < self.MAX_LABELS and after > 0:
            value = f'{prefix}-{len(self.values)}'
            ozone.label(subject, (value,))
            self.values.append(value)
            after -= self.stop.is_set()

    def finish(self) -> list[str]:
        self.stop.set()
        self.thread.join(timeout=120)
        assert not self.thread.is_alive()
        return self.values


def test_sigkill_of_feedgen_run_loses_and_doubles_no_label(ozone: Ozone, author: Account, tmp_path: Path) -> None:
    network = find_network()
    post = author.post('labelled around a kill')
    port = free_port()
    env = {
        'FEEDGEN_HOSTNAME': f'localhost:{port}',
        'FEEDGEN_PORT': str(port),
        'FEEDGEN_DATABASE': str(tmp_path / 'feedgen.db'),
        'FEEDGEN_FIREHOSE': network.firehose,
        'FEEDGEN_PLC_URL': network.plc,
        'FEEDGEN_LABELERS': ozone.did,
        'FEEDGEN_BACKFILL_HOURS': '0',
        'FEEDGEN_WORKERS': '1',
    }
    db = open_database(tmp_path / 'feedgen.db')

    def stored() -> list[str]:
        db.connect(reuse_if_open=True)
        return sorted(label.val for label in Label.select().where(Label.uri == post.uri))

    first = FeedgenProcess(['run', '--host', '127.0.0.1'], env, tmp_path, 'first').start()
    try:
        first.wait_http(f'http://127.0.0.1:{port}/xrpc/_health')
        labelling = Labelling(ozone, post, after=10)
        eventually(lambda: _more_than(len(stored()), 3), timeout=60)
        first.kill()  # SIGKILL to the whole process group while labels keep coming
    finally:
        first.kill()
    values = labelling.finish()  # ten more labels while feedgen is down
    with FeedgenProcess(['run', '--host', '127.0.0.1'], env, tmp_path, 'second') as second:
        second.wait_http(f'http://127.0.0.1:{port}/xrpc/_health')
        eventually(lambda: _equal(stored(), sorted(values)), timeout=120)
    received = labeler_totals()[ozone.did]['received']
    assert {value: received.get(value) for value in values} == dict.fromkeys(values, 1)


def _equal(actual: object, expected: object) -> None:
    assert actual == expected


def _more_than(actual: int, floor: int) -> None:
    assert actual > floor
